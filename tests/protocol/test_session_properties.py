"""Random event sequences never break the state rules of DESIGN section 4.

A small driver plays the I/O layer (connect, handshake, prime, replies, timers, drops,
close) with random server answers and random frames; after every step the reported
state changes are checked: a consistent chain, no CONNECTED without a session id,
``new_session=True`` exactly once per new session id, LOST at most once per session and
only for one the application was told about, ``epoch`` counting LOST, nothing after CLOSED.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zkwarden.errors import ConnectionLossError, ProtocolError
from zkwarden.protocol import ops
from zkwarden.protocol.ops import WatchKind
from zkwarden.protocol.session import HandshakeOutcome, SessionMachine
from zkwarden.protocol.watches import WatchRegistry
from zkwarden.types import ClientState, ClientStateChange

from ._machine import EXPIRED_RESPONSE, PW, connect_response, reply, ustring

S = ClientState
LIVE = (S.CONNECTED, S.READ_ONLY)

HANDSHAKES = st.sampled_from(
    ["resume", "resume", "resume", "new", "new", "expired", "refused", "garbage"])
REPLIES = st.tuples(
    st.sampled_from([-8, -4, -2, -1, 1, 2, 3, 4, 5, 6]),
    st.sampled_from([0, 0, -101, -115]),
    st.sampled_from([b"", ustring("/a"), b"\xff\xff\xff\xfe", struct.pack(">ii", 1, 3) + ustring("/w")]),
)
PRIME = st.tuples(st.integers(0, 2), st.integers(0, 1))
# a whole connection set-up in one step, so that short sequences reach deep states
CONNECTION = st.tuples(st.just("connection"), HANDSHAKES, st.booleans(), PRIME)
SERVE = st.just(("serve",))  # the server answers what the last prime() sent
ACTIONS = st.one_of(
    CONNECTION, CONNECTION, CONNECTION, CONNECTION, SERVE, SERVE, SERVE,  # weighted
    st.just(("drop",)), st.just(("drop",)),
    st.just(("connect",)),
    st.tuples(st.just("handshake"), HANDSHAKES, st.booleans()),
    st.tuples(st.just("prime"), st.integers(0, 2), st.integers(0, 1)),
    st.tuples(st.just("reply"), REPLIES),
    st.just(("submit",)),
    st.just(("auth",)),
    st.tuples(st.just("time"), st.sampled_from([0.5, 2.0, 4.5, 7.0])),
)
# close() is inserted once at a random point (or not at all): later actions must be absorbed
CLOSE_AT = st.one_of(st.none(), st.tuples(st.integers(0, 80), st.booleans()))


class Checker:
    """Checks each state change against DESIGN section 4 as it is reported."""

    def __init__(self) -> None:
        self.state = S.CONNECTING
        self.connected_ids: set[int] = set()
        self.lost_ids: set[int] = set()
        self.current: int | None = None  # the session the application was last told of
        self.lost_count = 0

    def check(self, m: SessionMachine[Any], changes: list[ClientStateChange]) -> None:
        for c in changes:
            assert self.state is not S.CLOSED, f"{c} after CLOSED"
            assert c.previous is self.state, f"{c}: previous is not {self.state}"
            assert c.state is not c.previous, c
            if c.state in LIVE:
                assert c.session_id, f"{c} without a session id"
                assert c.session_id not in self.lost_ids, f"{c} for a session reported LOST"
                new = c.session_id not in self.connected_ids
                assert c.new_session is new, f"{c}: new_session should be {new}"
                if self.current is not None and c.session_id != self.current:
                    assert self.state is S.LOST, f"{c} replaces {self.current:#x} without LOST"
                self.connected_ids.add(c.session_id)
                self.current = c.session_id
            else:
                assert c.new_session is False, c
            if c.state is S.SUSPENDED:
                assert c.previous in LIVE and c.session_id == self.current, c
            if c.state is S.LOST:
                assert c.session_id in self.connected_ids, f"{c}: never reported connected"
                assert c.session_id not in self.lost_ids, f"{c}: LOST twice"
                assert c.session_id == self.current, c
                self.lost_ids.add(c.session_id)
                self.lost_count += 1
            self.state = c.state
        assert m.state is self.state
        assert m.epoch == self.lost_count
        if m.can_send:
            assert m.state in LIVE and m.session_id


class Driver:
    """Plays the I/O layer the way the module doc prescribes."""

    def __init__(self) -> None:
        self.m: SessionMachine[Any] = SessionMachine(requested_timeout=6.0)
        self.now = 0.0
        self.next_id = 0x0500000000000001
        self.token = 0
        self.registry: WatchRegistry[str] = WatchRegistry()
        self.registry.add(WatchKind.DATA, "/w", "w")
        self.primed = (0, 0)  # (auth packets, SetWatches frames) the last prime() sent

    def drop(self) -> None:
        self.m.connection_lost()
        self.primed = (0, 0)

    def fresh_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def step(self, action: tuple[Any, ...]) -> None:
        m, kind = self.m, action[0]
        if kind == "connect":
            try:
                m.connect_request(self.now)
            except ProtocolError:
                pass  # a connection is already open: refused, nothing changed
        elif kind == "connection":
            if m.phase.value in ("connecting", "suspended", "lost"):
                m.connect_request(self.now)
                if self.handshake(action[1], action[2]):
                    self.prime(*action[3])
        elif kind == "handshake":
            self.handshake(action[1], action[2])
        elif kind == "prime":
            self.prime(action[1], action[2])
        elif kind == "reply":
            xid, err, body = action[1]
            try:
                m.receive(reply(xid, 0x10, err, body), self.now)
            except ProtocolError:
                self.drop()
        elif kind in ("submit", "auth"):
            self.token += 1
            try:
                if kind == "submit":
                    m.submit(ops.GetData("/a"), self.token, self.now)
                else:
                    m.auth_frame("digest", b"u:p", self.token, self.now)
            except ConnectionLossError:
                assert not m.can_send
        elif kind == "time":
            self.now += action[1]
            m.on_timer(self.now)
            if m.read_timed_out(self.now):
                self.drop()
            if m.check_presumed_expired(self.now) and m.phase.value.endswith(
                    ("/handshake", "/restoring")):
                self.drop()  # the caller drops a connection whose session was given up
        elif kind == "drop":
            self.drop()
        elif kind == "serve":
            frames = [reply(-8, 0x20)] * self.primed[1] + [reply(-4)] * self.primed[0]
            self.primed = (0, 0)
            for frame in frames:
                try:
                    m.receive(frame, self.now)
                except ProtocolError:
                    self.drop()
                    break
        elif kind == "close":
            if not m.closing:
                m.begin_close()
            if action[1]:
                m.finish_close()

    def prime(self, n_auth: int, n_watches: int) -> None:
        registry: WatchRegistry[str] = self.registry if n_watches else WatchRegistry()
        try:
            self.m.prime([("digest", b"u:p")] * n_auth, registry, self.now)
        except ProtocolError:
            return  # not right after a handshake
        self.primed = (n_auth, registry.count())

    def handshake(self, answer: str, read_only: bool) -> bool:
        """Feed a random server answer; True when the connection now carries a session."""
        m = self.m
        asked = m.session_id
        if answer == "resume":
            response = connect_response(session_id=asked or self.fresh_id(), read_only=read_only)
        elif answer == "new":
            response = connect_response(session_id=self.fresh_id(), read_only=read_only)
        elif answer == "expired":
            response = EXPIRED_RESPONSE
        elif answer == "refused":
            response = reply(0, 0, -119)
        else:
            response = struct.pack(">iiqi", 0, 6000, self.fresh_id(), 40) + PW
        try:
            outcome = m.handshake(response, self.now)
        except ProtocolError:
            self.drop()
            return False
        if outcome is HandshakeOutcome.EXPIRED:
            self.drop()  # the server closes the connection
            return False
        return True


@settings(max_examples=800, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTIONS, min_size=5, max_size=80), CLOSE_AT)
def test_random_sequences_follow_design_section_4(
    actions: list[tuple[Any, ...]], close_at: tuple[int, bool] | None
) -> None:
    if close_at is not None:
        actions.insert(close_at[0], ("close", close_at[1]))
    driver, checker = Driver(), Checker()
    for action in actions:
        driver.step(action)
        checker.check(driver.m, driver.m.take_changes())


@pytest.mark.parametrize("read_only", [False, True])
def test_no_connected_without_a_session_id(read_only: bool) -> None:
    # A ConnectResponse with a positive timeout and sessionId 0 grants no session (no
    # ZooKeeper server hands out id 0): it must be refused, not reported as CONNECTED.
    m: SessionMachine[Any] = SessionMachine(requested_timeout=6.0)
    m.connect_request(0.0)
    try:
        m.handshake(connect_response(session_id=0, read_only=read_only), 0.0)
        m.prime([], WatchRegistry(), 0.0)
    except ProtocolError:
        pass  # refused: fine
    Checker().check(m, m.take_changes())
