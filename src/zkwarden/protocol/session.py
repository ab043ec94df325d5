"""The session state machine: every state transition, xids, the pending FIFO, deadlines.

Theory of operation
-------------------
A *session* outlives many *connections*. The I/O layer opens a connection, sends
:meth:`SessionMachine.connect_request`, feeds the server's first frame to
:meth:`handshake`, then feeds every later frame to :meth:`receive`. It asks
:meth:`next_deadline` when to wake up and calls :meth:`on_timer` then; it reports a
dropped connection with :meth:`connection_lost` and asks :meth:`check_presumed_expired`
while it waits to reconnect. Nothing here reads a clock: ``now`` (seconds, monotonic) is
always passed in, so every rule is testable without an event loop.

Rules enforced here (DESIGN rule 7):

* read timeout = 2/3 of the negotiated session timeout; a ping goes out after 1/3 of it
  without sending anything;
* SUSPENDED as soon as a connection drops; LOST when a server confirms the expiry
  (negotiated timeout 0) or when no server was heard for a whole session timeout
  (presumed), reported once per session;
* the session id is checked on every handshake: a different id is a new session, which
  is LOST followed by CONNECTED with ``new_session=True``, never a silent resume;
* replies must come back in request order (except pings, auth and notifications, which
  travel outside the FIFO); anything else is a :class:`ProtocolError`.

All transitions are in ``_TRANSITIONS``; nothing else assigns ``self.state``.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..errors import ProtocolError, error_for_code
from ..types import ClientState, ClientStateChange
from .framing import DEFAULT_MAX_SEND, check_send_size
from .jute import Reader
from .ops import Auth, CloseSession, Ping, Request
from .records import ConnectRequest, ConnectResponse, WatcherEvent, read_watcher_event
from .watches import WatchRegistry

__all__ = (
    "SessionMachine",
    "SessionEvent",
    "HandshakeResult",
    "Reply",
    "Notification",
    "XID_NOTIFICATION",
    "XID_PING",
    "XID_AUTH",
    "XID_SET_WATCHES",
)

T = TypeVar("T")

XID_NOTIFICATION = -1
XID_PING = -2
XID_AUTH = -4
XID_SET_WATCHES = -8
_MAX_XID = 0x7FFFFFFF
_EMPTY_PASSWORD = b"\x00" * 16

_FRAME_HEADER = struct.Struct(">iii")  # frame length, xid, opcode
_REPLY_HEADER = struct.Struct(">iqi")
_PING_FRAME = _FRAME_HEADER.pack(8, XID_PING, 11)


class SessionEvent(enum.Enum):
    """Inputs to the transition table."""

    CONNECTED = "connected"  # handshake done on a read-write server
    CONNECTED_READ_ONLY = "connected_read_only"
    DISCONNECTED = "disconnected"
    EXPIRED = "expired"  # a server said so
    PRESUMED_EXPIRED = "presumed_expired"  # no server heard for a session timeout
    CLOSED = "closed"


_S = ClientState
_E = SessionEvent
# (state, event) → next state. Pairs not listed leave the state unchanged.
_TRANSITIONS: dict[tuple[ClientState, SessionEvent], ClientState] = {
    (_S.CONNECTING, _E.CONNECTED): _S.CONNECTED,
    (_S.CONNECTING, _E.CONNECTED_READ_ONLY): _S.READ_ONLY,
    (_S.CONNECTED, _E.DISCONNECTED): _S.SUSPENDED,
    (_S.CONNECTED, _E.EXPIRED): _S.LOST,
    (_S.READ_ONLY, _E.DISCONNECTED): _S.SUSPENDED,
    (_S.READ_ONLY, _E.EXPIRED): _S.LOST,
    (_S.READ_ONLY, _E.CONNECTED): _S.CONNECTED,
    (_S.SUSPENDED, _E.CONNECTED): _S.CONNECTED,
    (_S.SUSPENDED, _E.CONNECTED_READ_ONLY): _S.READ_ONLY,
    (_S.SUSPENDED, _E.EXPIRED): _S.LOST,
    (_S.SUSPENDED, _E.PRESUMED_EXPIRED): _S.LOST,
    (_S.LOST, _E.CONNECTED): _S.CONNECTED,
    (_S.LOST, _E.CONNECTED_READ_ONLY): _S.READ_ONLY,
}
for _state in ClientState:
    _TRANSITIONS[(_state, _E.CLOSED)] = _S.CLOSED
for _event in SessionEvent:
    _TRANSITIONS[(_S.CLOSED, _event)] = _S.CLOSED


@dataclass(slots=True)
class _Pending(Generic[T]):
    xid: int
    request: Request
    token: T


@dataclass(frozen=True, slots=True)
class Reply(Generic[T]):
    """A reply matched to its request. ``err`` is the server code (0 = success)."""

    token: T
    request: Request
    err: int
    result: Any
    zxid: int


_new = object.__new__
_reply_token, _reply_request, _reply_err, _reply_result, _reply_zxid = (
    getattr(Reply, f.name).__set__ for f in dataclasses.fields(Reply)
)


@dataclass(frozen=True, slots=True)
class Notification:
    """A watch notification (server path; the client strips its chroot)."""

    event: WatcherEvent
    zxid: int


_note_event, _note_zxid = (
    getattr(Notification, f.name).__set__ for f in dataclasses.fields(Notification)
)


@dataclass(frozen=True, slots=True)
class AuthReply:
    """The reply to an auth packet (can overtake earlier replies)."""

    err: int


@dataclass(frozen=True, slots=True)
class PingReply:
    pass


_PING_REPLY = PingReply()
_PING_REQUEST = Ping()


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """What a ConnectResponse meant: state changes, and whether the connection is usable."""

    changes: list[ClientStateChange]
    usable: bool
    read_only: bool
    #: True when this handshake opened a new session (first, or after loss/replacement).
    new_session: bool
    #: True when the server confirmed our old session had expired (connection unusable).
    expired: bool


class SessionMachine(Generic[T]):
    """Owns the session and the state of the current connection. See the module doc."""

    def __init__(
        self,
        *,
        requested_timeout: float,
        read_only_allowed: bool = False,
        max_send: int = DEFAULT_MAX_SEND,
    ) -> None:
        self.requested_timeout_ms = max(1, int(requested_timeout * 1000))
        self.read_only_allowed = read_only_allowed
        self.max_send = max_send
        self.state = ClientState.CONNECTING
        self.session_id = 0
        self.password = _EMPTY_PASSWORD
        self.negotiated_timeout_ms = 0
        self.last_zxid = 0
        self._xid = 0
        self._pending: deque[_Pending[T]] = deque()
        self._auth_pending = 0
        self.connected = False  # handshake done on the current connection
        self.last_recv = 0.0
        self.last_send = 0.0
        self.lost_reported = False
        # The LOST we reported was presumed; a server must still confirm it or we close
        # the old session ourselves before opening a new one.
        self.presumed_lost = False

    # --- transitions ---------------------------------------------------------------

    def _transition(
        self, event: SessionEvent, *, new_session: bool = False, confirmed: bool = False
    ) -> ClientStateChange | None:
        previous = self.state
        nxt = _TRANSITIONS.get((previous, event), previous)
        if nxt is previous:
            return None
        self.state = nxt
        return ClientStateChange(
            state=nxt,
            previous=previous,
            session_id=self.session_id or None,
            new_session=new_session,
            confirmed=confirmed,
        )

    def close(self) -> ClientStateChange | None:
        """The user closed the client: terminal."""
        self.connected = False
        return self._transition(SessionEvent.CLOSED)

    # --- timing --------------------------------------------------------------------

    @property
    def negotiated_timeout(self) -> float | None:
        return self.negotiated_timeout_ms / 1000.0 if self.negotiated_timeout_ms else None

    @property
    def read_timeout(self) -> float:
        timeout_ms = self.negotiated_timeout_ms or self.requested_timeout_ms
        return timeout_ms * 2 / 3000.0

    @property
    def ping_interval(self) -> float:
        return self.read_timeout / 2

    def next_deadline(self) -> float:
        """When :meth:`on_timer` must run next (monotonic seconds)."""
        return min(self.last_send + self.ping_interval, self.last_recv + self.read_timeout)

    def on_timer(self, now: float) -> bytes | None:
        """Return a ping frame when one is due.

        Raises:
            ProtocolError: never; a read timeout is reported by :meth:`read_timed_out`.
        """
        # Compare against the same sum next_deadline() returned, so a timer set for that
        # instant finds the ping due (``now - last >= interval`` can round the other way).
        if self.connected and now >= self.last_send + self.ping_interval:
            self.last_send = now
            # Pings travel through the server's request pipeline, so their replies come
            # back in order: queued like requests, a corrupted reply that happens to read
            # as a ping reply is out of order (dropped connection), not a silent hang.
            self._pending.append(_Pending(XID_PING, _PING_REQUEST, None))  # type: ignore[arg-type]
            return _PING_FRAME
        return None

    def read_timed_out(self, now: float) -> bool:
        """True when the server has been silent for the read timeout."""
        return self.connected and now >= self.last_recv + self.read_timeout

    # --- handshake -----------------------------------------------------------------

    def connect_request(self, now: float) -> bytes:
        """The first frame of a connection (ConnectRequest, no header)."""
        self.connected = False
        self.last_send = now
        # last_recv is left alone: a TCP connect (even one a proxy accepts) is not hearing
        # from a server, and presumed expiry counts from the last server frame.
        payload = ConnectRequest(
            protocol_version=0,
            last_zxid_seen=self.last_zxid,
            timeout_ms=self.requested_timeout_ms,
            session_id=self.session_id,
            password=self.password,
            read_only=self.read_only_allowed,
        ).encode()
        return struct.pack(">i", len(payload)) + payload

    def handshake(self, payload: bytes, now: float) -> HandshakeResult:
        """Apply the server's ConnectResponse.

        Raises:
            ProtocolError: the frame is not a ConnectResponse (a server that refuses to
                open the session answers with a bare ReplyHeader: try another server).
        """
        if len(payload) == 16:
            # Not a ConnectResponse (36+ bytes) but a ReplyHeader: the server refused to
            # create the session, e.g. NotReadOnly (-119) from a read-only server that has
            # no local sessions (localSessionsEnabled=false).
            _xid, _zxid, err = _REPLY_HEADER.unpack_from(payload, 0)
            raise ProtocolError(
                f"server refused the session: {type(error_for_code(err)).__name__} ({err})"
            )
        response = ConnectResponse.read(Reader(payload))
        self.last_recv = now
        changes: list[ClientStateChange] = []
        if response.timeout_ms <= 0:
            # Our session is gone (expired, or unknown/wrong password). The server closes
            # the socket now; the next connection opens a new session.
            confirmed_change = self._transition(SessionEvent.EXPIRED, confirmed=True)
            if confirmed_change is not None and not self.lost_reported:
                changes.append(confirmed_change)
            self.lost_reported = True
            self.presumed_lost = False
            self._forget_session()
            return HandshakeResult(changes, False, False, False, True)
        if self.presumed_lost and response.session_id == self.session_id:
            # We told the application this session was lost; keeping it would make that
            # a lie. The caller closes it on the server and opens a new one.
            return HandshakeResult(changes, False, False, False, True)
        new_session = response.session_id != self.session_id
        if new_session and self.session_id != 0 and not self.lost_reported:
            # A server handed us another session while we asked to resume ours: LOST,
            # never a silent resume.
            change = self._transition(SessionEvent.EXPIRED, confirmed=True)
            if change is not None:
                changes.append(change)
        self.session_id = response.session_id
        self.password = response.password
        self.negotiated_timeout_ms = response.timeout_ms
        self.connected = True
        self.lost_reported = False
        self.presumed_lost = False
        event = SessionEvent.CONNECTED_READ_ONLY if response.read_only else SessionEvent.CONNECTED
        change = self._transition(event, new_session=new_session)
        if change is not None:
            changes.append(change)
        return HandshakeResult(changes, True, response.read_only, new_session, False)

    def _forget_session(self) -> None:
        self.session_id = 0
        self.password = _EMPTY_PASSWORD
        self.negotiated_timeout_ms = 0
        # A new session must not carry a zxid from before: after a data wipe the server
        # refuses (closes without reply) any client whose lastZxidSeen is ahead of it.
        self.last_zxid = 0

    def forget_presumed_session(self) -> None:
        """After closing a presumed-lost session ourselves, start over with a new one."""
        self.presumed_lost = False
        self._forget_session()

    def prime(
        self, auth: Iterable[tuple[str, bytes]], watches: WatchRegistry[Any], now: float
    ) -> bytes:
        """Frames to send right after a handshake: auth packets, then SetWatches batches."""
        out = bytearray()
        for scheme, credentials in auth:
            out += self._frame(XID_AUTH, Auth(scheme, credentials))
            self._auth_pending += 1
        for request in watches.set_watches_requests(self.last_zxid):
            out += self._frame(XID_SET_WATCHES, request)
            self._pending.append(_Pending(XID_SET_WATCHES, request, None))  # type: ignore[arg-type]
        if out:
            self.last_send = now
        return bytes(out)

    # --- requests ------------------------------------------------------------------

    def _next_xid(self) -> int:
        xid = self._xid + 1
        if xid > _MAX_XID:
            xid = 1
        self._xid = xid
        return xid

    def _frame(self, xid: int, request: Request) -> bytes:
        body = request.body()
        size = 8 + len(body)
        check_send_size(size, self.max_send)
        return _FRAME_HEADER.pack(size, xid, request.OPCODE) + body

    def encode(self, request: Request) -> tuple[int, bytes]:
        """Encode a request with a fresh xid, without queueing it (see :meth:`sent`).

        Raises:
            DataTooLargeError: the frame would exceed ``max_send``.
        """
        xid = self._next_xid()
        return xid, self._frame(xid, request)

    def sent(self, xid: int, request: Request, token: T, now: float) -> None:
        """Record that an encoded request went out; its reply will carry ``token``."""
        self._pending.append(_Pending(xid, request, token))
        self.last_send = now

    def submit(self, request: Request, token: T, now: float) -> bytes:
        """:meth:`encode` and :meth:`sent` in one step: the frame to send now.

        Raises:
            DataTooLargeError: the frame would exceed ``max_send`` (nothing is queued).
        """
        xid = self._xid + 1
        if xid > _MAX_XID:
            xid = 1
        self._xid = xid
        body = request.body()
        size = 8 + len(body)
        if size > self.max_send:
            check_send_size(size, self.max_send)
        self._pending.append(_Pending(xid, request, token))
        self.last_send = now
        return _FRAME_HEADER.pack(size, xid, request.OPCODE) + body

    def close_session_frame(self, token: T, now: float) -> bytes:
        request = CloseSession()
        xid, frame = self.encode(request)
        self.sent(xid, request, token, now)
        return frame

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    # --- replies -------------------------------------------------------------------

    def receive(
        self, payload: bytes | memoryview, now: float
    ) -> Reply[T] | Notification | AuthReply | PingReply:
        """Decode one server frame after the handshake.

        Raises:
            ProtocolError: malformed frame, reply out of order, unexpected xid.
        """
        self.last_recv = now
        if len(payload) < 16:
            raise ProtocolError(f"reply frame of {len(payload)} bytes is shorter than a header")
        xid, zxid, err = _REPLY_HEADER.unpack_from(payload, 0)
        if xid < 0:
            if xid == XID_NOTIFICATION:
                note: Notification = _new(Notification)
                _note_event(note, read_watcher_event(Reader(payload, 16)))
                _note_zxid(note, zxid)
                return note
            if xid == XID_PING:
                if not self._pending or self._pending[0].xid != XID_PING:
                    raise ProtocolError("ping reply out of order")
                self._pending.popleft()
                return _PING_REPLY
            if xid == XID_AUTH:
                if self._auth_pending <= 0:
                    raise ProtocolError("auth reply without an auth request")
                self._auth_pending -= 1
                return AuthReply(err)
        pending = self._pending
        if not pending:
            raise ProtocolError(f"reply with xid {xid} but no request is pending")
        head = pending[0]
        if head.xid != xid:
            raise ProtocolError(f"reply xid {xid} out of order (expected {head.xid})")
        pending.popleft()
        if zxid > 0:
            self.last_zxid = zxid
        result: Any = None
        request = head.request
        if err == 0:
            result = request.read_response(Reader(payload, 16))
        # Reply is a frozen dataclass; set its slots directly (its __init__ costs ~1 µs).
        reply: Reply[T] = _new(Reply)
        _reply_token(reply, head.token)
        _reply_request(reply, request)
        _reply_err(reply, err)
        _reply_result(reply, result)
        _reply_zxid(reply, zxid)
        return reply

    # --- connection loss and expiry --------------------------------------------------

    def connection_lost(self, *, closing: bool = False) -> tuple[list[T], list[ClientStateChange]]:
        """The connection dropped: return the tokens of every in-flight request, and changes.

        ``closing``: the user is closing the client; no SUSPENDED in between.
        """
        was_connected = self.connected and not closing
        self.connected = False
        self._auth_pending = 0
        failed = [p.token for p in self._pending if p.xid not in (XID_SET_WATCHES, XID_PING)]
        self._pending.clear()
        changes: list[ClientStateChange] = []
        if was_connected:
            change = self._transition(SessionEvent.DISCONNECTED)
            if change is not None:
                changes.append(change)
        return failed, changes

    def check_presumed_expired(self, now: float) -> ClientStateChange | None:
        """While disconnected: LOST once no server has been heard for a session timeout."""
        if self.connected or self.lost_reported or self.session_id == 0:
            return None
        if now < self.presumed_expiry_at():
            return None
        change = self._transition(SessionEvent.PRESUMED_EXPIRED)
        if change is not None:
            self.lost_reported = True
            self.presumed_lost = True
            # A server whose zxid is behind ours (wiped, or restored from an old snapshot)
            # refuses the resume by closing the socket, so no server would ever confirm
            # the expiry. Zxid 0 is accepted by every server; the session is lost anyway.
            self.last_zxid = 0
        return change

    def presumed_expiry_at(self) -> float:
        """When :meth:`check_presumed_expired` could first report LOST."""
        timeout = (self.negotiated_timeout_ms or self.requested_timeout_ms) / 1000.0
        return self.last_recv + timeout
