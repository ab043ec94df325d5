"""SessionMachine: state transitions, reply ordering, zxid tracking, deadlines, xids, prime()."""

from __future__ import annotations

import random
import struct
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from zkwarden.errors import DataTooLargeError, ProtocolError
from zkwarden.protocol import ops
from zkwarden.protocol.ops import WatchKind
from zkwarden.protocol.session import (
    AuthReply,
    Notification,
    PingReply,
    Reply,
    SessionMachine,
)
from zkwarden.protocol.watches import SET_WATCHES_MAX_BYTES, WatchRegistry
from zkwarden.types import OPEN_ACL_UNSAFE, ClientState, ClientStateChange

from ._golden import STAT_HEX
from ._wire import decode_request, hx, split_frames

S = ClientState
SID = 0x0100000434530000
OTHER_SID = 0x0200000000000007
PW = bytes(range(1, 17))
PING = hx("00000008 fffffffe 0000000b")


def connect_response(
    timeout_ms: int = 6000, session_id: int = SID, password: bytes = PW, read_only: bool = False
) -> bytes:
    return (
        struct.pack(">iiqi", 0, timeout_ms, session_id, len(password))
        + password
        + (b"\x01" if read_only else b"\x00")
    )


EXPIRED_RESPONSE = connect_response(0, 0, bytes(16))


def reply(xid: int, zxid: int = 0, err: int = 0, body: bytes = b"") -> bytes:
    return struct.pack(">iqi", xid, zxid, err) + body


def ustring(s: str) -> bytes:
    raw = s.encode()
    return struct.pack(">i", len(raw)) + raw


def notification(event_type: int, path: str, zxid: int = -1) -> bytes:
    return reply(-1, zxid, 0, struct.pack(">ii", event_type, 3) + ustring(path))


def connected(timeout_ms: int = 6000, now: float = 0.0, **kw: Any) -> SessionMachine[Any]:
    m: SessionMachine[Any] = SessionMachine(requested_timeout=timeout_ms / 1000, **kw)
    m.connect_request(now)
    result = m.handshake(connect_response(timeout_ms), now)
    assert result.usable
    return m


def send(m: SessionMachine[Any], req: ops.Request, token: Any, now: float = 0.0) -> int:
    xid, _ = m.encode(req)
    m.sent(xid, req, token, now)
    return xid


# --- transition table -------------------------------------------------------------------

Changes = list[tuple[ClientState, ClientState, int | None, bool, bool]]
Step = tuple[Callable[[SessionMachine[Any]], list[ClientStateChange]], ClientState, Changes]


def hs(
    timeout_ms: int = 6000, sid: int = SID, read_only: bool = False, now: float = 0.0
) -> Callable[[SessionMachine[Any]], list[ClientStateChange]]:
    def step(m: SessionMachine[Any]) -> list[ClientStateChange]:
        m.connect_request(now)
        pw = PW if timeout_ms else bytes(16)
        return m.handshake(connect_response(timeout_ms, sid, pw, read_only), now).changes

    return step


def drop(m: SessionMachine[Any]) -> list[ClientStateChange]:
    return m.connection_lost()[1]


def presumed(now: float) -> Callable[[SessionMachine[Any]], list[ClientStateChange]]:
    def step(m: SessionMachine[Any]) -> list[ClientStateChange]:
        change = m.check_presumed_expired(now)
        return [] if change is None else [change]

    return step


def close(m: SessionMachine[Any]) -> list[ClientStateChange]:
    change = m.close()
    return [] if change is None else [change]


