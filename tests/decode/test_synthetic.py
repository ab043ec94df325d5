"""The decoder on hand-built captures: reassembly, resync, pairing, out-of-order, and
robustness (random bytes, truncated files, non-ZooKeeper traffic): clear errors only."""

from __future__ import annotations

import io
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from zkwarden.cli import main
from zkwarden.decode import CaptureError, DecodeOptions, decode_stream
from zkwarden.decode.synth import PcapWriter
from zkwarden.errors import ZooKeeperError
from zkwarden.protocol import ops

from ._frames import connect_request, connect_response, get_data_reply, reply, request

C, S = 50000, 2181


def _conversation(n: int = 20) -> list[tuple[bool, bytes]]:
    """(from client, bytes) of a clean session: connect, n getData, close."""
    out = [(True, connect_request()), (False, connect_response())]
    for xid in range(1, n + 1):
        out.append((True, request(xid, ops.GetData(f"/n{xid}"))))
        out.append((False, get_data_reply(xid)))
    return out


def _pcap(chunks: list[tuple[bool, bytes]], *, syn: bool = True, start: float = 100.0,
          segments: int | None = None, shuffle: bool = False, duplicate: bool = False
          ) -> bytes:
    buf = io.BytesIO()
    w = PcapWriter(buf)
    t = start
    if syn:
        w.open(t, C, S)
    packets = []
    for from_client, data in chunks:
        src, dst = (C, S) if from_client else (S, C)
        size = segments or len(data)
        for i in range(0, len(data), size):
            packets.append((src, dst, w.next_seq(src, dst), data[i:i + size]))
            w._seq[(src, dst)] = (w.next_seq(src, dst) + len(data[i:i + size])) & 0xFFFFFFFF
    if shuffle:  # swap neighbours: segments arrive out of order
        rng = random.Random(4)
        for i in range(0, len(packets) - 1, 2):
            if rng.random() < 0.5:
                packets[i], packets[i + 1] = packets[i + 1], packets[i]
    for src, dst, seq, data in packets:
        t += 0.001
        w.packet(t, src, dst, data, seq=seq)
        if duplicate:
            w.packet(t, src, dst, data, seq=seq)  # a retransmission
    return buf.getvalue()


def _decode(raw: bytes, **kw: object) -> object:
    return decode_stream(io.BytesIO(raw), DecodeOptions(**kw))  # type: ignore[arg-type]


def test_clean_conversation_pairs_every_request() -> None:
    result = decode_stream(io.BytesIO(_pcap(_conversation())))
    frames = [f for f in result.frames if f.direction != "note"]
    assert len(frames) == 42
    replies = [f for f in frames if f.direction == "reply"]
    assert all(f.reply_to is not None and f.latency_ms is not None for f in replies)
    assert [f.path for f in frames if f.op == "getData" and f.direction == "request"] == [
        f"/n{i}" for i in range(1, 21)]
    assert not result.findings
    assert not [f for f in result.frames if f.direction == "note"]


def test_split_reordered_and_retransmitted_segments_reassemble() -> None:
    raw = _pcap(_conversation(), segments=7, shuffle=True, duplicate=True)
    result = decode_stream(io.BytesIO(raw))
    ops_seen = [(f.direction, f.op) for f in result.frames if f.direction != "note"]
    assert ops_seen.count(("reply", "getData")) == 20
    assert not [f for f in result.frames if f.direction == "note"]
    assert not result.findings


def test_mid_stream_capture_resynchronizes_and_says_so() -> None:
    chunks = _conversation()
    stream = b"".join(d for c, d in chunks if c)[60:]  # cut inside a client frame
    replies = b"".join(d for c, d in chunks if not c)[50:]
    result = decode_stream(io.BytesIO(_pcap([(True, stream), (False, replies)], syn=False)),
                           DecodeOptions(server_ports=frozenset({S})))
    notes = [f.details["message"] for f in result.frames if f.direction == "note"
             and f.details]
    assert any("resynchronized" in n for n in notes)
    requests = [f for f in result.frames if f.direction == "request"]
    assert len(requests) >= 17 and requests[-1].path == "/n20"


def test_out_of_order_replies_are_flagged() -> None:
    chunks = [(True, connect_request()), (False, connect_response()),
              (True, request(1, ops.GetData("/a"))), (True, request(2, ops.GetData("/b"))),
              (False, get_data_reply(2)), (False, get_data_reply(1))]
    result = decode_stream(io.BytesIO(_pcap(chunks)))
    names = [f.name for f in result.findings]
    assert names == ["out-of-order"]
    assert "xid 2" in result.findings[0].message and "xid 1" in result.findings[0].message


def test_in_order_pipelined_replies_and_overtaking_auth_are_not_flagged() -> None:
    chunks = [(True, connect_request()), (False, connect_response()),
              (True, request(1, ops.GetData("/a"))), (True, request(-4, ops.Auth("digest",
                                                                                  b"u:p"))),
              (True, request(2, ops.GetData("/b"))),
              (False, reply(-4, zxid=0)), (False, get_data_reply(1)), (False, get_data_reply(2))]
    result = decode_stream(io.BytesIO(_pcap(chunks)))
    assert not result.findings
    auth = next(f for f in result.frames if f.op == "auth" and f.direction == "request")
    assert auth.details and auth.details["credentials"] == b"u:p"


