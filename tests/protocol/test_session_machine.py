"""SessionMachine lifecycle: the transition table, fail-closed, and scripted scenarios.

Every test drives the real machine through its public calls (no event loop). The only
white-box call is ``_fire`` in the fail-closed test: some unlisted pairs are refused by an
earlier guard of the public call, and the table itself must still refuse them.
Requests, replies, deadlines and prime() batches: test_session_requests.py. Random
sequences against DESIGN section 4: test_session_properties.py.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest

from zkwarden.errors import ConnectionLossError, ProtocolError
from zkwarden.protocol import ops
from zkwarden.protocol.ops import WatchKind
from zkwarden.protocol.session import (
    PUBLIC_STATE,
    TRANSITIONS,
    AuthReply,
    HandshakeOutcome,
    Phase,
    SessionEvent,
    SessionMachine,
)
from zkwarden.protocol.watches import WatchRegistry
from zkwarden.types import ClientState

from ._machine import (
    EXPIRED_RESPONSE,
    OTHER_SID,
    PW,
    SID,
    connect_response,
    connected,
    reply,
    send,
    ustring,
)

S = ClientState
P = Phase
E = SessionEvent
REPLACEMENT_SID = 0x0300000000000009
NOW = 1.0
FAR = 1e6  # long after any session timeout

# --- reaching each phase through the public API ------------------------------------------


def reach(phase: Phase, *, session: bool = True, read_only: bool = False) -> SessionMachine[Any]:
    """A machine in ``phase``; ``session``: whether it holds a session id (when that can
    vary in the phase); ``read_only``: whether its last handshake was with a r/o server."""
    m: SessionMachine[Any] = SessionMachine(requested_timeout=6.0)
    grant = connect_response(session_id=SID, read_only=read_only)
    if phase is P.CONNECTING:
        if session:  # a session granted, then dropped before it was reported
            m.connect_request(0.0)
            m.handshake(grant, 0.0)
            m.connection_lost()
    elif phase is P.CONNECTING_HANDSHAKE:
        m = reach(P.CONNECTING, session=session)
        m.connect_request(0.0)
    elif phase is P.CONNECTING_RESTORING:
        m.connect_request(0.0)
        m.handshake(grant, 0.0)
    elif phase in (P.CONNECTED, P.READ_ONLY):
        m = connected(read_only=phase is P.READ_ONLY)
    elif phase is P.SUSPENDED:
        m = connected()
        m.connection_lost()
    elif phase is P.SUSPENDED_HANDSHAKE:
        m = reach(P.SUSPENDED)
        m.connect_request(0.0)
    elif phase is P.SUSPENDED_RESTORING:
        m = reach(P.SUSPENDED_HANDSHAKE)
        m.handshake(grant, 0.0)
    elif phase is P.LOST:
        m = reach(P.SUSPENDED_HANDSHAKE)
        m.handshake(EXPIRED_RESPONSE, 0.0)
        if session:  # the next session granted, dropped before it was reported
            m.connect_request(0.0)
            m.handshake(connect_response(session_id=OTHER_SID), 0.0)
            m.connection_lost()
    elif phase is P.LOST_HANDSHAKE:
        m = reach(P.LOST, session=session)
        m.connect_request(0.0)
    elif phase is P.LOST_RESTORING:
        m = reach(P.LOST_HANDSHAKE, session=False)
        m.handshake(connect_response(session_id=OTHER_SID, read_only=read_only), 0.0)
    elif phase is P.CLOSING:
        m = connected()
        m.begin_close()
    elif phase is P.CLOSED:
        m = connected()
        m.begin_close()
        m.finish_close()
    assert m.phase is phase
    m.take_changes()
    return m


def _handshake(response: Callable[[SessionMachine[Any]], bytes], outcome: HandshakeOutcome
               ) -> Callable[[SessionMachine[Any]], None]:
    def fire(m: SessionMachine[Any]) -> None:
        assert m.handshake(response(m), NOW) is outcome

    return fire


def _presumed(m: SessionMachine[Any]) -> None:
    assert m.check_presumed_expired(FAR) is True


def _restored(m: SessionMachine[Any]) -> None:
    assert m.prime([], WatchRegistry(), NOW) == b""


#: how each event is caused through the public API
FIRE: dict[SessionEvent, Callable[[SessionMachine[Any]], object]] = {
    E.CONNECT: lambda m: m.connect_request(NOW),
    E.RESUMED: _handshake(
        lambda m: connect_response(session_id=m.session_id), HandshakeOutcome.RESUMED),
    E.NEW_SESSION: _handshake(
        lambda m: connect_response(session_id=REPLACEMENT_SID), HandshakeOutcome.NEW_SESSION),
    E.REPLACED: _handshake(
        lambda m: connect_response(session_id=REPLACEMENT_SID), HandshakeOutcome.REPLACED),
    E.EXPIRED: _handshake(lambda m: EXPIRED_RESPONSE, HandshakeOutcome.EXPIRED),
    E.RESTORED: _restored,
    E.RESTORED_READ_ONLY: _restored,
    E.DISCONNECTED: lambda m: m.connection_lost(),
    E.PRESUMED_EXPIRED: _presumed,
    E.CLOSE: lambda m: m.begin_close(),
    E.CLOSED: lambda m: m.finish_close(),
}

# Listed (absorbed) pairs whose public call is refused by an earlier guard: a handshake
# reply or prime() outside a handshake, presumed expiry or a new connection while closing
# (see the test below).
_GUARDED = {(P.CLOSING, e) for e in E if e not in (E.DISCONNECTED, E.CLOSE, E.CLOSED)}
_GUARDED |= {(P.CLOSED, e) for e in E if e not in (E.DISCONNECTED, E.CLOSE, E.CLOSED)}
LISTED = sorted((k for k in TRANSITIONS if k not in _GUARDED), key=lambda k: (k[0].value, k[1].value))


@pytest.mark.parametrize(
    "phase, event", LISTED, ids=[f"{p.value}+{e.value}" for p, e in LISTED])
def test_every_listed_transition(phase: Phase, event: SessionEvent) -> None:
    nxt, report = TRANSITIONS[(phase, event)]
    m = reach(phase, session=event is not E.NEW_SESSION,
              read_only=event is E.RESTORED_READ_ONLY)
    before = m.state
    FIRE[event](m)
    assert m.phase is nxt
    changes = m.take_changes()
    if report:
        assert len(changes) == 1
        assert (changes[0].state, changes[0].previous) == (PUBLIC_STATE[nxt], before)
        assert m.state is PUBLIC_STATE[nxt]
    else:
        assert changes == []
        assert m.state is before


def test_table_covers_what_the_module_promises() -> None:
    # the listed transitions are the whole table minus the guarded absorbs
    assert set(LISTED) | _GUARDED == set(TRANSITIONS)
    # the public state of a phase is named by its prefix; CLOSING reports nothing itself
    for phase, state in PUBLIC_STATE.items():
        if phase is P.CLOSING:
            assert state is None
        else:
            assert state is S[phase.name.split("_HANDSHAKE")[0].split("_RESTORING")[0]]
    # reports happen exactly when the public state changes
    for (phase, _event), (nxt, report) in TRANSITIONS.items():
        if phase is P.CLOSING:
            assert report is (nxt is P.CLOSED)
        elif phase is not P.CLOSED:
            assert report is (PUBLIC_STATE[phase] is not PUBLIC_STATE[nxt]
                              and PUBLIC_STATE[nxt] is not None)


UNLISTED = [(p, e) for p in Phase for e in SessionEvent if (p, e) not in TRANSITIONS]


@pytest.mark.parametrize("phase, event", UNLISTED, ids=[f"{p.value}+{e.value}" for p, e in UNLISTED])
def test_unlisted_pairs_fail_closed(phase: Phase, event: SessionEvent) -> None:
    m = reach(phase)
    state = m.state
    with pytest.raises(ProtocolError):
        m._fire(event)  # white-box: the table itself must refuse, whatever guards it
    assert (m.phase, m.state, m.take_changes()) == (phase, state, [])


@pytest.mark.parametrize("phase", [p for p in Phase if (p, E.CONNECT) not in TRANSITIONS])
def test_connect_request_with_a_connection_open_is_refused(phase: Phase) -> None:
    m = reach(phase)
    with pytest.raises(ProtocolError):
        m.connect_request(NOW)
    assert m.phase is phase


@pytest.mark.parametrize("phase", [P.CLOSING, P.CLOSED])
def test_closing_and_closed_absorb_every_event(phase: Phase) -> None:
    for event in SessionEvent:
        nxt, report = TRANSITIONS[(phase, event)]
        expect = P.CLOSED if (phase, event) == (P.CLOSING, E.CLOSED) else phase
        assert (nxt, report) == (expect, expect is not phase)
    m = reach(phase)
    state = m.state
    with pytest.raises(ProtocolError):
        m.connect_request(NOW)
    m.connection_lost()
    m.begin_close()
    assert m.check_presumed_expired(FAR) is False
    for response in (connect_response(), connect_response(session_id=OTHER_SID),
                     EXPIRED_RESPONSE):
        with pytest.raises(ProtocolError):
            m.handshake(response, NOW)
    with pytest.raises(ProtocolError):
        m.prime([], WatchRegistry(), NOW)
    with pytest.raises(ConnectionLossError):
        m.submit(ops.Sync("/"), "t", NOW)
    with pytest.raises(ConnectionLossError):
        m.auth_frame("digest", b"a:b", "t", NOW)
    assert (m.phase, m.state, m.take_changes(), m.can_send) == (phase, state, [], False)
    m.finish_close()
    m.finish_close()
    changes = m.take_changes()
    assert m.phase is P.CLOSED and m.state is S.CLOSED
    assert [(c.state, c.previous) for c in changes] == (
        [(S.CLOSED, S.CONNECTED)] if phase is P.CLOSING else [])


def test_finish_close_fails_what_is_pending() -> None:
    m = connected()
    send(m, ops.Sync("/a"), "a")
    m.auth_frame("digest", b"a:b", "auth", NOW)
    m.begin_close()
    close_frame = m.close_session_frame("close", NOW)
    assert close_frame[8:12] == struct.pack(">i", -11)
    assert m.connection_lost() == ["a", "close", "auth"]  # absorbed: no SUSPENDED
    assert m.take_changes() == []
    assert m.finish_close() == []


# --- scripted scenarios --------------------------------------------------------------------

Change = tuple[ClientState, ClientState, int | None, bool, bool]


def changes_of(m: SessionMachine[Any]) -> list[Change]:
    return [(c.state, c.previous, c.session_id, c.new_session, c.confirmed)
            for c in m.take_changes()]


def handshake(m: SessionMachine[Any], response: bytes, now: float = NOW) -> HandshakeOutcome:
    m.connect_request(now)
    return m.handshake(response, now)


def test_first_connect_reports_connected_only_once_restored() -> None:
    m: SessionMachine[Any] = SessionMachine(requested_timeout=6.0)
    assert m.state is S.CONNECTING
    frame = m.connect_request(0.0)
    assert frame[20:28] == bytes(8)  # sessionId 0: a new session
    assert changes_of(m) == []
    assert m.handshake(connect_response(), 0.0) is HandshakeOutcome.NEW_SESSION
    assert (changes_of(m), m.state, m.can_send) == ([], S.CONNECTING, False)
    with pytest.raises(ConnectionLossError):
        m.submit(ops.Sync("/"), "early", 0.0)
    assert m.pending_count == 0
    reg: WatchRegistry[str] = WatchRegistry()
    reg.add(WatchKind.DATA, "/w", "w")
    out = m.prime([("digest", b"a:b")], reg, 0.5)
    assert out and m.state is S.CONNECTING
    assert m.receive(reply(-8, 3), 0.6) is None  # SetWatches answered first
    assert (changes_of(m), m.can_send) == ([], False)  # the auth is still out
    auth = m.receive(reply(-4, 0), 0.7)
    assert isinstance(auth, AuthReply) and (auth.err, auth.token) == (0, None)
    assert changes_of(m) == [(S.CONNECTED, S.CONNECTING, SID, True, False)]
    assert m.can_send


def test_first_connect_read_only() -> None:
    m: SessionMachine[Any] = SessionMachine(requested_timeout=6.0)
    handshake(m, connect_response(read_only=True))
    m.prime([], WatchRegistry(), NOW)
    assert changes_of(m) == [(S.READ_ONLY, S.CONNECTING, SID, True, False)]
    assert m.can_send
    m.connection_lost()
    handshake(m, connect_response(), 2.0)  # a read-write server resumes it
    m.prime([], WatchRegistry(), 2.0)
    assert changes_of(m) == [(S.SUSPENDED, S.READ_ONLY, SID, False, False),
                             (S.CONNECTED, S.SUSPENDED, SID, False, False)]


def test_disconnect_then_resume() -> None:
    m = connected()
    m.take_changes()
    assert m.connection_lost() == []
    assert changes_of(m) == [(S.SUSPENDED, S.CONNECTED, SID, False, False)]
    m.connection_lost()  # a second loss report changes nothing
    assert changes_of(m) == []
    assert handshake(m, connect_response()) is HandshakeOutcome.RESUMED
    assert changes_of(m) == []  # still SUSPENDED until restored
    assert m.state is S.SUSPENDED
    m.prime([], WatchRegistry(), NOW)
    assert changes_of(m) == [(S.CONNECTED, S.SUSPENDED, SID, False, False)]
    assert m.epoch == 0


def test_expiry_at_handshake_then_a_new_session() -> None:
    m = connected()
    x = send(m, ops.Sync("/a"), "a")
    m.receive(reply(x, 0x55, 0, ustring("/a")), 0.5)
    m.connection_lost()
    m.take_changes()
    assert handshake(m, EXPIRED_RESPONSE) is HandshakeOutcome.EXPIRED
    assert not HandshakeOutcome.EXPIRED.usable
    assert changes_of(m) == [(S.LOST, S.SUSPENDED, SID, False, True)]
    assert (m.session_id, m.password, m.last_zxid, m.epoch) == (0, bytes(16), 0, 1)
    m.connection_lost()  # the server closes the socket
    frame = m.connect_request(2.0)
    assert frame[8:16] == bytes(8) and frame[20:28] == bytes(8)  # lastZxid 0, session 0
    assert m.handshake(EXPIRED_RESPONSE, 2.0) is HandshakeOutcome.EXPIRED  # never twice
    assert changes_of(m) == []
    m.connection_lost()
    assert handshake(m, connect_response(session_id=OTHER_SID), 3.0) is HandshakeOutcome.NEW_SESSION
    m.prime([], WatchRegistry(), 3.0)
    assert changes_of(m) == [(S.CONNECTED, S.LOST, OTHER_SID, True, False)]
    assert m.epoch == 1


def test_session_replaced_is_lost_then_connected_new() -> None:
    m = connected()
    m.connection_lost()
    m.take_changes()
    assert handshake(m, connect_response(session_id=OTHER_SID)) is HandshakeOutcome.REPLACED
    assert changes_of(m) == [(S.LOST, S.SUSPENDED, SID, False, True)]
    assert (m.session_id, m.epoch) == (OTHER_SID, 1)
    m.prime([], WatchRegistry(), NOW)
    assert changes_of(m) == [(S.CONNECTED, S.LOST, OTHER_SID, True, False)]


def test_presumed_expiry() -> None:
    m = connected()
    x = send(m, ops.Sync("/a"), "a")
    m.receive(reply(x, 0x99, 0, ustring("/a")), 0.0)
    m.connection_lost()
    m.take_changes()
    assert m.connect_request(1.0)[8:16] == struct.pack(">q", 0x99)  # a resume attempt ...
    m.connection_lost()  # ... that a wiped server refuses by closing
    assert m.check_presumed_expired(5.99) is False  # before the 6 s timeout
    assert m.take_stale_sessions() == []
    assert m.check_presumed_expired(6.0) is True
    assert changes_of(m) == [(S.LOST, S.SUSPENDED, SID, False, False)]
    assert m.take_stale_sessions() == [(SID, PW)]
    assert m.take_stale_sessions() == []
    assert m.check_presumed_expired(100.0) is False  # once
    assert changes_of(m) == []
    frame = m.connect_request(101.0)
    assert frame[8:16] == bytes(8)  # lastZxidSeen 0: a wiped server answers it
    assert frame[20:28] == bytes(8)  # sessionId 0: never resume a session given up
    assert frame[32:48] == bytes(16)
    assert m.handshake(connect_response(session_id=OTHER_SID), 101.0) is HandshakeOutcome.NEW_SESSION
    m.prime([], WatchRegistry(), 101.0)
    assert changes_of(m) == [(S.CONNECTED, S.LOST, OTHER_SID, True, False)]
    assert m.epoch == 1


def test_presumed_expiry_not_postponed_by_unanswered_connect_attempts() -> None:
    m = connected(now=0.0)
    m.connection_lost()
    for t in (2.0, 4.0, 5.5):
        m.connect_request(t)  # TCP connected, ConnectRequest written, no reply ...
        m.connection_lost()  # ... and the server closes the socket
    assert m.presumed_expiry_at() == 6.0
    assert m.check_presumed_expired(6.0) is True


@pytest.mark.parametrize("lost_first", [False, True], ids=["first session", "after LOST"])
def test_new_session_survives_drops_during_restore(lost_first: bool) -> None:
    # issue 11 defect 6: the first connections of a new session drop during set-up
    m: SessionMachine[Any] = SessionMachine(requested_timeout=6.0)
    sid, before = SID, S.CONNECTING
    if lost_first:
        m = connected()
        m.connection_lost()
        handshake(m, EXPIRED_RESPONSE)
        m.connection_lost()
        m.take_changes()
        sid, before = OTHER_SID, S.LOST
    reg: WatchRegistry[str] = WatchRegistry()
    reg.add(WatchKind.DATA, "/w", "w")
    assert handshake(m, connect_response(session_id=sid)) is HandshakeOutcome.NEW_SESSION
    m.prime([("digest", b"a:b")], reg, NOW)
    m.connection_lost()  # auth and SetWatches in flight
    assert handshake(m, connect_response(session_id=sid), 2.0) is HandshakeOutcome.RESUMED
    m.prime([("digest", b"a:b")], reg, 2.0)
    m.receive(reply(-8), 2.1)  # SetWatches answered, the auth never is
    m.connection_lost()
    assert changes_of(m) == []  # the application was told nothing of that session
    assert handshake(m, connect_response(session_id=sid), 3.0) is HandshakeOutcome.RESUMED
    m.prime([], WatchRegistry(), 3.0)
    assert changes_of(m) == [(S.CONNECTED, before, sid, True, False)]
    m.connection_lost()
    handshake(m, connect_response(session_id=sid), 4.0)
    m.prime([], WatchRegistry(), 4.0)
    assert [c[3] for c in changes_of(m)] == [False, False]  # SUSPENDED, CONNECTED: not new


def test_lost_exactly_once_and_epoch_counts_it() -> None:
    m = connected()
    epochs = [m.epoch]
    m.connection_lost()
    epochs.append(m.epoch)  # SUSPENDED: no
    m.check_presumed_expired(10.0)
    epochs.append(m.epoch)  # LOST (presumed): yes
    m.check_presumed_expired(20.0)
    handshake(m, EXPIRED_RESPONSE, 21.0)  # the next session is refused too: not a LOST
    m.connection_lost()
    epochs.append(m.epoch)
    handshake(m, connect_response(session_id=OTHER_SID), 22.0)
    m.prime([], WatchRegistry(), 22.0)
    m.connection_lost()
    handshake(m, connect_response(session_id=REPLACEMENT_SID), 23.0)  # REPLACED: LOST
    epochs.append(m.epoch)
    m.prime([], WatchRegistry(), 23.0)
    m.connection_lost()
    handshake(m, EXPIRED_RESPONSE, 24.0)  # confirmed: LOST
    epochs.append(m.epoch)
    lost = [c for c in m.take_changes() if c.state is S.LOST]
    assert [(c.session_id, c.confirmed) for c in lost] == [
        (SID, False), (OTHER_SID, True), (REPLACEMENT_SID, True)]
    assert epochs == [0, 0, 1, 1, 2, 3]


# --- replies during the lifecycle ----------------------------------------------------------


def test_reply_body_that_does_not_decode_leaves_its_request_pending() -> None:
    # issue 11 defect 1: the request must stay in the FIFO so connection_lost() fails it
    m = connected()
    x = send(m, ops.GetData("/a"), "get")
    send(m, ops.Sync("/b"), "sync")
    bad = reply(x, 7, 0, struct.pack(">i", -2))  # data length -2, no stat
    with pytest.raises(ProtocolError):
        m.receive(bad, 1.0)
    assert m.pending_count == 2
    assert m.last_zxid == 0  # the bad reply moved nothing
    assert m.connection_lost() == ["get", "sync"]


def test_failed_auth_reply_fails_the_restore() -> None:
    m: SessionMachine[Any] = SessionMachine(requested_timeout=6.0)
    handshake(m, connect_response())
    reg: WatchRegistry[str] = WatchRegistry()
    reg.add(WatchKind.CHILD, "/w", "w")
    m.prime([("digest", b"a:b"), ("digest", b"c:d")], reg, NOW)
    assert m.receive(reply(-4, 0, 0), NOW) == AuthReply(0)
    failed = m.receive(reply(-4, 0, -115), NOW)  # AuthFailed
    assert failed == AuthReply(-115)
    assert m.receive(reply(-8, 5), NOW) is None  # everything else answered
    assert (m.phase, m.can_send, changes_of(m)) == (P.CONNECTING_RESTORING, False, [])
    with pytest.raises(ConnectionLossError):
        m.submit(ops.Sync("/"), "t", NOW)
    m.connection_lost()  # the server closes after AuthFailed
    assert m.phase is P.CONNECTING
    assert changes_of(m) == []


def test_auth_pending_forgotten_on_connection_loss() -> None:
    m: SessionMachine[Any] = SessionMachine(requested_timeout=6.0)
    handshake(m, connect_response())
    m.prime([("digest", b"a:b")], WatchRegistry(), NOW)
    m.connection_lost()
    handshake(m, connect_response(), 2.0)
    with pytest.raises(ProtocolError):
        m.receive(reply(-4, 0, 0), 2.0)


def test_handshake_refused_by_the_server() -> None:
    # a bare ReplyHeader (e.g. NotReadOnly) instead of a ConnectResponse: try another server
    m: SessionMachine[Any] = SessionMachine(requested_timeout=6.0)
    m.connect_request(0.0)
    with pytest.raises(ProtocolError, match="refused"):
        m.handshake(reply(0, 0, -119), 0.0)
    m.connection_lost()
    assert (m.phase, m.session_id, m.take_changes()) == (P.CONNECTING, 0, [])
    with pytest.raises(ProtocolError):  # no handshake in progress
        m.handshake(connect_response(), 0.0)


def test_attach_and_close_frames() -> None:
    from zkwarden.protocol.session import attach_and_close_frames

    out = attach_and_close_frames(SID, PW)
    assert struct.unpack_from(">i", out, 0)[0] == 45
    assert out[20:28] == struct.pack(">q", SID) and out[32:48] == PW
    assert out[49:] == struct.pack(">iii", 8, 1, -11)  # CloseSession, xid 1
