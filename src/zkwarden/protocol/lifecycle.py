"""The session lifecycle as one table: phases, events, and what the application is told.

``TRANSITIONS`` maps ``(Phase, SessionEvent)`` to ``(next Phase, report)``. A phase says both
where the current connection is (none, handshake, restoring, live) and what the application
was last told (``PUBLIC_STATE``); ``report`` says whether entering the next phase is a
:class:`~zkwarden.types.ClientStateChange`. A pair not in the table is a bug, and
:class:`zkwarden.protocol.session.SessionMachine`, the only user of this table, fails closed
on it. The pairs that change nothing are listed too. See ``docs/architecture.md``.
"""

from __future__ import annotations

import enum

from ..types import ClientState

__all__ = (
    "Phase",
    "SessionEvent",
    "HandshakeOutcome",
    "PUBLIC_STATE",
    "TRANSITIONS",
    "HANDSHAKING",
    "RESTORING",
    "LIVE",
    "ATTACHED",
)


class Phase(enum.Enum):
    """Where the session is. ``X_HANDSHAKE``/``X_RESTORING`` keep reporting ``X``."""

    CONNECTING = "connecting"  # no session reported yet; no connection
    CONNECTING_HANDSHAKE = "connecting/handshake"  # ConnectRequest sent
    CONNECTING_RESTORING = "connecting/restoring"  # session granted; auth in flight
    CONNECTED = "connected"
    READ_ONLY = "read_only"
    SUSPENDED = "suspended"  # disconnected; the session may be alive
    SUSPENDED_HANDSHAKE = "suspended/handshake"
    SUSPENDED_RESTORING = "suspended/restoring"  # resumed; auth + SetWatches in flight
    LOST = "lost"  # LOST reported; the next handshake opens a new session
    LOST_HANDSHAKE = "lost/handshake"
    LOST_RESTORING = "lost/restoring"
    CLOSING = "closing"  # close() began; nothing but CLOSED moves on from here
    CLOSED = "closed"

    # Enum's own __hash__ is Python code (hash of the name): the request path asks
    # ``phase in LIVE`` twice per request. Members are singletons compared by identity.
    __hash__ = object.__hash__


class SessionEvent(enum.Enum):
    """Inputs to the transition table."""

    CONNECT = "connect"  # a connection is open and the ConnectRequest goes out
    RESUMED = "resumed"  # handshake: the server resumed the session we asked for
    NEW_SESSION = "new_session"  # handshake: a session, and we asked for none
    REPLACED = "replaced"  # handshake: another session than the one we asked to resume
    EXPIRED = "expired"  # handshake: the session we asked to resume is gone
    RESTORED = "restored"  # auth and SetWatches answered on a read-write server
    RESTORED_READ_ONLY = "restored_read_only"
    DISCONNECTED = "disconnected"
    PRESUMED_EXPIRED = "presumed_expired"  # no server heard for a session timeout
    CLOSE = "close"  # close() began
    CLOSED = "closed"  # close() finished


class HandshakeOutcome(enum.Enum):
    """What a ConnectResponse meant (the handshake events of the table)."""

    RESUMED = SessionEvent.RESUMED
    NEW_SESSION = SessionEvent.NEW_SESSION
    REPLACED = SessionEvent.REPLACED
    EXPIRED = SessionEvent.EXPIRED

    @property
    def usable(self) -> bool:
        """True when the connection carries a session now (everything but EXPIRED)."""
        return self is not HandshakeOutcome.EXPIRED


_P = Phase
_E = SessionEvent

#: What the application is told in each phase (CLOSING: what it was told before).
PUBLIC_STATE: dict[Phase, ClientState | None] = {
    _P.CONNECTING: ClientState.CONNECTING,
    _P.CONNECTING_HANDSHAKE: ClientState.CONNECTING,
    _P.CONNECTING_RESTORING: ClientState.CONNECTING,
    _P.CONNECTED: ClientState.CONNECTED,
    _P.READ_ONLY: ClientState.READ_ONLY,
    _P.SUSPENDED: ClientState.SUSPENDED,
    _P.SUSPENDED_HANDSHAKE: ClientState.SUSPENDED,
    _P.SUSPENDED_RESTORING: ClientState.SUSPENDED,
    _P.LOST: ClientState.LOST,
    _P.LOST_HANDSHAKE: ClientState.LOST,
    _P.LOST_RESTORING: ClientState.LOST,
    _P.CLOSING: None,
    _P.CLOSED: ClientState.CLOSED,
}

