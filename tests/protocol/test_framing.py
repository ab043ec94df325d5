"""FrameDecoder and the outbound size check (reference section 1.1)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkwarden.errors import DataTooLargeError, ProtocolError
from zkwarden.protocol import framing
from zkwarden.protocol.framing import FrameDecoder, check_send_size, frame
from zkwarden.protocol.ops import SetData
from zkwarden.protocol.session import SessionMachine

from ._machine import connected
from ._wire import hx


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def test_frame_prefixes_length() -> None:
    assert frame(b"abc") == hx("00000003 616263")
    assert frame(b"") == hx("00000000")


def test_one_frame_split_byte_by_byte() -> None:
    payload = bytes(range(40))
    stream = _frame(payload)
    d = FrameDecoder()
    out: list[bytes] = []
    for i in range(len(stream)):
        got = d.feed(stream[i : i + 1])
        if i < len(stream) - 1:
            assert got == []
            assert d.buffered == i + 1
        out += got
    assert out == [payload]
    assert d.buffered == 0


def test_many_frames_split_byte_by_byte() -> None:
    payloads = [b"", b"a", b"bc" * 100, bytes(16), b"\xff\xff\xff\xff"]
    stream = b"".join(_frame(p) for p in payloads)
    d = FrameDecoder()
    out: list[bytes] = []
    for i in range(len(stream)):
        out += d.feed(stream[i : i + 1])
    assert out == payloads


def test_many_frames_in_one_feed() -> None:
    payloads = [b"x" * n for n in range(50)]
    d = FrameDecoder()
    assert d.feed(b"".join(_frame(p) for p in payloads)) == payloads
    assert d.buffered == 0


def test_partial_frame_kept_until_complete() -> None:
    d = FrameDecoder()
    assert d.feed(_frame(b"one") + hx("00000005 6162")) == [b"one"]
    assert d.buffered == 6  # 4-byte length and 2 of 5 payload bytes
    assert d.feed(hx("636465") + hx("000000")) == [b"abcde"]
    assert d.feed(hx("00")) == [b""]


def test_empty_feed() -> None:
    d = FrameDecoder()
    assert d.feed(b"") == []


@settings(max_examples=60, deadline=None, database=None)
@given(
    st.lists(st.binary(max_size=50), max_size=8),
    st.lists(st.integers(1, 30), min_size=1, max_size=20),
)
def test_any_split_yields_the_same_frames(payloads: list[bytes], sizes: list[int]) -> None:
    stream = b"".join(_frame(p) for p in payloads)
    d = FrameDecoder()
    out: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(stream):
        n = sizes[i % len(sizes)]
        out += d.feed(stream[pos : pos + n])
        pos += n
        i += 1
    assert out == payloads
    assert d.buffered == 0


@pytest.mark.parametrize("length", ["ffffffff", "80000000", "fffffff0"])
def test_negative_length_is_protocol_error(length: str) -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(hx(length))


def test_negative_length_after_a_good_frame() -> None:
    d = FrameDecoder()
    with pytest.raises(ProtocolError):
        d.feed(_frame(b"ok") + hx("ffffffff"))


def test_over_limit_length_is_protocol_error() -> None:
    d = FrameDecoder(max_size=100)
    assert d.feed(_frame(b"x" * 100)) == [b"x" * 100]  # exactly the limit is fine
    with pytest.raises(ProtocolError):
        d.feed(hx("00000065"))  # 101: rejected from the length alone


def test_over_limit_detected_before_the_payload_arrives() -> None:
    d = FrameDecoder()  # default limit
    with pytest.raises(ProtocolError):
        d.feed(struct.pack(">i", framing.DEFAULT_MAX_RECEIVE + 1))


def test_default_receive_limit_exceeds_jute_maxbuffer() -> None:
    # The server sends frames slightly over 1 MiB for a 1 MiB znode (section 1.1).
    assert framing.DEFAULT_MAX_RECEIVE > 0xFFFFF
    d = FrameDecoder()
    payload = bytes(1_048_633)
    assert d.feed(_frame(payload)) == [payload]


def test_check_send_size() -> None:
    check_send_size(0xFFFFF, 0xFFFFF)  # exactly the limit: accepted by the server
    check_send_size(0, 0xFFFFF)
    with pytest.raises(DataTooLargeError):
        check_send_size(0x100000, 0xFFFFF)
    assert framing.DEFAULT_MAX_SEND == 0xFFFFF


def test_session_submit_enforces_send_limit_on_payload_length() -> None:
    # The server limit applies to the frame payload N (header + body, without the 4 length
    # bytes): 1,048,575 is accepted, 1,048,576 closes the connection.
    m: SessionMachine[object] = connected(10000)
    overhead = 8 + 4 + 2 + 4 + 4  # header, path "/a", data length, version
    fits = SetData("/a", bytes(0xFFFFF - overhead))
    out = m.submit(fits, "fits", 0.0)
    assert len(out) == 4 + 0xFFFFF
    assert m.pending_count == 1
    with pytest.raises(DataTooLargeError):
        m.submit(SetData("/a", bytes(0xFFFFF - overhead + 1)), "too large", 0.0)
    assert m.pending_count == 1  # the refused request was not queued