# (state, previous, session_id, new_session, confirmed)
SCENARIOS: dict[str, list[Step]] = {
    "new session": [
        (hs(), S.CONNECTED, [(S.CONNECTED, S.CONNECTING, SID, True, False)]),
    ],
    "new session on a read-only server": [
        (hs(read_only=True), S.READ_ONLY, [(S.READ_ONLY, S.CONNECTING, SID, True, False)]),
    ],
    "connection lost": [
        (hs(), S.CONNECTED, [(S.CONNECTED, S.CONNECTING, SID, True, False)]),
        (drop, S.SUSPENDED, [(S.SUSPENDED, S.CONNECTED, SID, False, False)]),
        (drop, S.SUSPENDED, []),  # a second loss report changes nothing
    ],
    "resume the same session": [
        (hs(), S.CONNECTED, [(S.CONNECTED, S.CONNECTING, SID, True, False)]),
        (drop, S.SUSPENDED, [(S.SUSPENDED, S.CONNECTED, SID, False, False)]),
        (hs(now=1.0), S.CONNECTED, [(S.CONNECTED, S.SUSPENDED, SID, False, False)]),
    ],
    "read-only then read-write": [
        (hs(read_only=True), S.READ_ONLY, [(S.READ_ONLY, S.CONNECTING, SID, True, False)]),
        (drop, S.SUSPENDED, [(S.SUSPENDED, S.READ_ONLY, SID, False, False)]),
        (hs(now=1.0), S.CONNECTED, [(S.CONNECTED, S.SUSPENDED, SID, False, False)]),
    ],
    "confirmed expiry, then a new session": [
        (hs(), S.CONNECTED, [(S.CONNECTED, S.CONNECTING, SID, True, False)]),
        (drop, S.SUSPENDED, [(S.SUSPENDED, S.CONNECTED, SID, False, False)]),
        (hs(timeout_ms=0, sid=0, now=1.0), S.LOST, [(S.LOST, S.SUSPENDED, SID, False, True)]),
        (hs(timeout_ms=0, sid=0, now=2.0), S.LOST, []),  # never twice
        (hs(sid=OTHER_SID, now=3.0), S.CONNECTED,
         [(S.CONNECTED, S.LOST, OTHER_SID, True, False)]),
    ],
    "presumed expiry once": [
        (hs(), S.CONNECTED, [(S.CONNECTED, S.CONNECTING, SID, True, False)]),
        (drop, S.SUSPENDED, [(S.SUSPENDED, S.CONNECTED, SID, False, False)]),
        (presumed(5.5), S.SUSPENDED, []),  # before the 6 s timeout
        (presumed(6.0), S.LOST, [(S.LOST, S.SUSPENDED, SID, False, False)]),
        (presumed(7.0), S.LOST, []),
        (presumed(100.0), S.LOST, []),
        (hs(timeout_ms=0, sid=0, now=101.0), S.LOST, []),  # the confirmation: no 2nd LOST
        (hs(sid=OTHER_SID, now=102.0), S.CONNECTED,
         [(S.CONNECTED, S.LOST, OTHER_SID, True, False)]),
    ],
    "presumed expiry, then a server hands out a new id": [
        (hs(), S.CONNECTED, [(S.CONNECTED, S.CONNECTING, SID, True, False)]),
        (drop, S.SUSPENDED, [(S.SUSPENDED, S.CONNECTED, SID, False, False)]),
        (presumed(6.0), S.LOST, [(S.LOST, S.SUSPENDED, SID, False, False)]),
        (hs(sid=OTHER_SID, now=7.0), S.CONNECTED,
         [(S.CONNECTED, S.LOST, OTHER_SID, True, False)]),
    ],
    "server answers with another session id": [
        (hs(), S.CONNECTED, [(S.CONNECTED, S.CONNECTING, SID, True, False)]),
        (drop, S.SUSPENDED, [(S.SUSPENDED, S.CONNECTED, SID, False, False)]),
        (hs(sid=OTHER_SID, now=1.0), S.CONNECTED,
         [(S.LOST, S.SUSPENDED, SID, False, True),
          (S.CONNECTED, S.LOST, OTHER_SID, True, False)]),
    ],
    "no presumed expiry while connected": [
        (hs(), S.CONNECTED, [(S.CONNECTED, S.CONNECTING, SID, True, False)]),
        (presumed(1000.0), S.CONNECTED, []),
    ],
    "no presumed expiry without a session": [
        (presumed(1000.0), S.CONNECTING, []),
    ],
    "close when connected": [
        (hs(), S.CONNECTED, [(S.CONNECTED, S.CONNECTING, SID, True, False)]),
        (close, S.CLOSED, [(S.CLOSED, S.CONNECTED, SID, False, False)]),
        (close, S.CLOSED, []),
        (drop, S.CLOSED, []),
        (presumed(1000.0), S.CLOSED, []),
        (hs(now=1.0), S.CLOSED, []),
        (hs(sid=OTHER_SID, now=2.0), S.CLOSED, []),
        (hs(timeout_ms=0, sid=0, now=3.0), S.CLOSED, []),
    ],
}  # fmt: skip


