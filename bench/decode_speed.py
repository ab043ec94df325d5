"""``python -m bench.decode_speed``: how fast ``zkwarden decode`` reads a capture.

Builds a pcap of a realistic ZooKeeper conversation with the decoder's own writer
(``zkwarden.decode.synth``): getData / getChildren2 / setData / exists requests with
their replies, pings and watch notifications, over several connections, one frame per TCP
segment (the worst case: every frame pays for a packet). Then it decodes the file in full
(pcap parsing, TCP reassembly, frame decoding, pairing by xid, every detector) several
times and reports frames per second (median of the rounds). Target: >= 100,000 frames/s.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import struct
import time

from zkwarden.decode import decode_stream
from zkwarden.decode.synth import PcapWriter
from zkwarden.protocol import ops
from zkwarden.protocol.records import ConnectRequest, ConnectResponse, request_header

TARGET = 100_000
_STAT = struct.pack(">qqqqiiiqiiq", 1, 2, 3, 4, 0, 0, 0, 0, 64, 0, 5)


def _framed(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def build_capture(frames: int, connections: int = 4) -> tuple[bytes, int]:
    """A pcap with about ``frames`` ZooKeeper frames; returns (bytes, exact frame count)."""
    buf = io.BytesIO()
    w = PcapWriter(buf)
    t = 1_700_000_000.0
    count = 0
    ports = [(40000 + i, 2181) for i in range(connections)]
    for i, (c, s) in enumerate(ports):
        w.open(t, c, s)
        w.packet(t, c, s, _framed(ConnectRequest(0, 0, 10000, 0, bytes(16), False).encode()))
        w.packet(t, s, c, _framed(ConnectResponse(0, 10000, 0x100 + i, bytes(16),
                                                  False).encode()))
        count += 2
    data = b"x" * 64
    children = struct.pack(">i", 3) + b"".join(_framed(n) for n in (b"a", b"bb", b"ccc"))
    xid = 0
    while count < frames:
        xid += 1
        c, s = ports[xid % connections]
        t += 0.0001
        kind = xid % 10
        path = f"/service/node{xid % 50}"
        if kind < 5:
            req, body = ops.GetData(path, watch=kind == 0), _framed(data) + _STAT
        elif kind < 7:
            req, body = ops.GetChildren2("/service", watch=True), children + _STAT
        elif kind < 8:
            req, body = ops.SetData(path, data), _STAT
        elif kind < 9:
            req, body = ops.Exists(path), _STAT
        else:
            w.packet(t, c, s, _framed(request_header(-2, 11)))
            w.packet(t + 0.0002, s, c, _framed(struct.pack(">iqi", -2, 9, 0)))
            count += 2
            continue
        w.packet(t, c, s, _framed(request_header(xid, req.OPCODE) + req.body()))
        w.packet(t + 0.0002, s, c, _framed(struct.pack(">iqi", xid, 9, 0) + body))
        count += 2
        if kind == 0:  # the watch set by that getData fires; the client re-reads
            ev = struct.pack(">iqiii", -1, -1, 0, 3, 3) + _framed(path.encode())
            w.packet(t + 0.0003, s, c, _framed(ev))
            count += 1
    for c, s in ports:
        w.close(t, c, s)
    return buf.getvalue(), count


def measure(raw: bytes, rounds: int) -> list[float]:
    """Seconds per full decode of ``raw``, one per round."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        decode_stream(io.BytesIO(raw), keep=False)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    """Build, decode, report; exit 1 when under the target."""
    p = argparse.ArgumentParser(prog="python -m bench.decode_speed")
    p.add_argument("--frames", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    raw, count = build_capture(args.frames)
    result = decode_stream(io.BytesIO(raw))  # correctness first: all decoded, none flagged
    decoded = sum(1 for f in result.frames if f.direction != "note")
    assert decoded == count, (decoded, count)
    times = measure(raw, args.rounds)
    rates = [count / t for t in times]
    median = statistics.median(rates)
    report = {"frames": count, "bytes": len(raw), "frames_per_s_median": round(median),
              "frames_per_s_min": round(min(rates)), "frames_per_s_max": round(max(rates)),
              "target": TARGET, "findings": len(result.findings)}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"decode: {count} frames ({len(raw) / 1e6:.1f} MB) in "
              f"{statistics.median(times):.2f} s: {median:,.0f} frames/s "
              f"(rounds {min(rates):,.0f}-{max(rates):,.0f}; target {TARGET:,})")
    return 0 if median >= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
