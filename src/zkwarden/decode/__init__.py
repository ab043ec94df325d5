"""Reading ZooKeeper traffic from packet captures (the ``zkwarden decode`` command).

``decode_stream(stream)`` reads a pcap or pcapng capture, reassembles every TCP
connection in both directions, decodes each ZooKeeper frame with the protocol core, pairs
replies with their requests by xid, and runs the incident detectors::

    with open("zk.pcap", "rb") as f:
        result = decode_stream(f)
    for finding in result.findings:
        print(finding.name, finding.message)

Standard library only; this package sits above ``zkwarden.protocol`` and does no network
I/O. Malformed input raises :class:`CaptureError` (a ``zkwarden.errors.ProtocolError``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from .capture import CaptureError, CaptureStats, parse_tcp, read_packets
from .decoder import Decoder
from .model import FINDING_NAMES, Connection, DecodeOptions, Finding, Frame

__all__ = (
    "CaptureError",
    "CaptureStats",
    "Connection",
    "DecodeOptions",
    "DecodeResult",
    "FINDING_NAMES",
    "Finding",
    "Frame",
    "decode_stream",
    "decode_file",
)


@dataclass(slots=True)
class DecodeResult:
    """Everything decoded from one capture."""

    frames: list[Frame] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    stats: CaptureStats = field(default_factory=CaptureStats)


def decode_stream(stream: BinaryIO, options: DecodeOptions | None = None, *,
                  sink: Callable[[Frame | Finding], None] | None = None,
                  keep: bool = True) -> DecodeResult:
    """Decode a capture read from ``stream`` (a file opened in binary mode, or a pipe).

    ``sink`` sees each frame and finding as soon as it is decoded (for ``--follow``);
    with ``keep=False`` frames are not collected in the result (findings always are).

    Raises:
        CaptureError: the stream is not a pcap/pcapng capture, or it is corrupt.
    """
    result = DecodeResult()
    frames = result.frames

    def collect(item: Frame | Finding) -> None:
        if keep and isinstance(item, Frame):
            frames.append(item)
        if sink is not None:
            sink(item)

    decoder = Decoder(options, collect)
    stats = result.stats
    feed = decoder.feed
    for time, linktype, data, orig in read_packets(stream, stats):
        stats.packets += 1
        segment = parse_tcp(time, linktype, data, orig)
        if segment is None:
            stats.skipped += 1
            continue
        stats.tcp_segments += 1
        feed(segment)
    if stats.truncated:
        stats.notes.append("the capture ends inside a packet (truncated file)")
    decoder.finish()
    result.findings = decoder.detectors.findings
    result.connections = decoder.connections
    return result


def decode_file(path: str, options: DecodeOptions | None = None) -> DecodeResult:
    """:func:`decode_stream` on the file at ``path``.

    Raises:
        CaptureError: not a capture, or corrupt.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as stream:
        return decode_stream(stream, options)