@pytest.mark.parametrize("steps", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_transitions(steps: list[Step]) -> None:
    m: SessionMachine[Any] = SessionMachine(requested_timeout=6.0)
    for i, (action, state, expected) in enumerate(steps):
        changes = action(m)
        got = [(c.state, c.previous, c.session_id, c.new_session, c.confirmed) for c in changes]
        assert got == expected, f"step {i}"
        assert m.state is state, f"step {i}"


def test_handshake_results() -> None:
    m: SessionMachine[Any] = SessionMachine(requested_timeout=6.0)
    m.connect_request(0.0)
    first = m.handshake(connect_response(), 0.0)
    assert (first.usable, first.new_session, first.expired, first.read_only) == (
        True, True, False, False,
    )  # fmt: skip
    assert (m.session_id, m.password, m.negotiated_timeout_ms) == (SID, PW, 6000)
    m.connection_lost()
    m.connect_request(1.0)
    again = m.handshake(connect_response(), 1.0)
    assert (again.usable, again.new_session, again.expired) == (True, False, False)


def test_confirmed_expiry_forgets_the_session() -> None:
    m = connected()
    send(m, ops.Sync("/a"), "t")
    m.receive(reply(1, 0x55, 0, ustring("/a")), 0.5)
    assert m.last_zxid == 0x55
    m.connection_lost()
    m.connect_request(1.0)
    result = m.handshake(EXPIRED_RESPONSE, 1.0)
    assert result.expired is True
    assert result.usable is False
    assert [(c.state, c.confirmed) for c in result.changes] == [(S.LOST, True)]
    assert m.session_id == 0
    assert m.last_zxid == 0
    assert m.password == bytes(16)
    # the next connection asks for a new session, with lastZxidSeen 0
    frame = m.connect_request(2.0)
    assert frame[8:16] == bytes(8)  # lastZxidSeen
    assert frame[20:28] == bytes(8)  # sessionId


def test_presumed_lost_resumes_with_zxid_zero_so_a_wiped_server_answers() -> None:
    # A server behind our lastZxidSeen (wiped) refuses by closing, never confirming the
    # expiry; after the presumed LOST the resume attempt carries zxid 0 instead.
    m = connected()
    send(m, ops.Sync("/a"), "t")
    m.receive(reply(1, 0x99, 0, ustring("/a")), 0.5)
    m.connection_lost()
    assert m.connect_request(1.0)[8:16] == struct.pack(">q", 0x99)
    assert m.check_presumed_expired(6.5) is not None
    frame = m.connect_request(7.0)
    assert frame[8:16] == bytes(8)  # lastZxidSeen 0
    assert frame[20:28] == struct.pack(">q", SID)  # still the old session, to confirm it
    result = m.handshake(EXPIRED_RESPONSE, 7.0)
    assert result.expired and result.changes == []  # LOST was reported once already


def test_presumed_lost_then_server_accepts_old_id() -> None:
    m = connected()
    m.connection_lost()
    change = m.check_presumed_expired(6.0)
    assert change is not None and change.state is S.LOST and change.confirmed is False
    m.connect_request(7.0)
    result = m.handshake(connect_response(session_id=SID), 7.0)
    # We told the application the session was lost; the caller must close it.
    assert result.expired is True
    assert result.usable is False
    assert result.changes == []
    assert m.state is S.LOST
    assert m.session_id == SID  # still known, so that it can be closed
    frame = m.close_session_frame("close", 7.0)
    assert frame[8:12] == hx("fffffff5")
    m.forget_presumed_session()
    assert (m.session_id, m.last_zxid, m.presumed_lost) == (0, 0, False)
    m.connection_lost()
    m.connect_request(8.0)
    result = m.handshake(connect_response(session_id=OTHER_SID), 8.0)
    assert result.new_session is True
    assert [(c.state, c.previous, c.new_session) for c in result.changes] == [
        (S.CONNECTED, S.LOST, True)
    ]


def _setup_state(name: str) -> SessionMachine[Any]:
    m: SessionMachine[Any] = SessionMachine(requested_timeout=6.0)
    if name == "CONNECTING":
        return m
    if name == "READ_ONLY":
        hs(read_only=True)(m)
        return m
    hs()(m)
    if name == "CONNECTED":
        return m
    m.connection_lost()
    if name == "SUSPENDED":
        return m
    if name == "LOST (confirmed)":
        hs(timeout_ms=0, sid=0, now=1.0)(m)
    elif name == "LOST (presumed)":
        m.check_presumed_expired(100.0)
    elif name == "CLOSED":
        m.close()
    return m


@pytest.mark.parametrize(
    "start",
    ["CONNECTING", "CONNECTED", "READ_ONLY", "SUSPENDED", "LOST (confirmed)",
     "LOST (presumed)", "CLOSED"],
)  # fmt: skip
def test_close_from_every_state_is_terminal(start: str) -> None:
    m = _setup_state(start)
    expected_before = S[start.split()[0]]
    assert m.state is expected_before
    change = m.close()
    if expected_before is S.CLOSED:
        assert change is None
    else:
        assert change is not None
        assert (change.state, change.previous) == (S.CLOSED, expected_before)
    assert m.state is S.CLOSED
    assert m.connected is False
    # nothing leaves CLOSED
    for action in (drop, presumed(1e9), hs(now=1e9), hs(sid=OTHER_SID), close,
                   hs(read_only=True), hs(timeout_ms=0, sid=0)):  # fmt: skip
        assert action(m) == []
        assert m.state is S.CLOSED
    assert m.connection_lost(closing=True)[1] == []


def test_connection_lost_while_closing_reports_no_suspended() -> None:
    m = connected()
    send(m, ops.Sync("/a"), "a")
    failed, changes = m.connection_lost(closing=True)
    assert failed == ["a"]
    assert changes == []


# --- reply ordering ---------------------------------------------------------------------


def test_connection_lost_fails_tokens_in_order() -> None:
    m = connected()
    for token in ("a", "b", "c", "d"):
        send(m, ops.GetData("/" + token), token)
    failed, changes = m.connection_lost()
    assert failed == ["a", "b", "c", "d"]
    assert [c.state for c in changes] == [S.SUSPENDED]
    assert m.pending_count == 0


def test_replies_matched_fifo() -> None:
    m = connected()
    xa = send(m, ops.GetData("/a"), "a")
    xb = send(m, ops.Sync("/b"), "b")
    xc = send(m, ops.Delete("/c"), "c")
    assert (xa, xb, xc) == (1, 2, 3)
    r1 = m.receive(reply(xa, 10, 0, hx("00000001 78 " + STAT_HEX)), 1.0)
    r2 = m.receive(reply(xb, 11, 0, ustring("/b")), 1.0)
    r3 = m.receive(reply(xc, 12, -101), 1.0)  # NoNode: no body
    assert isinstance(r1, Reply) and isinstance(r2, Reply) and isinstance(r3, Reply)
    assert [r.token for r in (r1, r2, r3)] == ["a", "b", "c"]
    assert r1.result[0] == b"x" and r1.err == 0 and r1.zxid == 10
    assert r2.result == "/b"
    assert (r3.err, r3.result) == (-101, None)
    assert m.pending_count == 0


def test_error_reply_body_not_decoded() -> None:
    m = connected()
    x = send(m, ops.GetData("/a"), "a")
    r = m.receive(reply(x, 10, -102), 1.0)  # NoAuth, no body
    assert isinstance(r, Reply) and (r.err, r.result) == (-102, None)


def test_out_of_order_reply_is_protocol_error() -> None:
    m = connected()
    send(m, ops.Sync("/a"), "a")
    xb = send(m, ops.Sync("/b"), "b")
    with pytest.raises(ProtocolError):
        m.receive(reply(xb, 5, 0, ustring("/b")), 1.0)


@pytest.mark.parametrize("xid", [1, 7, -3, -8, 0])
def test_reply_with_nothing_pending_is_protocol_error(xid: int) -> None:
    m = connected()
    with pytest.raises(ProtocolError):
        m.receive(reply(xid, 5), 1.0)


def test_short_reply_frame_is_protocol_error() -> None:
    m = connected()
    with pytest.raises(ProtocolError):
        m.receive(hx("00000001 00000000 00000000 000000"), 1.0)  # 15 bytes


def test_notifications_outside_the_fifo_ping_replies_in_order() -> None:
    # Pings pass through the server's request pipeline: their replies come back in order
    # with the other replies. Notifications can come at any point.
    m = connected()
    xa = send(m, ops.Sync("/a"), "a")
    assert m.on_timer(100.0) is not None  # a ping, queued behind /a
    xb = send(m, ops.Sync("/b"), "b", 100.0)
    n = m.receive(notification(3, "/w", zxid=-1), 100.5)
    assert isinstance(n, Notification)
    assert (n.event.type, n.event.state, n.event.path, n.zxid) == (3, 3, "/w", -1)
    assert m.pending_count == 3
    assert m.receive(reply(xa, 20, 0, ustring("/a")), 100.5).token == "a"  # type: ignore[union-attr]
    assert isinstance(m.receive(notification(4, "/w"), 100.5), Notification)
    assert isinstance(m.receive(reply(-2, 0), 100.5), PingReply)
    assert m.receive(reply(xb, 21, 0, ustring("/b")), 100.5).token == "b"  # type: ignore[union-attr]
    assert m.pending_count == 0


def test_ping_reply_out_of_order_is_a_protocol_error() -> None:
    # A corrupted reply whose xid reads as -2 must not pass for a ping reply (the request
    # it stood for would then wait forever on a connection kept alive by pings).
    m = connected()
    send(m, ops.Sync("/a"), "a")
    with pytest.raises(ProtocolError):
        m.receive(reply(-2, 0), 1.0)
    fresh = connected()
    with pytest.raises(ProtocolError):  # no ping was sent at all
        fresh.receive(reply(-2, 0), 1.0)


def test_auth_reply_can_overtake_earlier_replies() -> None:
    m = connected()
    m.prime([("digest", b"a:b"), ("digest", b"c:d")], WatchRegistry(), 0.0)
    xa = send(m, ops.Sync("/a"), "a")
    auth = m.receive(reply(-4, 0, 0), 1.0)
    assert isinstance(auth, AuthReply) and auth.err == 0
    assert m.pending_count == 1
    failed = m.receive(reply(-4, 0, -115), 1.0)
    assert isinstance(failed, AuthReply) and failed.err == -115
    assert m.receive(reply(xa, 5, 0, ustring("/a")), 1.0).token == "a"  # type: ignore[union-attr]
    with pytest.raises(ProtocolError):  # a third auth reply: none was sent
        m.receive(reply(-4, 0, 0), 1.0)


def test_auth_reply_without_auth_is_protocol_error() -> None:
    m = connected()
    with pytest.raises(ProtocolError):
        m.receive(reply(-4, 0, 0), 1.0)


def test_auth_pending_forgotten_on_connection_loss() -> None:
    m = connected()
    m.prime([("digest", b"a:b")], WatchRegistry(), 0.0)
    m.connection_lost()
    m.connect_request(1.0)
    m.handshake(connect_response(), 1.0)
    with pytest.raises(ProtocolError):
        m.receive(reply(-4, 0, 0), 2.0)


def test_last_zxid_only_from_normal_replies_with_positive_zxid() -> None:
    m = connected()
    assert m.last_zxid == 0

    def normal(zxid: int, err: int = 0) -> None:
        x = send(m, ops.Delete("/a"), "t")
        m.receive(reply(x, zxid, err), 1.0)

    normal(0x10)
    assert m.last_zxid == 0x10
    normal(0x11, err=-110)  # a failed write still consumes a zxid
    assert m.last_zxid == 0x11
    normal(-1, err=-6)  # unimplemented: zxid -1
    assert m.last_zxid == 0x11
    normal(0)
    assert m.last_zxid == 0x11
    m.receive(notification(1, "/n", zxid=0x99), 1.0)  # 3.9 notifications carry a zxid
    assert m.last_zxid == 0x11
    assert m.on_timer(100.0) is not None
    m.receive(reply(-2, 0x98), 100.0)  # ping
    assert m.last_zxid == 0x11
    m.prime([("digest", b"a:b")], WatchRegistry(), 0.0)
    m.receive(reply(-4, 0x97), 1.0)  # auth
    assert m.last_zxid == 0x11
    normal(0x12)
    assert m.last_zxid == 0x12


# --- deadlines --------------------------------------------------------------------------


def test_timeouts_derive_from_negotiated_timeout() -> None:
    m: SessionMachine[Any] = SessionMachine(requested_timeout=9.0)
    assert m.read_timeout == pytest.approx(6.0)  # before a handshake: the requested one
    m.connect_request(0.0)
    m.handshake(connect_response(6000), 0.0)
    assert m.negotiated_timeout == 6.0
    assert m.read_timeout == pytest.approx(4.0)  # 2/3
    assert m.ping_interval == pytest.approx(2.0)  # 1/3


def test_ping_after_a_third_of_the_timeout_idle() -> None:
    m = connected(6000, now=10.0)
    assert m.next_deadline() == 12.0  # min(last_send + 2, last_recv + 4)
    assert m.on_timer(11.999) is None
    assert m.on_timer(12.0) == PING
    assert m.on_timer(12.5) is None  # the ping reset the idle clock
    assert m.next_deadline() == 14.0  # min(12 + 2, 10 + 4)
    # any sent request resets the send-idle clock
    send(m, ops.Sync("/a"), "a", now=13.0)
    assert m.on_timer(14.5) is None
    assert m.on_timer(15.0) == PING


def test_read_timeout_after_two_thirds_of_silence() -> None:
    m = connected(6000, now=10.0)
    assert not m.read_timed_out(13.999)
    assert m.read_timed_out(14.0)
    m.receive(notification(3, "/w"), 13.0)  # anything heard resets it
    assert not m.read_timed_out(16.999)
    assert m.read_timed_out(17.0)


def test_no_ping_and_no_read_timeout_when_not_connected() -> None:
    m = connected(6000, now=0.0)
    m.connection_lost()
    assert m.on_timer(100.0) is None
    assert m.read_timed_out(100.0) is False
    fresh: SessionMachine[Any] = SessionMachine(requested_timeout=6.0)
    fresh.connect_request(0.0)  # handshake not done yet
    assert fresh.on_timer(100.0) is None
    assert fresh.read_timed_out(100.0) is False


def test_presumed_expiry_at() -> None:
    m = connected(6000, now=5.0)
    m.receive(notification(3, "/w"), 8.0)
    m.connection_lost()
    assert m.presumed_expiry_at() == 14.0
    assert m.check_presumed_expired(13.9) is None
    change = m.check_presumed_expired(14.0)
    assert change is not None and change.state is S.LOST


@pytest.mark.parametrize("timeout_ms, base", [(10000, 100.0), (4000, 100.0), (2000, 3.3)])
def test_on_timer_pings_exactly_at_next_deadline(timeout_ms: int, base: float) -> None:
    # The I/O layer sleeps until next_deadline() and then calls on_timer(now); at that
    # instant the ping is due and must be returned, otherwise the timer is re-armed for
    # the same (past) deadline and fires again at once.
    m = connected(timeout_ms, now=base)
    deadline = m.next_deadline()
    assert deadline == base + m.ping_interval
    assert m.on_timer(deadline) == PING


@pytest.mark.parametrize("timeout_ms, base", [(10000, 12345.678), (2000, 100.0), (1000, 3.3)])
def test_read_timed_out_exactly_at_read_deadline(timeout_ms: int, base: float) -> None:
    m = connected(timeout_ms, now=base)
    m.on_timer(base + m.ping_interval + 0.001)  # ping sent, nothing heard since `base`
    deadline = m.next_deadline()
    assert deadline == base + m.read_timeout
    assert m.read_timed_out(deadline)


@pytest.mark.parametrize("timeout_ms, base", [(4000, 0.1), (30000, 3.3), (4321, 100.0)])
def test_presumed_expired_exactly_at_presumed_expiry_at(timeout_ms: int, base: float) -> None:
    m = connected(timeout_ms, now=base)
    m.connection_lost()
    change = m.check_presumed_expired(m.presumed_expiry_at())
    assert change is not None and change.state is S.LOST


def test_presumed_expiry_not_postponed_by_unanswered_connect_attempts() -> None:
    # Last heard from a server at t=0 (6 s session). Reconnect attempts reach a TCP
    # listener that never answers the ConnectRequest (refusal by zxid, connection limit,
    # a read-only server, a hung server): nothing was heard, so the session must still be
    # presumed expired at t=6, however many attempts were made meanwhile.
    m = connected(6000, now=0.0)
    m.connection_lost()
    for t in (2.0, 4.0, 5.5):
        m.connect_request(t)  # TCP connected, ConnectRequest written, no reply ...
        m.connection_lost()  # ... and the server closes the socket
    assert m.presumed_expiry_at() == 6.0
    change = m.check_presumed_expired(6.5)
    assert change is not None and change.state is S.LOST


# --- xids -------------------------------------------------------------------------------


def test_xids_start_at_one_and_increase() -> None:
    m = connected()
    assert [m.encode(ops.Sync("/"))[0] for _ in range(5)] == [1, 2, 3, 4, 5]


def test_xid_wraps_to_one() -> None:
    m = connected()
    m._xid = 2**31 - 2  # white-box: skip two billion requests
    x1, f1 = m.encode(ops.Sync("/"))
    x2, f2 = m.encode(ops.Sync("/"))
    x3, _ = m.encode(ops.Sync("/"))
    assert (x1, x2, x3) == (2**31 - 1, 1, 2)
    assert f1[4:8] == hx("7fffffff")
    assert f2[4:8] == hx("00000001")


def test_encode_does_not_queue_until_sent() -> None:
    m = connected()
    xid, _ = m.encode(ops.Sync("/"))
    assert m.pending_count == 0
    m.sent(xid, ops.Sync("/"), "t", 0.0)
    assert m.pending_count == 1


def test_encode_too_large_raises_data_too_large() -> None:
    m = connected(max_send=100)
    with pytest.raises(DataTooLargeError):
        m.encode(ops.SetData("/a", bytes(100)))
    assert m.pending_count == 0


# --- prime() ----------------------------------------------------------------------------


def _registry(kinds: dict[WatchKind, list[str]]) -> WatchRegistry[str]:
    reg: WatchRegistry[str] = WatchRegistry()
    for kind, paths in kinds.items():
        for p in paths:
            reg.add(kind, p, f"w-{kind.value}")
    return reg


def _long_paths(prefix: str, count: int, length: int) -> list[str]:
    return [(f"/{prefix}{i:05d}/" + "x" * length)[:length] for i in range(count)]


SW_FIELDS = {
    WatchKind.DATA: "data",
    WatchKind.EXIST: "exist",
    WatchKind.CHILD: "child",
    WatchKind.PERSISTENT: "persistent",
    WatchKind.PERSISTENT_RECURSIVE: "persistent_recursive",
}


def _check_batches(
    out: bytes, n_auth: int, kinds: dict[WatchKind, list[str]], relative_zxid: int
) -> list[tuple[int, dict[str, Any]]]:
    frames = split_frames(out)
    assert [f[:2] for f in frames[:n_auth]] == [(-4, 100)] * n_auth  # auth first
    batches = []
    for xid, opcode, body in frames[n_auth:]:
        assert xid == -8
        batches.append((opcode, decode_request(opcode, body)))
    seen: dict[WatchKind, Counter[str]] = {k: Counter() for k in SW_FIELDS}
    for _opcode, fields in batches:
        assert fields["relative_zxid"] == relative_zxid
        size = 0
        for kind, name in SW_FIELDS.items():
            for p in fields.get(name, []):
                seen[kind][p] += 1
                size += len(p)
        assert 0 < size <= SET_WATCHES_MAX_BYTES
    for kind in SW_FIELDS:
        assert seen[kind] == Counter(kinds.get(kind, [])), kind  # every path exactly once
    return batches


def test_prime_auth_then_set_watches_batches() -> None:
    kinds = {
        WatchKind.DATA: _long_paths("d", 150, 1000),
        WatchKind.EXIST: _long_paths("e", 100, 1500),
        WatchKind.CHILD: _long_paths("c", 80, 2000) + ["/short"],
    }
    m = connected()
    x = send(m, ops.Sync("/"), "t")
    m.receive(reply(x, 0x4242, 0, ustring("/")), 0.5)
    m.connection_lost()
    m.connect_request(1.0)
    m.handshake(connect_response(), 1.0)
    out = m.prime([("digest", b"a:b"), ("digest", b"c:d")], _registry(kinds), now=1.5)
    batches = _check_batches(out, 2, kinds, relative_zxid=0x4242)
    assert len(batches) >= 4  # 460,000+ characters of paths
    assert {opcode for opcode, _ in batches} == {101}  # no persistent watches: SetWatches
    assert m.last_send == 1.5
    # SetWatches replies go through the FIFO (xid -8) and carry no token
    assert m.pending_count == len(batches)
    for _ in batches:
        r = m.receive(reply(-8, 0x4242), 2.0)
        assert isinstance(r, Reply) and r.token is None
    assert m.pending_count == 0


def test_prime_with_persistent_watches_uses_set_watches2() -> None:
    kinds = {
        WatchKind.DATA: _long_paths("d", 60, 1000),
        WatchKind.CHILD: ["/c"],
        WatchKind.PERSISTENT: _long_paths("p", 70, 1000),
        WatchKind.PERSISTENT_RECURSIVE: _long_paths("r", 90, 1000),
    }
    m = connected()
    out = m.prime([], _registry(kinds), now=1.0)
    batches = _check_batches(out, 0, kinds, relative_zxid=0)
    assert len(batches) >= 2
    for opcode, fields in batches:
        if fields.get("persistent") or fields.get("persistent_recursive"):
            assert opcode == 105


def test_prime_single_oversized_path_sent_alone() -> None:
    huge = "/" + "h" * (SET_WATCHES_MAX_BYTES + 10)
    kinds = {WatchKind.DATA: ["/a", "/b"], WatchKind.EXIST: [huge]}
    m = connected()
    frames = split_frames(m.prime([], _registry(kinds), now=1.0))
    decoded = [decode_request(op, body) for _, op, body in frames]
    assert sorted(p for d in decoded for p in d["data"] + d["exist"]) == sorted(
        ["/a", "/b", huge]
    )
    assert any(d["exist"] == [huge] and not d["data"] for d in decoded)


def test_prime_nothing_to_send() -> None:
    m = connected(now=0.0)
    assert m.prime([], WatchRegistry(), now=5.0) == b""
    assert m.last_send == 0.0
    assert m.pending_count == 0


def test_set_watches_not_failed_on_connection_loss() -> None:
    m = connected()
    m.prime([], _registry({WatchKind.DATA: ["/a"]}), now=0.0)
    send(m, ops.Create("/x", b"", OPEN_ACL_UNSAFE, 0), "create")
    failed, _ = m.connection_lost()
    assert failed == ["create"]



def test_deadlines_are_due_when_they_say_so() -> None:
    # Grid form of the three tests above: whatever the timeout and the clock value, calling
    # the check at the instant the machine named is never "not yet".
    rng = random.Random(2181)
    timeouts = [1, 2, 3, 999, 1000, 1234, 2000, 4000, 4321, 6000, 10000, 30000, 40000]
    bases = [0.0, 0.1, 3.3, 100.0, 100.7, 987.654, 12345.678, 1e6 + 0.1]
    bases += [rng.uniform(0, 1e6) for _ in range(20)]
    late = []
    for timeout_ms in timeouts:
        for base in bases:
            m = connected(timeout_ms, now=base)
            if m.on_timer(m.next_deadline()) != PING:
                late.append(("ping", timeout_ms, base))
            if not m.read_timed_out(m.last_recv + m.read_timeout):
                late.append(("read timeout", timeout_ms, base))
            m.connection_lost()
            if m.check_presumed_expired(m.presumed_expiry_at()) is None:
                late.append(("presumed expiry", timeout_ms, base))
    assert late == []
