"""Reading capture files: pcap and pcapng, then link layer → IPv4/IPv6 → TCP.

Only what ZooKeeper traffic needs, with the standard library: the classic pcap format
(either byte order, micro- or nanosecond timestamps) and pcapng (sections of either byte
order, interface timestamp resolutions, enhanced/simple/obsolete packet blocks), over the
link types tcpdump writes (Ethernet, Linux cooked v1/v2, BSD loopback, raw IP). Anything
else is skipped and counted, never guessed at.

The reader works on a stream (a file or a pipe from ``tcpdump -w -``) in chunks, so a live
capture is decoded as it arrives; a file cut short in the middle of a packet ends with a
note, not an error. Only a stream that is not a capture at all raises
:class:`CaptureError`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from ..errors import ProtocolError

__all__ = ("CaptureError", "CaptureStats", "read_packets", "parse_tcp", "Segment")


class CaptureError(ProtocolError):
    """The input is not a pcap/pcapng capture, or its structure is broken beyond reading."""


@dataclass(slots=True)
class CaptureStats:
    """What the reader met besides TCP segments (reported in the summary)."""

    packets: int = 0
    tcp_segments: int = 0
    skipped: int = 0  # not IP/TCP, fragments, unknown link types
    snapped: int = 0  # packets cut by the snap length (their payload is a hole)
    truncated: bool = False  # the file ended inside a packet
    notes: list[str] = field(default_factory=list)


# (time, src address bytes, src port, dst address bytes, dst port, seq, flags, payload,
#  payload length on the wire)
Segment = tuple[float, bytes, int, bytes, int, int, int, bytes, int]

_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_CHUNK = 1 << 16


class _Input:
    """A chunked reader: ``take(n)`` returns exactly n bytes or None at end of input."""

    __slots__ = ("_stream", "_buf", "_pos", "_eof")

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._buf = b""
        self._pos = 0
        self._eof = False

    def _fill(self, n: int) -> bool:
        # read1 returns what a pipe has now (a live capture must not wait for 64 KiB)
        read = getattr(self._stream, "read1", None) or self._stream.read
        parts = [self._buf[self._pos:]]
        have = len(parts[0])
        while have < n and not self._eof:
            chunk = read(max(_CHUNK, n - have))
            if not chunk:
                self._eof = True
                break
            parts.append(chunk)
            have += len(chunk)
        self._buf = b"".join(parts)
        self._pos = 0
        return have >= n

    def take(self, n: int) -> bytes | None:
        pos = self._pos
        if pos + n > len(self._buf) and not self._fill(n):
            return None
        pos = self._pos
        self._pos = pos + n
        return self._buf[pos:pos + n]

    def at_end(self) -> bool:
        return self._pos >= len(self._buf) and not self._fill(1)

    @property
    def leftover(self) -> int:
        return len(self._buf) - self._pos


# (time, link type, captured bytes, original length)
_Packet = tuple[float, int, bytes, int]


def _pcap(inp: _Input, head: bytes, stats: CaptureStats) -> Iterator[_Packet]:
    order, unit = _PCAP_MAGIC[head[:4]]
    rest = inp.take(20)
    if rest is None:
        raise CaptureError("pcap file ends inside its global header")
    _major, _minor, _zone, _sigfigs, _snaplen, network = struct.unpack(order + "HHiIII", rest)
    linktype = network & 0x0FFFFFFF
    record = struct.Struct(order + "IIII")
    take = inp.take
    while True:
        hdr = take(16)
        if hdr is None:
            if inp.leftover:
                stats.truncated = True
            return
        sec, frac, incl, orig = record.unpack(hdr)
        if incl > 0x4000000:  # 64 MiB: no link layer carries that; the file is garbage
            raise CaptureError(f"pcap record of {incl} bytes: the file is corrupt")
        data = take(incl)
        if data is None:
            stats.truncated = True
            return
        yield sec + frac * unit, linktype, data, orig


def _pcapng(inp: _Input, stats: CaptureStats) -> Iterator[_Packet]:
    order = "<"
    interfaces: list[tuple[int, float]] = []  # (link type, seconds per tick)
    first = True
    while True:
        head = _PCAPNG_SHB if first else inp.take(4)
        first = False
        if head is None:
            if inp.leftover:
                stats.truncated = True
            return
        if head == _PCAPNG_SHB:
            rest = inp.take(8)
            if rest is None:
                stats.truncated = True
                return
            magic = rest[4:8]
            if magic == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif magic == b"\x1a\x2b\x3c\x4d":
                order = ">"
            else:
                raise CaptureError("pcapng section header with an unknown byte-order magic")
            (length,) = struct.unpack(order + "I", rest[:4])
            interfaces = []
            if length < 28 or length % 4:
                raise CaptureError(f"pcapng section header of {length} bytes: corrupt")
            if inp.take(length - 12) is None:
                stats.truncated = True
                return
            continue
        rest = inp.take(4)
        if rest is None:
            stats.truncated = True
            return
        (btype,) = struct.unpack(order + "I", head)
        (length,) = struct.unpack(order + "I", rest)
        if length < 12 or length % 4 or length > 0x4000000:
            raise CaptureError(f"pcapng block of {length} bytes: the file is corrupt")
        body = inp.take(length - 8)
        if body is None:
            stats.truncated = True
            return
        body = body[:-4]  # the trailing copy of the length
        if btype == 1:  # Interface Description Block
            if len(body) < 8:
                raise CaptureError("pcapng interface block too short")
            linktype = struct.unpack_from(order + "H", body, 0)[0]
            interfaces.append((linktype, _tsresol(body[8:], order)))
        elif btype in (6, 2):  # Enhanced Packet Block, obsolete Packet Block
            if len(body) < 20:
                raise CaptureError("pcapng packet block too short")
            if btype == 6:
                iface, hi, lo, cap, orig = struct.unpack_from(order + "IIIII", body, 0)
            else:
                iface, _drops, hi, lo, cap, orig = struct.unpack_from(order + "HHIIII", body, 0)
            if iface >= len(interfaces) or cap > len(body) - 20:
                raise CaptureError("pcapng packet block names an unknown interface or "
                                   "overruns its block")
            linktype, tick = interfaces[iface]
            yield ((hi << 32) | lo) * tick, linktype, body[20:20 + cap], orig
        elif btype == 3:  # Simple Packet Block: no timestamp
            if not interfaces or len(body) < 4:
                raise CaptureError("pcapng simple packet block before any interface")
            (orig,) = struct.unpack_from(order + "I", body, 0)
            data = body[4:4 + orig]
            yield 0.0, interfaces[0][0], data, orig
        # any other block (statistics, name resolution, custom) carries no packets


def _tsresol(options: bytes, order: str) -> float:
    pos = 0
    while pos + 4 <= len(options):
        code, size = struct.unpack_from(order + "HH", options, pos)
        pos += 4
        if code == 0:
            break
        if code == 9 and size >= 1:
            value = options[pos]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0 ** -value
        pos += (size + 3) & ~3
    return 1e-6


def read_packets(stream: BinaryIO, stats: CaptureStats) -> Iterator[_Packet]:
    """Yield ``(time, link type, bytes, original length)`` for each packet of a capture.

    Raises:
        CaptureError: the stream is not a pcap/pcapng capture, or is corrupt.
    """
    inp = _Input(stream)
    head = inp.take(4)
    if head is None:
        if inp.leftover == 0:
            raise CaptureError("empty input: not a capture (write one with tcpdump -w FILE)")
        raise CaptureError("input too short to be a capture")
    if head in _PCAP_MAGIC:
        yield from _pcap(inp, head, stats)
    elif head == _PCAPNG_SHB:
        yield from _pcapng(inp, stats)
    else:
        raise CaptureError(
            f"not a pcap or pcapng capture (starts with {head.hex()}); "
            "write one with tcpdump -w FILE"
        )


_ETH_IP = {0x0800: 4, 0x86DD: 6}
_NULL_FAMILIES = {2: 4, 24: 6, 28: 6, 30: 6}
_U16 = struct.Struct(">H")
_TCP = struct.Struct(">HHIIBB")


def _network(linktype: int, data: bytes) -> tuple[int, int]:
    """(IP version or 0, offset of the IP header) for a link-layer frame."""
    if linktype == 1:  # Ethernet
        if len(data) < 14:
            return 0, 0
        off = 12
        etype = _U16.unpack_from(data, off)[0]
        while etype in (0x8100, 0x88A8) and len(data) >= off + 6:  # VLAN tags
            off += 4
            etype = _U16.unpack_from(data, off)[0]
        return _ETH_IP.get(etype, 0), off + 2
    if linktype == 276:  # Linux cooked v2 (tcpdump -i any)
        if len(data) < 20:
            return 0, 0
        return _ETH_IP.get(_U16.unpack_from(data, 0)[0], 0), 20
    if linktype == 113:  # Linux cooked v1
        if len(data) < 16:
            return 0, 0
        return _ETH_IP.get(_U16.unpack_from(data, 14)[0], 0), 16
    if linktype in (0, 108):  # BSD loopback: family in host / network order
        if len(data) < 4:
            return 0, 0
        family = int.from_bytes(data[:4], "little" if linktype == 0 else "big")
        if family > 0xFFFF:
            family = int.from_bytes(data[:4], "big")
        return _NULL_FAMILIES.get(family, 0), 4
    if linktype in (12, 14, 101, 228, 229):  # raw IP
        if not data:
            return 0, 0
        return data[0] >> 4, 0
    return 0, 0


def parse_tcp(time: float, linktype: int, data: bytes, orig: int) -> Segment | None:
    """The TCP segment in a link-layer frame, or None when it holds none (or a fragment).

    The payload length on the wire (last field) is larger than the payload when the snap
    length cut the packet: the missing bytes are a hole for the reassembler.
    """
    version, off = _network(linktype, data)
    if version == 4:
        if len(data) < off + 20:
            return None
        ihl = (data[off] & 0x0F) * 4
        if data[off + 9] != 6 or ihl < 20:
            return None
        if _U16.unpack_from(data, off + 6)[0] & 0x3FFF:  # MF flag or a fragment offset
            return None
        total = _U16.unpack_from(data, off + 2)[0] or len(data) - off  # 0: segmentation
        src = data[off + 12:off + 16]
        dst = data[off + 16:off + 20]
        tcp = off + ihl
        end = off + total
    elif version == 6:
        if len(data) < off + 40 or data[off + 6] != 6:
            return None
        total = 40 + _U16.unpack_from(data, off + 4)[0]
        src = data[off + 8:off + 24]
        dst = data[off + 24:off + 40]
        tcp = off + 40
        end = off + total
    else:
        return None
    if len(data) < tcp + 20:
        return None
    sport, dport, seq, _ack, doff, flags = _TCP.unpack_from(data, tcp)
    start = tcp + (doff >> 4) * 4
    # Ethernet pads short frames: the IP length, not the frame, says where data ends.
    payload = data[start:end]
    wire_len = end - start
    if wire_len < 0:
        return None
    if len(payload) < wire_len and orig <= len(data):
        wire_len = len(payload)  # not cut by the snap length: the IP length was wrong
    return time, src, sport, dst, dport, seq, flags, payload, wire_len
