"""Writing pcap files of ZooKeeper conversations (for tests, benchmarks and examples).

:class:`PcapWriter` builds Ethernet/IPv4/TCP packets around payloads with consistent
sequence numbers, so the decoder reads them like a tcpdump capture. It is the decoder's
mirror, kept small: no checksums (tcpdump on loopback does not verify them either).
"""

from __future__ import annotations

import struct
from typing import BinaryIO

__all__ = ("PcapWriter",)

_SYN, _ACK, _FIN, _PSH = 0x02, 0x10, 0x01, 0x08


class PcapWriter:
    """Writes a classic little-endian microsecond pcap with Ethernet framing."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        self._seq: dict[tuple[int, int], int] = {}

    def packet(self, time: float, src_port: int, dst_port: int, payload: bytes = b"", *,
               flags: int = _ACK | _PSH, seq: int | None = None) -> None:
        """One TCP segment from 127.0.0.1:src_port to 127.0.0.1:dst_port."""
        key = (src_port, dst_port)
        if seq is None:
            seq = self._seq.get(key, 1000)
        self._seq[key] = (seq + len(payload) + (1 if flags & (_SYN | _FIN) else 0)) \
            & 0xFFFFFFFF
        tcp = struct.pack(">HHIIBBHHH", src_port, dst_port, seq, 0, 5 << 4, flags,
                          65535, 0, 0)
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000,
                         64, 6, 0, b"\x7f\x00\x00\x01", b"\x7f\x00\x00\x01")
        frame = b"\x00" * 12 + b"\x08\x00" + ip + tcp + payload
        sec = int(time)
        self.out.write(struct.pack("<IIII", sec, int(round((time - sec) * 1e6)),
                                   len(frame), len(frame)))
        self.out.write(frame)

    def open(self, time: float, client_port: int, server_port: int) -> None:
        """The three-way handshake."""
        self.packet(time, client_port, server_port, flags=_SYN)
        self.packet(time, server_port, client_port, flags=_SYN | _ACK)
        self.packet(time, client_port, server_port, flags=_ACK)

    def close(self, time: float, client_port: int, server_port: int) -> None:
        """FIN from both sides."""
        self.packet(time, client_port, server_port, flags=_FIN | _ACK)
        self.packet(time, server_port, client_port, flags=_FIN | _ACK)

    def next_seq(self, src_port: int, dst_port: int) -> int:
        """The sequence number the next segment of that direction will carry."""
        return self._seq.get((src_port, dst_port), 1000)
