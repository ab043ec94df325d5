"""Sans-IO pieces of the harness: the proxy's frame cutter and the 4lw parsers."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zkwarden.testing import FourLetterWordError
from zkwarden.testing._fourlw import (
    parse_cons_sessions,
    parse_dump_ephemerals,
    parse_dump_sessions,
    parse_mntr,
)
from zkwarden.testing._frames import BOGUS_LENGTH, FrameCutter, FrameFault


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def run(stream: bytes, faults: list[FrameFault | None], chunk: int) -> tuple[bytes, bool]:
    """Feed ``stream`` in ``chunk``-byte pieces; ``faults`` are claimed frame by frame."""
    pending = list(faults)
    cutter = FrameCutter(lambda: pending.pop(0) if pending else None)
    out = b""
    for i in range(0, len(stream), chunk):
        data, close = cutter.feed(stream[i : i + chunk])
        out += data
        if close:
            return out, True
    return out + cutter.flush(), False


STREAM = frame(b"\x00" * 37) + frame(b"") + frame(bytes(range(20)))


@pytest.mark.parametrize("chunk", [1, 3, 4, 5, 41, 1000])
def test_no_fault_passes_bytes_unchanged(chunk: int) -> None:
    assert run(STREAM, [], chunk) == (STREAM, False)


@pytest.mark.parametrize("chunk", [1, 2, 7, 1000])
def test_payload_corruption_hits_one_frame(chunk: int) -> None:
    out, closed = run(STREAM, [None, None, "payload"], chunk)
    assert not closed
    expected = frame(b"\x00" * 37) + frame(b"") + frame(bytes(b ^ 0xFF for b in range(20)))
    assert out == expected


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_length_corruption(chunk: int) -> None:
    out, _ = run(STREAM, ["length"], chunk)
    assert out[:4] == struct.pack(">i", BOGUS_LENGTH)
    assert out[4:] == STREAM[4:]


@pytest.mark.parametrize("chunk", [1, 3, 4, 1000])
def test_truncate_sends_half_a_frame_then_closes(chunk: int) -> None:
    out, closed = run(STREAM, ["truncate"], chunk)
    assert closed and out == STREAM[: (4 + 37) // 2]
    out, closed = run(STREAM, [None, "truncate"], chunk)  # an empty frame: 2 header bytes
    assert closed and out == STREAM[: 41 + 2]


def test_short_non_frame_reply_is_flushed_at_eof() -> None:
    assert run(b"ok", [], 1) == (b"ok", False)


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=64))
def test_any_stream_passes_unchanged_without_fault(data: bytes, chunk: int) -> None:
    assert run(data, [], chunk) == (data, False)


def test_parse_mntr() -> None:
    metrics = parse_mntr("zk_version\t3.8.0, built on x\nzk_num_alive_connections\t3\n")
    assert metrics == {"zk_version": "3.8.0, built on x", "zk_num_alive_connections": "3"}
    with pytest.raises(FourLetterWordError):
        parse_mntr("This ZooKeeper instance is not currently serving requests\n")


def test_parse_dump_standalone_and_learner_formats() -> None:
    standalone = (
        "SessionTracker dump:\nSession Sets (1)/(2):\n2 expire at Sat:\n"
        "\t0x1000001c57e0000\n\t0xff00000000000001\n"
        "ephemeral nodes dump:\nSessions with Ephemerals (1):\n0x1000001c57e0000:\n"
        "\t/b\n\t/a\nConnections dump:\nConnections Sets (1)/(1):\n"
        "1 expire at Sat:\n\tip: /127.0.0.1:51902 sessionId: 0x1000001c57e0000\n"
    )
    assert parse_dump_sessions(standalone) == {0x1000001C57E0000, 0xFF00000000000001 - (1 << 64)}
    assert parse_dump_ephemerals(standalone) == {0x1000001C57E0000: ["/a", "/b"]}
    learner = (
        "Local Session Sets (0)/(0):\nGlobal Sessions(1):\n0x200000abc\t4000ms\n"
        "ephemeral nodes dump:\nSessions with Ephemerals (0):\n"
    )
    assert parse_dump_sessions(learner) == {0x200000ABC}
    assert parse_dump_ephemerals(learner) == {}


def test_parse_cons_sessions() -> None:
    lines = [
        "/127.0.0.1:51902[1](queued=0,recved=2,sent=2,sid=0x1000001c57e0000,lop=CREA)",
        "/127.0.0.1:51924[0](queued=0,recved=1,sent=0)",
        "/127.0.0.1:51925[1](queued=0,recved=1,sent=0,sid=0x0)",
    ]
    assert parse_cons_sessions(lines) == {0x1000001C57E0000}