def test_secrets_are_redacted_unless_asked(tmp_path: object, capsys: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "auth.pcap"
    chunks = [(True, connect_request()), (False, connect_response()),
              (True, request(-4, ops.Auth("digest", b"user:secretpw"))), (False, reply(-4))]
    path.write_bytes(_pcap(chunks))
    assert main(["decode", str(path), "--json"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "secretpw" not in out and "7573" not in out and "<redacted 13 bytes>" in out
    assert "07070707" not in out  # the session password
    assert main(["decode", str(path), "--json", "--show-secrets"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert b"user:secretpw".hex() in out and "07" * 16 in out


def test_non_zookeeper_traffic_is_reported_not_decoded() -> None:
    http = [(True, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 20),
            (False, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" * 20)]
    result = decode_stream(io.BytesIO(_pcap(http)))
    assert not [f for f in result.frames if f.direction != "note"]
    assert any("not look like ZooKeeper" in (f.details or {}).get("message", "")
               for f in result.frames)


def test_interleaved_connections_decode_separately() -> None:
    buf = io.BytesIO()
    w = PcapWriter(buf)
    w.open(1.0, 50001, S)
    w.open(1.0, 50002, S)
    t = 1.0
    for a, b in zip(_conversation(5), _conversation(5), strict=True):
        for port, (from_client, data) in ((50001, a), (50002, b)):
            t += 0.001
            w.packet(t, port, S, data) if from_client else w.packet(t, S, port, data)
    result = decode_stream(io.BytesIO(buf.getvalue()))
    assert len(result.connections) == 2
    for number in (1, 2):
        replies = [f for f in result.frames if f.connection == number and f.op == "getData"
                   and f.direction == "reply"]
        assert len(replies) == 5 and all(f.reply_to for f in replies)


def test_truncated_file_decodes_what_is_there_and_notes_it() -> None:
    raw = _pcap(_conversation())
    result = decode_stream(io.BytesIO(raw[: len(raw) - 30]))
    assert result.stats.truncated
    assert len([f for f in result.frames if f.op == "getData"]) >= 38


def test_cli_on_not_a_capture_is_one_line_and_exit_2(tmp_path: object, capsys: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "x"
    path.write_bytes(b"hello world, not a capture")
    assert main(["decode", str(path)]) == 2
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert "not a pcap or pcapng capture" in err and "Traceback" not in err


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_capture_error(data: bytes) -> None:
    try:
        decode_stream(io.BytesIO(data))
    except CaptureError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.integers(0, 2000), st.booleans())
def test_random_payloads_in_a_valid_capture_never_crash(payload: bytes, cut: int,
                                                         client: bool) -> None:
    chunks = _conversation(3)
    chunks.insert(3, (client, payload))
    raw = _pcap(chunks, segments=13)
    try:
        decode_stream(io.BytesIO(raw[: len(raw) - cut]))
    except ZooKeeperError as exc:  # only zkwarden.errors, and with a message
        assert isinstance(exc, CaptureError) and str(exc)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 24))
def test_random_bytes_after_a_pcap_header_are_clean_errors(data: bytes, keep: int) -> None:
    header = _pcap([])[:24 + keep]
    try:
        decode_stream(io.BytesIO(header + data))
    except CaptureError as exc:
        assert str(exc)


def _to_pcapng(pcap: bytes, order: str = "<") -> bytes:
    """The same packets as a pcapng file: SHB, IDB (nanosecond ticks), EPBs."""
    import struct

    def block(btype: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)

    out = block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    tsresol = struct.pack(order + "HH", 9, 1) + b"\x09\x00\x00\x00" + b"\x00" * 4
    out += block(1, struct.pack(order + "HHI", 1, 0, 262144) + tsresol)
    pos = 24
    while pos < len(pcap):
        sec, usec, incl, orig = struct.unpack_from("<IIII", pcap, pos)
        data = pcap[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        ticks = sec * 10**9 + usec * 1000
        out += block(6, struct.pack(order + "IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF,
                                    incl, orig) + data)
    return out


def test_pcapng_in_either_byte_order_decodes_like_pcap() -> None:
    pcap = _pcap(_conversation(), segments=11)
    frames = decode_stream(io.BytesIO(pcap)).frames
    want = [(f.op, f.path, f.xid, round(f.time, 6)) for f in frames]
    assert len(want) == 42
    for order in ("<", ">"):
        got = decode_stream(io.BytesIO(_to_pcapng(pcap, order)))
        assert [(f.op, f.path, f.xid, round(f.time, 6)) for f in got.frames] == want


def test_cli_summary_counts_operations(tmp_path: object, capsys: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "c.pcap"
    path.write_bytes(_pcap(_conversation(20)))
    assert main(["decode", str(path), "--summary"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "session 0x100000434530000: 1 connections" in out
    assert "getData 20" in out and "findings: none" in out