# (phase, event) -> (next phase, report the next phase's public state).
TRANSITIONS: dict[tuple[Phase, SessionEvent], tuple[Phase, bool]] = {
    # --- before the first session is reported -------------------------------------------
    (_P.CONNECTING, _E.CONNECT): (_P.CONNECTING_HANDSHAKE, False),
    (_P.CONNECTING, _E.DISCONNECTED): (_P.CONNECTING, False),
    (_P.CONNECTING, _E.PRESUMED_EXPIRED): (_P.CONNECTING, False),  # unreported session
    (_P.CONNECTING_HANDSHAKE, _E.NEW_SESSION): (_P.CONNECTING_RESTORING, False),
    (_P.CONNECTING_HANDSHAKE, _E.RESUMED): (_P.CONNECTING_RESTORING, False),
    (_P.CONNECTING_HANDSHAKE, _E.REPLACED): (_P.CONNECTING_RESTORING, False),
    (_P.CONNECTING_HANDSHAKE, _E.EXPIRED): (_P.CONNECTING, False),
    (_P.CONNECTING_HANDSHAKE, _E.DISCONNECTED): (_P.CONNECTING, False),
    (_P.CONNECTING_HANDSHAKE, _E.PRESUMED_EXPIRED): (_P.CONNECTING, False),
    (_P.CONNECTING_RESTORING, _E.RESTORED): (_P.CONNECTED, True),
    (_P.CONNECTING_RESTORING, _E.RESTORED_READ_ONLY): (_P.READ_ONLY, True),
    (_P.CONNECTING_RESTORING, _E.DISCONNECTED): (_P.CONNECTING, False),
    (_P.CONNECTING_RESTORING, _E.PRESUMED_EXPIRED): (_P.CONNECTING, False),
    # --- live ---------------------------------------------------------------------------
    (_P.CONNECTED, _E.DISCONNECTED): (_P.SUSPENDED, True),
    (_P.READ_ONLY, _E.DISCONNECTED): (_P.SUSPENDED, True),
    # --- disconnected, the session may still be alive -------------------------------------
    (_P.SUSPENDED, _E.CONNECT): (_P.SUSPENDED_HANDSHAKE, False),
    (_P.SUSPENDED, _E.DISCONNECTED): (_P.SUSPENDED, False),
    (_P.SUSPENDED, _E.PRESUMED_EXPIRED): (_P.LOST, True),
    (_P.SUSPENDED_HANDSHAKE, _E.RESUMED): (_P.SUSPENDED_RESTORING, False),
    (_P.SUSPENDED_HANDSHAKE, _E.REPLACED): (_P.LOST_RESTORING, True),
    (_P.SUSPENDED_HANDSHAKE, _E.EXPIRED): (_P.LOST, True),
    (_P.SUSPENDED_HANDSHAKE, _E.DISCONNECTED): (_P.SUSPENDED, False),
    (_P.SUSPENDED_HANDSHAKE, _E.PRESUMED_EXPIRED): (_P.LOST, True),
    (_P.SUSPENDED_RESTORING, _E.RESTORED): (_P.CONNECTED, True),
    (_P.SUSPENDED_RESTORING, _E.RESTORED_READ_ONLY): (_P.READ_ONLY, True),
    (_P.SUSPENDED_RESTORING, _E.DISCONNECTED): (_P.SUSPENDED, False),
    (_P.SUSPENDED_RESTORING, _E.PRESUMED_EXPIRED): (_P.LOST, True),
    # --- LOST reported; opening the next session -----------------------------------------
    (_P.LOST, _E.CONNECT): (_P.LOST_HANDSHAKE, False),
    (_P.LOST, _E.DISCONNECTED): (_P.LOST, False),
    (_P.LOST, _E.PRESUMED_EXPIRED): (_P.LOST, False),  # the unreported next session
    (_P.LOST_HANDSHAKE, _E.NEW_SESSION): (_P.LOST_RESTORING, False),
    (_P.LOST_HANDSHAKE, _E.RESUMED): (_P.LOST_RESTORING, False),
    (_P.LOST_HANDSHAKE, _E.REPLACED): (_P.LOST_RESTORING, False),
    (_P.LOST_HANDSHAKE, _E.EXPIRED): (_P.LOST, False),
    (_P.LOST_HANDSHAKE, _E.DISCONNECTED): (_P.LOST, False),
    (_P.LOST_HANDSHAKE, _E.PRESUMED_EXPIRED): (_P.LOST, False),
    (_P.LOST_RESTORING, _E.RESTORED): (_P.CONNECTED, True),
    (_P.LOST_RESTORING, _E.RESTORED_READ_ONLY): (_P.READ_ONLY, True),
    (_P.LOST_RESTORING, _E.DISCONNECTED): (_P.LOST, False),
    (_P.LOST_RESTORING, _E.PRESUMED_EXPIRED): (_P.LOST, False),
    # --- closing: terminal --------------------------------------------------------------
    (_P.CLOSING, _E.CLOSED): (_P.CLOSED, True),
}
for _phase in Phase:
    if _phase not in (_P.CLOSING, _P.CLOSED):
        TRANSITIONS[(_phase, _E.CLOSE)] = (_P.CLOSING, False)
for _event in SessionEvent:
    # Closing, late inputs (a reply to CloseSession, the connection going) change nothing.
    TRANSITIONS.setdefault((_P.CLOSING, _event), (_P.CLOSING, False))
    TRANSITIONS[(_P.CLOSED, _event)] = (_P.CLOSED, False)

HANDSHAKING = frozenset(p for p in Phase if p.value.endswith("/handshake"))
RESTORING = frozenset(p for p in Phase if p.value.endswith("/restoring"))
LIVE = frozenset({_P.CONNECTED, _P.READ_ONLY})
#: phases with a connection past its handshake (pings and read timeouts apply)
ATTACHED = RESTORING | LIVE
