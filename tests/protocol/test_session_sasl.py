"""The SASL exchange in the session machine's restore phase (no event loop)."""

from __future__ import annotations

import struct
from typing import Any

from zkwarden.errors import AuthFailedError
from zkwarden.protocol.ops import WatchKind
from zkwarden.protocol.session import AuthReply, Outgoing, Phase, SessionMachine
from zkwarden.protocol.watches import WatchRegistry
from zkwarden.types import ClientState

from ._machine import connect_response, reply


class ScriptedMechanism:
    """Answers challenge i with response i; complete after the last challenge."""

    name = "TEST"

    def __init__(self, initial: bytes, steps: list[tuple[bytes, bytes | None]]) -> None:
        self._initial = initial
        self._steps = list(steps)
        self.seen: list[bytes] = []
        self._done = False

    def initial_response(self) -> bytes:
        return self._initial

    def evaluate(self, challenge: bytes) -> bytes | None:
        self.seen.append(challenge)
        expected, response = self._steps.pop(0)
        if challenge != expected:
            raise AuthFailedError("bad proof")
        if response is None:
            self._done = True
        return response

    @property
    def complete(self) -> bool:
        return self._done


def frames(data: bytes) -> list[tuple[int, int, bytes]]:
    out = []
    while data:
        (n,) = struct.unpack_from(">i", data)
        xid, op = struct.unpack_from(">ii", data, 4)
        out.append((xid, op, data[12 : 4 + n]))
        data = data[4 + n :]
    return out


def buffer(b: bytes | None) -> bytes:
    return struct.pack(">i", -1) if b is None else struct.pack(">i", len(b)) + b


def handshaken(**kw: Any) -> SessionMachine[Any]:
    m: SessionMachine[Any] = SessionMachine(requested_timeout=6.0, **kw)
    m.connect_request(0.0)
    m.handshake(connect_response(), 0.0)
    assert m.take_changes() == []
    return m


def test_sasl_runs_first_then_auth_and_watches_then_connected() -> None:
    m = handshaken()
    watches: WatchRegistry[Any] = WatchRegistry()
    watches.add(WatchKind.DATA, "/a", object())
    mech = ScriptedMechanism(b"", [(b"challenge", b"response"), (b"rspauth", None)])
    out = frames(m.prime([("digest", b"u:p")], watches, 0.0, sasl=mech))
    assert [(op, body) for _xid, op, body in out] == [(102, buffer(b""))]  # SASL alone
    xid1 = out[0][0]
    step = m.receive(reply(xid1, 0, 0, buffer(b"challenge")), 0.1)
    assert isinstance(step, Outgoing)
    (xid2, op2, body2), = frames(step.frame)
    assert (op2, body2) == (102, buffer(b"response"))
    assert m.phase is Phase.CONNECTING_RESTORING and m.take_changes() == []
    done = m.receive(reply(xid2, 0, 0, buffer(b"rspauth")), 0.2)
    assert isinstance(done, Outgoing)
    rest = frames(done.frame)
    assert [op for _x, op, _b in rest] == [100, 101]  # auth, then SetWatches
    assert m.take_changes() == []  # not live until those are answered too
    m.receive(reply(-4), 0.3)
    m.receive(reply(rest[1][0]), 0.3)
    (change,) = m.take_changes()
    assert change.state is ClientState.CONNECTED and change.new_session
    assert mech.seen == [b"challenge", b"rspauth"]


def test_sasl_without_anything_else_to_restore_goes_live_at_its_end() -> None:
    m = handshaken()
    mech = ScriptedMechanism(b"hello", [(b"ok", None)])
    ((xid, op, body),) = frames(m.prime([], WatchRegistry(), 0.0, sasl=mech))
    assert (op, body) == (102, buffer(b"hello"))
    done = m.receive(reply(xid, 0, 0, buffer(b"ok")), 0.1)
    assert isinstance(done, Outgoing) and done.frame == b""
    assert [c.state for c in m.take_changes()] == [ClientState.CONNECTED]
    assert m.can_send


def test_sasl_error_from_the_server_is_an_auth_failure_and_never_live() -> None:
    m = handshaken()
    mech = ScriptedMechanism(b"", [])
    ((xid, _op, _body),) = frames(m.prime([], WatchRegistry(), 0.0, sasl=mech))
    failed = m.receive(reply(xid, 0, -115), 0.1)
    assert isinstance(failed, AuthReply) and failed.err == -115 and failed.token is None
    assert not m.can_send and m.take_changes() == []
    m.connection_lost()
    assert m.phase is Phase.CONNECTING


def test_a_wrong_server_proof_is_an_auth_failure() -> None:
    m = handshaken()
    mech = ScriptedMechanism(b"", [(b"challenge", b"response"), (b"rspauth", None)])
    ((xid, _op, _body),) = frames(m.prime([], WatchRegistry(), 0.0, sasl=mech))
    step = m.receive(reply(xid, 0, 0, buffer(b"challenge")), 0.1)
    assert isinstance(step, Outgoing)
    ((xid2, _op2, _body2),) = frames(step.frame)
    failed = m.receive(reply(xid2, 0, 0, buffer(b"forged")), 0.2)
    assert isinstance(failed, AuthReply) and failed.err == -115
    assert not m.can_send and m.take_changes() == []


def test_a_connection_lost_mid_exchange_starts_over_on_the_next() -> None:
    m = handshaken()
    mech = ScriptedMechanism(b"", [(b"challenge", b"response"), (b"rspauth", None)])
    m.prime([], WatchRegistry(), 0.0, sasl=mech)
    assert m.connection_lost() == []
    m.connect_request(1.0)
    m.handshake(connect_response(), 1.0)
    again = ScriptedMechanism(b"", [(b"c", None)])
    ((xid, op, _body),) = frames(m.prime([], WatchRegistry(), 1.0, sasl=again))
    assert op == 102
    done = m.receive(reply(xid, 0, 0, buffer(b"c")), 1.1)
    assert isinstance(done, Outgoing)
    (change,) = m.take_changes()
    assert change.state is ClientState.CONNECTED and change.new_session
