"""Shared helpers for tests driving a SessionMachine by hand (no event loop)."""

from __future__ import annotations

import struct
from typing import Any

from zkwarden.protocol import ops
from zkwarden.protocol.session import SessionMachine
from zkwarden.protocol.watches import WatchRegistry
from zkwarden.types import ClientState

SID = 0x0100000434530000
OTHER_SID = 0x0200000000000007
PW = bytes(range(1, 17))


def connect_response(
    timeout_ms: int = 6000, session_id: int = SID, password: bytes = PW, read_only: bool = False
) -> bytes:
    """A ConnectResponse payload (no length prefix)."""
    return (
        struct.pack(">iiqi", 0, timeout_ms, session_id, len(password))
        + password
        + (b"\x01" if read_only else b"\x00")
    )


#: timeOut 0, sessionId 0, zero password: the session asked for is gone.
EXPIRED_RESPONSE = connect_response(0, 0, bytes(16))


def reply(xid: int, zxid: int = 0, err: int = 0, body: bytes = b"") -> bytes:
    """A reply payload: ReplyHeader + body."""
    return struct.pack(">iqi", xid, zxid, err) + body


def ustring(s: str) -> bytes:
    raw = s.encode()
    return struct.pack(">i", len(raw)) + raw


def notification(event_type: int, path: str, zxid: int = -1) -> bytes:
    return reply(-1, zxid, 0, struct.pack(">ii", event_type, 3) + ustring(path))


def connected(
    timeout_ms: int = 6000,
    now: float = 0.0,
    *,
    session_id: int = SID,
    read_only: bool = False,
    **kw: Any,
) -> SessionMachine[Any]:
    """A machine whose first connection is live: connect_request -> handshake -> prime.

    Its one state change (CONNECTED or READ_ONLY, new session) is checked and taken.
    """
    m: SessionMachine[Any] = SessionMachine(requested_timeout=timeout_ms / 1000, **kw)
    m.connect_request(now)
    outcome = m.handshake(connect_response(timeout_ms, session_id, PW, read_only), now)
    assert outcome.usable
    assert m.prime([], WatchRegistry(), now) == b""  # nothing to restore: live at once
    assert m.can_send
    reported = [(c.state, c.session_id, c.new_session) for c in m.take_changes()]
    state = ClientState.READ_ONLY if read_only else ClientState.CONNECTED
    assert reported == [(state, session_id, True)]
    return m


def frame_xid(frame: bytes) -> int:
    """The RequestHeader xid of a length-prefixed request frame."""
    xid: int = struct.unpack_from(">i", frame, 4)[0]
    return xid


def send(m: SessionMachine[Any], req: ops.Request, token: Any, now: float = 0.0) -> int:
    """Submit ``req``; return the xid it went out with."""
    return frame_xid(m.submit(req, token, now))
