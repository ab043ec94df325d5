"""DESIGN section 5: decoding ANY byte string raises only ProtocolError.

Nothing else may escape a decoder: no struct.error, IndexError, UnicodeDecodeError,
MemoryError, ValueError from an enum, RecursionError, ... An exception other than
ProtocolError fails the test with its own traceback.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zkwarden.errors import ProtocolError
from zkwarden.protocol import ops
from zkwarden.protocol.framing import FrameDecoder
from zkwarden.protocol.jute import Reader, decode_string
from zkwarden.protocol.ops import WatchKind
from zkwarden.protocol.records import (
    ConnectRequest,
    ConnectResponse,
    MultiHeader,
    read_acl,
    read_reply_header,
    read_stat,
    read_watcher_event,
)
from zkwarden.protocol.session import SessionMachine
from zkwarden.protocol.watches import WatchRegistry
from zkwarden.types import OPEN_ACL_UNSAFE

FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Pieces that steer random bytes into interesting decoder paths: lengths of -1, 0, small,
# huge and negative, booleans, CESU-8 surrogates, multi result types.
_PIECES = [
    b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x00\x00\x00\x01", b"\x00\x00\x00\x02",
    b"\x00\x00\x00\x05", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00", b"\xff\xff\xff\xfe",
    b"\x00\x00\x00\x0f", b"\x00\x00\x00\x0d", b"\x00\x00\x00\x04", b"\x00\x00\x00\x08",
    b"\x00\x00\x00\x13", b"\x00\x00\x00\x15", b"\xff\xff\xff\x99", b"\x00", b"\x01",
    b"\x02", b"\xed\xa0\xbd", b"\xed\xb8\x80", b"\xff", b"\xc3", b"/a", b"\x00" * 68,
]  # fmt: skip
JUTE_ISH = st.lists(
    st.one_of(st.sampled_from(_PIECES), st.binary(max_size=8)), max_size=30
).map(b"".join)
ANY_BYTES = st.one_of(st.binary(max_size=200), JUTE_ISH)


def only_protocol_error(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except ProtocolError:
        pass


# --- framing ----------------------------------------------------------------------------


@FUZZ
@given(ANY_BYTES, st.lists(st.integers(0, 64), max_size=10), st.sampled_from([16, 1 << 24]))
def test_frame_decoder_arbitrary_bytes_any_split(data: bytes, cuts: list[int], limit: int) -> None:
    decoder = FrameDecoder(max_size=limit)
    pos = 0
    chunks = []
    for c in cuts:
        chunks.append(data[pos : pos + c])
        pos += c
    chunks.append(data[pos:])
    try:
        for chunk in chunks:
            for payload in decoder.feed(chunk):
                assert len(payload) <= limit
    except ProtocolError:
        pass


# --- handshake and records ------------------------------------------------------------


@FUZZ
@given(ANY_BYTES)
def test_connect_response_read_arbitrary(data: bytes) -> None:
    only_protocol_error(lambda: ConnectResponse.read(Reader(data)))


@FUZZ
@given(ANY_BYTES)
def test_connect_request_read_arbitrary(data: bytes) -> None:
    only_protocol_error(lambda: ConnectRequest.read(Reader(data)))


@FUZZ
@given(ANY_BYTES)
def test_handshake_arbitrary(data: bytes) -> None:
    m: SessionMachine[object] = SessionMachine(requested_timeout=10.0)
    m.connect_request(0.0)
    only_protocol_error(lambda: m.handshake(data, 1.0))


@FUZZ
@given(ANY_BYTES)
def test_read_watcher_event_arbitrary(data: bytes) -> None:
    only_protocol_error(lambda: read_watcher_event(Reader(data)))


@FUZZ
@given(ANY_BYTES)
def test_small_records_arbitrary(data: bytes) -> None:
    only_protocol_error(lambda: read_stat(Reader(data)))
    only_protocol_error(lambda: read_acl(Reader(data)))
    only_protocol_error(lambda: read_reply_header(Reader(data)))
    only_protocol_error(lambda: MultiHeader.read(Reader(data)))
    only_protocol_error(lambda: decode_string(data))
    r = Reader(data)
    only_protocol_error(r.ustrings)


# --- every op's read_response ---------------------------------------------------------

_CREATE_ARGS = ("/a", b"", OPEN_ACL_UNSAFE, 0)
ALL_REQUESTS: list[ops.Request] = [
    ops.Create(*_CREATE_ARGS),
    ops.Create2(*_CREATE_ARGS),
    ops.CreateContainer("/a", b"", OPEN_ACL_UNSAFE, 4),
    ops.CreateTTL("/a", b"", OPEN_ACL_UNSAFE, 5, 10),
    ops.Delete("/a"),
    ops.Exists("/a"),
    ops.GetData("/a"),
    ops.SetData("/a", b""),
    ops.GetACL("/a"),
    ops.SetACL("/a", OPEN_ACL_UNSAFE),
    ops.GetChildren("/a"),
    ops.GetChildren2("/a"),
    ops.Sync("/a"),
    ops.Ping(),
    ops.CheckVersion("/a", 1),
    ops.Multi([ops.Create(*_CREATE_ARGS)]),
    ops.MultiRead([ops.GetData("/a")]),
    ops.CheckWatches("/a", 1),
    ops.RemoveWatches("/a", 1),
    ops.Auth("digest", b"u:p"),
    ops.SetWatches(0, [], [], []),
    ops.SetWatches2(0, [], [], [], [], []),
    ops.GetEphemerals("/"),
    ops.GetAllChildrenNumber("/"),
    ops.AddWatch("/a", 0),
    ops.WhoAmI(),
    ops.CloseSession(),
]


def test_all_request_types_fuzzed() -> None:
    names = set(ops.__all__) - {"OpCode", "Request", "WatchKind"}
    assert {type(r).__name__ for r in ALL_REQUESTS} == names


@pytest.mark.parametrize("request_", ALL_REQUESTS, ids=lambda r: type(r).__name__)
@settings(max_examples=30, deadline=None, database=None)
@given(data=ANY_BYTES)
def test_read_response_arbitrary(request_: ops.Request, data: bytes) -> None:
    only_protocol_error(lambda: request_.read_response(Reader(data)))


# A multi response made of plausible headers with arbitrary bodies goes deeper than
# fully random bytes.
_MULTI_TYPES = st.sampled_from([-1, 1, 2, 4, 5, 8, 13, 15, 19, 21, 99])
MULTI_ISH = st.lists(
    st.tuples(_MULTI_TYPES, st.booleans(), st.integers(-130, 1), ANY_BYTES), max_size=5
).map(lambda items: b"".join(struct.pack(">i?i", t, d, e) + body for t, d, e, body in items))


@FUZZ
@given(MULTI_ISH)
def test_multi_response_structured_arbitrary(data: bytes) -> None:
    only_protocol_error(lambda: ops.Multi([]).read_response(Reader(data)))
    only_protocol_error(lambda: ops.MultiRead([]).read_response(Reader(data)))


# --- SessionMachine.receive after a handshake -----------------------------------------

_PENDING = [
    ops.GetData("/a"),
    ops.Multi([ops.Create(*_CREATE_ARGS)]),
    ops.GetChildren2("/a"),
    ops.AddWatch("/a", 1),
    ops.WhoAmI(),
    ops.GetACL("/a"),
    ops.Exists("/a"),
]
_XIDS = st.sampled_from([-1, -2, -4, -8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 12345, -3])
HEADED = st.tuples(_XIDS, st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, 0, 0, -101]),
                   ANY_BYTES).map(lambda t: struct.pack(">iqi", t[0], t[1], t[2]) + t[3])
FRAMES = st.lists(st.one_of(ANY_BYTES, HEADED), min_size=1, max_size=8)


def _restoring_machine() -> SessionMachine[int]:
    """Handshake done, restore in flight: one auth (-4), one SetWatches (-8), a ping (-2)."""
    m: SessionMachine[int] = SessionMachine(requested_timeout=10.0)
    m.connect_request(0.0)
    m.handshake(struct.pack(">iiqi", 0, 10000, 0x1234, 16) + b"\x01" * 16 + b"\x00", 0.0)
    registry: WatchRegistry[object] = WatchRegistry()
    registry.add(WatchKind.DATA, "/w", object())
    m.prime([("digest", b"u:p")], registry, 0.0)
    assert m.on_timer(10.0) is not None
    return m


def _live_machine() -> SessionMachine[int]:
    """Live connection: every request of _PENDING in flight, then an auth and a ping."""
    m: SessionMachine[int] = SessionMachine(requested_timeout=10.0)
    m.connect_request(0.0)
    m.handshake(struct.pack(">iiqi", 0, 10000, 0x1234, 16) + b"\x01" * 16 + b"\x00", 0.0)
    m.prime([], WatchRegistry(), 0.0)
    for token, req in enumerate(_PENDING):
        m.submit(req, token, 0.0)
    m.auth_frame("digest", b"u:p", len(_PENDING), 0.0)
    assert m.on_timer(10.0) is not None
    return m


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.sampled_from([_restoring_machine, _live_machine]), FRAMES)
def test_session_receive_arbitrary(
    make: Callable[[], SessionMachine[int]], frames: list[bytes]
) -> None:
    m = make()
    for i, payload in enumerate(frames):
        try:
            m.receive(payload, 11.0 + i)
        except ProtocolError:
            return  # the connection is dropped after a protocol error


def test_headed_strategy_reaches_the_fifo_head() -> None:
    # Sanity check of the fuzz setup: well-formed replies for the heads are accepted.
    m = _restoring_machine()
    assert m.receive(struct.pack(">iqi", -8, 5, 0), 11.0) is None  # the SetWatches reply
    assert m.pending_count == 1  # the ping is left
    live = _live_machine()
    reply = live.receive(struct.pack(">iqi", 1, 5, -101), 11.0)  # GetData: NoNode
    assert getattr(reply, "token", None) == 0
    auth = live.receive(struct.pack(">iqi", -4, 0, 0), 11.0)  # auth overtakes the FIFO
    assert getattr(auth, "token", None) == len(_PENDING)


@FUZZ
@given(st.integers(-(2**31), 2**31 - 1))
def test_event_type_and_keeper_state_only_protocol_error(value: int) -> None:
    from zkwarden.protocol.records import event_type, keeper_state

    only_protocol_error(lambda: event_type(value))
    only_protocol_error(lambda: keeper_state(value))
