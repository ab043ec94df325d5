"""The session state machine: the whole session lifecycle, xids, the pending FIFO, deadlines.

Theory of operation
-------------------
A *session* outlives many *connections*. The I/O layer opens a connection and sends
:meth:`SessionMachine.connect_request`, feeds the server's first frame to
:meth:`handshake`, sends what :meth:`prime` returns (auth packets, SetWatches), then feeds
every later frame to :meth:`receive`. It asks :meth:`next_deadline` when to wake up and
calls :meth:`on_timer` then; it reports a dropped connection with :meth:`connection_lost`
and asks :meth:`check_presumed_expired` while it waits to reconnect. After every call it
takes the state changes to report with :meth:`take_changes`. Nothing here reads a clock:
``now`` (seconds, monotonic) is always passed in, so every rule is testable without an
event loop.

The lifecycle is one table, ``TRANSITIONS`` (in :mod:`zkwarden.protocol.lifecycle`, and this
machine is the only code that consults it): ``(Phase, SessionEvent) -> (Phase, report)``.
A phase says both where the current connection is (idle, handshake, restoring, live) and
what the application was last told (CONNECTING, SUSPENDED, LOST, ...), so that nothing
beside the table decides the state. ``report`` says whether entering the next phase is a
:class:`ClientStateChange` for the application. A pair that is not in the table is a bug:
:meth:`_fire` raises :class:`ProtocolError` (fail closed) instead of guessing; the pairs
that change nothing are listed too.

Rules enforced here (DESIGN rule 7):

* read timeout = 2/3 of the negotiated session timeout; a ping goes out after 1/3 of it
  without sending anything;
* SUSPENDED as soon as a live connection drops; LOST when a server confirms the expiry
  (negotiated timeout 0, or another session id than the one we asked to resume) or when
  no server was heard for a whole session timeout (presumed), once per session;
* CONNECTED is reported only after the connection is restored (auth answered, SetWatches
  answered), and with ``new_session=True`` exactly once per new session id, even when the
  first connections of that session drop during set-up;
* a session presumed lost is never resumed: it is handed to the I/O layer to close
  (:meth:`take_stale_sessions`) and the next handshake asks for a new one;
* replies must come back in request order (except auth replies and notifications, which
  travel outside the FIFO); anything else is a :class:`ProtocolError`, and a reply whose
  body does not decode stays at the head of the FIFO, so dropping the connection fails it.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..errors import AuthFailedError, ConnectionLossError, ProtocolError, error_for_code
from ..types import ClientState, ClientStateChange
from .framing import DEFAULT_MAX_SEND, check_send_size
from .jute import Reader
from .lifecycle import (
    ATTACHED as _ATTACHED,
)
from .lifecycle import (
    HANDSHAKING as _HANDSHAKING,
)
from .lifecycle import (
    LIVE as _LIVE,
)
from .lifecycle import (
    PUBLIC_STATE,
    TRANSITIONS,
    HandshakeOutcome,
    Phase,
    SessionEvent,
)
from .lifecycle import (
    RESTORING as _RESTORING,
)
from .messages import (
    AuthReply,
    Notification,
    Outgoing,
    PingReply,
    Reply,
    new_notification,
    new_reply,
)
from .ops import Auth, CloseSession, Ping, Request
from .records import ConnectRequest, ConnectResponse, read_watcher_event
from .sasl import Sasl, SaslMechanism
from .watches import WatchRegistry

__all__ = (
    "SessionMachine",
    "Phase",
    "SessionEvent",
    "HandshakeOutcome",
    "TRANSITIONS",
    "PUBLIC_STATE",
    "Reply",
    "Notification",
    "AuthReply",
    "PingReply",
    "Outgoing",
    "XID_NOTIFICATION",
    "XID_PING",
    "XID_AUTH",
    "XID_SET_WATCHES",
    "attach_and_close_frames",
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
_AUTH_FAILED = -115  # AuthFailed: what the server answers to a failed SASL exchange
_NOT_READ_ONLY = -119  # NotReadOnly: a write sent to a read-only server


@dataclass(slots=True)
class _Pending(Generic[T]):
    xid: int
    request: Request
    token: T | None


_PING_REPLY = PingReply()
_PING_REQUEST = Ping()


class SessionMachine(Generic[T]):
    """Owns the session and the state of the current connection. See the module doc.

    ``T`` is the caller's token type: what :meth:`submit` stores and :meth:`receive`
    hands back with the reply.
    """

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
        self.phase = Phase.CONNECTING
        self.session_id = 0
        self.password = _EMPTY_PASSWORD
        self.negotiated_timeout_ms = 0
        self.last_zxid = 0
        self.read_only = False
        #: Incremented each time LOST is reported: a caller that waited through it
        #: belongs to a session that is gone.
        self.epoch = 0
        self.last_recv = 0.0
        self.last_send = 0.0
        self._xid = 0
        self._pending: deque[_Pending[T]] = deque()
        self._auth_pending: deque[T | None] = deque()
        self._restore_pending = 0
        self._sasl: SaslMechanism | None = None
        self._after_sasl: tuple[list[tuple[str, bytes]], WatchRegistry[Any]] = ([], WatchRegistry())
        # The session id was granted but its CONNECTED(new_session=True) not reported yet.
        self._unreported_new_session = False
        self._reported = ClientState.CONNECTING
        #: state changes not yet taken (see :meth:`take_changes`)
        self.changes: list[ClientStateChange] = []
        self._stale: list[tuple[int, bytes]] = []

    # --- the table -------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        """What the application was last told (DESIGN section 4)."""
        return self._reported

    def _fire(self, event: SessionEvent, *, confirmed: bool = False, lost_id: int = 0) -> None:
        previous_phase = self.phase
        try:
            nxt, report = TRANSITIONS[(previous_phase, event)]
        except KeyError:
            raise ProtocolError(
                f"session: {event.value} is not expected in phase {previous_phase.value}"
            ) from None
        self.phase = nxt
        if not report:
            return
        state = PUBLIC_STATE[nxt]
        assert state is not None  # the table never reports CLOSING
        previous = self._reported
        new_session = False
        if state is ClientState.LOST:
            self.epoch += 1
        elif state in (ClientState.CONNECTED, ClientState.READ_ONLY):
            new_session = self._unreported_new_session
            self._unreported_new_session = False
        self._reported = state
        self.changes.append(ClientStateChange(
            state=state, previous=previous, session_id=lost_id or self.session_id or None,
            new_session=new_session, confirmed=confirmed,
        ))

    def take_changes(self) -> list[ClientStateChange]:
        """The state changes to report since the last call, oldest first."""
        changes, self.changes = self.changes, []
        return changes

    def take_stale_sessions(self) -> list[tuple[int, bytes]]:
        """Sessions given up as presumed expired, to close on a server if still alive."""
        stale, self._stale = self._stale, []
        return stale

    @property
    def can_send(self) -> bool:
        """True when requests may be sent (CONNECTED or READ_ONLY, set-up done)."""
        return self.phase in _LIVE

    @property
    def attached(self) -> bool:
        """True while the current connection is past its handshake."""
        return self.phase in _ATTACHED

    @property
    def closing(self) -> bool:
        return self.phase in (Phase.CLOSING, Phase.CLOSED)

    def begin_close(self) -> None:
        """The user called close(): nothing but :meth:`finish_close` moves on from here."""
        self._fire(SessionEvent.CLOSE)

    def finish_close(self) -> list[T]:
        """The close is done: CLOSED. Returns the tokens of requests still pending.

        Raises:
            ProtocolError: :meth:`begin_close` was not called first.
        """
        if not self.closing:
            raise ProtocolError(f"finish_close in phase {self.phase.value}")
        failed = self._drop_pending()
        self._fire(SessionEvent.CLOSED)
        return failed

    # --- timing ----------------------------------------------------------------------

    @property
    def negotiated_timeout(self) -> float | None:
        return self.negotiated_timeout_ms / 1000.0 if self.negotiated_timeout_ms else None

    @property
    def session_timeout(self) -> float:
        return (self.negotiated_timeout_ms or self.requested_timeout_ms) / 1000.0

    @property
    def read_timeout(self) -> float:
        return self.session_timeout * 2 / 3

    @property
    def ping_interval(self) -> float:
        return self.read_timeout / 2

    def next_deadline(self) -> float:
        """When :meth:`on_timer` must run next (monotonic seconds)."""
        return min(self.last_send + self.ping_interval, self.last_recv + self.read_timeout)

    def on_timer(self, now: float) -> bytes | None:
        """Return a ping frame when one is due (a read timeout: :meth:`read_timed_out`)."""
        # Compare against the same sum next_deadline() returned, so a timer set for that
        # instant finds the ping due (``now - last >= interval`` can round the other way).
        if self.phase in _ATTACHED and now >= self.last_send + self.ping_interval:
            self.last_send = now
            # Pings travel through the server's request pipeline, so their replies come
            # back in order: queued like requests, a corrupted reply that happens to read
            # as a ping reply is out of order (dropped connection), not a silent hang.
            self._pending.append(_Pending(XID_PING, _PING_REQUEST, None))
            return _PING_FRAME
        return None

    def read_timed_out(self, now: float) -> bool:
        """True when the server has been silent for the read timeout."""
        return self.phase in _ATTACHED and now >= self.last_recv + self.read_timeout

    # --- handshake -------------------------------------------------------------------

    def connect_request(self, now: float) -> bytes:
        """The first frame of a new connection (ConnectRequest, no header).

        Raises:
            ProtocolError: a connection is already open or the client is closing.
        """
        if self.closing:
            raise ProtocolError("no new connection once closing")
        self._fire(SessionEvent.CONNECT)
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

    def handshake(self, payload: bytes, now: float) -> HandshakeOutcome:
        """Apply the server's ConnectResponse.

        EXPIRED leaves the connection unusable (the server closes it); every other outcome
        makes it the session's connection, restoring until :meth:`prime`'s frames are
        answered.

        Raises:
            ProtocolError: not a ConnectResponse (a server that refuses to open the session
                answers with a bare ReplyHeader: try another server), or no handshake was
                in progress.
        """
        if self.phase not in _HANDSHAKING and not self.closing:
            raise ProtocolError(f"handshake reply in phase {self.phase.value}")
        if len(payload) == 16:
            # A ReplyHeader, not a ConnectResponse (36+ bytes): the server refused to create
            # the session, e.g. NotReadOnly (-119) from a read-only server that has no local
            # sessions (localSessionsEnabled=false).
            _xid, _zxid, err = _REPLY_HEADER.unpack_from(payload, 0)
            raise ProtocolError(
                f"server refused the session: {type(error_for_code(err)).__name__} ({err})"
            )
        response = ConnectResponse.read(Reader(payload))
        if response.timeout_ms > 0 and response.session_id == 0:
            raise ProtocolError("server granted a session timeout but no session id")
        if self.closing:
            # Closing while the ConnectRequest was in flight: a session granted now is
            # nobody's; hand it over to be closed instead of leaving it to expire.
            if response.timeout_ms > 0 and response.session_id != self.session_id:
                self._stale.append((response.session_id, response.password))
            raise ProtocolError("handshake reply while closing")
        self.last_recv = now
        if response.timeout_ms <= 0:
            # Our session is gone (expired, or unknown/wrong password). The server closes
            # the socket now; the next connection opens a new session.
            lost_id = self.session_id
            self._forget_session()
            self._fire(SessionEvent.EXPIRED, confirmed=True, lost_id=lost_id)
            return HandshakeOutcome.EXPIRED
        if response.session_id == self.session_id:
            outcome = HandshakeOutcome.RESUMED
        elif self.session_id == 0:
            outcome = HandshakeOutcome.NEW_SESSION
        else:
            # A server handed us another session while we asked to resume ours: LOST,
            # never a silent resume.
            outcome = HandshakeOutcome.REPLACED
        lost_id = self.session_id
        if outcome is not HandshakeOutcome.RESUMED:
            self._unreported_new_session = True
        self._fire(outcome.value, confirmed=True, lost_id=lost_id)
        self.session_id = response.session_id
        self.password = response.password
        self.negotiated_timeout_ms = response.timeout_ms
        self.read_only = response.read_only
        return outcome

    def _forget_session(self) -> None:
        self.session_id = 0
        self.password = _EMPTY_PASSWORD
        self.negotiated_timeout_ms = 0
        self._unreported_new_session = False
        # A new session must not carry a zxid from before: after a data wipe the server
        # refuses (closes without reply) any client whose lastZxidSeen is ahead of it.
        self.last_zxid = 0

    def prime(
        self, auth: Iterable[tuple[str, bytes]], watches: WatchRegistry[Any], now: float,
        sasl: SaslMechanism | None = None,
    ) -> bytes:
        """Frames to send right after a handshake: the SASL exchange if ``sasl`` is given
        (its later steps come out of :meth:`receive` as :class:`Outgoing`), then auth
        packets, then SetWatches batches.

        When there is nothing to restore the connection is live at once; otherwise it is
        once the last of these is answered (see :meth:`receive`).

        Raises:
            ProtocolError: no handshake has just succeeded.
            AuthFailedError: the SASL mechanism cannot start (e.g. no credentials).
        """
        if self.phase not in _RESTORING:
            raise ProtocolError(f"prime in phase {self.phase.value}")
        if sasl is not None:
            # SASL first and alone: the server authenticates the connection before it
            # serves anything else (the Java client holds its other requests back too).
            self._sasl = sasl
            self._after_sasl = (list(auth), watches)
            self._restore_pending += 1
            return self._sasl_frame(sasl.initial_response(), now)
        return self._prime_restore(auth, watches, now)

    def _prime_restore(
        self, auth: Iterable[tuple[str, bytes]], watches: WatchRegistry[Any], now: float
    ) -> bytes:
        out = bytearray()
        for scheme, credentials in auth:
            # An auth entry that does not fit was refused when it was added (add_auth).
            out += self._frame(XID_AUTH, Auth(scheme, credentials))
            self._auth_pending.append(None)
            self._restore_pending += 1
        for request in watches.set_watches_requests(self.last_zxid, self.max_send):
            out += self._frame(XID_SET_WATCHES, request)
            self._pending.append(_Pending(XID_SET_WATCHES, request, None))
            self._restore_pending += 1
        if out:
            self.last_send = now
        elif self._restore_pending == 0:
            self._restored()
        return bytes(out)

    def _sasl_frame(self, token: bytes | None, now: float) -> bytes:
        xid = self._next_xid()
        request = Sasl(token)
        frame = self._frame(xid, request)
        self._pending.append(_Pending(xid, request, None))
        self.last_send = now
        return frame

    def _sasl_reply(self, err: int, token: bytes | None, now: float) -> Outgoing | AuthReply[T]:
        """The next SASL step, or an AuthReply failure (the connection must be dropped)."""
        mechanism = self._sasl
        if mechanism is None:
            raise ProtocolError("SASL reply without a SASL exchange")
        if err:
            self._sasl = None
            return AuthReply(err, None)
        try:
            response = mechanism.evaluate(token or b"")
        except AuthFailedError as exc:
            self._sasl = None
            return AuthReply(_AUTH_FAILED, None, f"{mechanism.name}: {exc}")
        if response is not None:
            return Outgoing(self._sasl_frame(response, now))
        if not mechanism.complete:
            self._sasl = None
            return AuthReply(_AUTH_FAILED, None,
                             f"{mechanism.name}: the exchange ended before it completed")
        self._sasl = None
        self._restore_pending -= 1
        auth, watches = self._after_sasl
        self._after_sasl = ([], WatchRegistry())
        return Outgoing(self._prime_restore(auth, watches, now))

    def _restored(self) -> None:
        self._fire(
            SessionEvent.RESTORED_READ_ONLY if self.read_only else SessionEvent.RESTORED
        )

    def _restore_step(self) -> None:
        self._restore_pending -= 1
        if self._restore_pending == 0 and self.phase in _RESTORING:
            self._restored()

    # --- requests --------------------------------------------------------------------

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

    def submit(self, request: Request, token: T, now: float) -> bytes:
        """Queue ``request``: return the frame to send now; its reply will carry ``token``.

        Raises:
            ConnectionLossError: not connected (nothing is queued).
            DataTooLargeError: the frame would exceed ``max_send`` (nothing is queued).
        """
        if self.phase not in _LIVE:
            raise ConnectionLossError(f"not connected (state {self._reported.value})")
        body = request.body()
        size = 8 + len(body)
        if size > self.max_send:
            check_send_size(size, self.max_send)
        xid = self._xid + 1
        if xid > _MAX_XID:
            xid = 1
        self._xid = xid
        self._pending.append(_Pending(xid, request, token))
        self.last_send = now
        return _FRAME_HEADER.pack(size, xid, request.OPCODE) + body

    def auth_frame(self, scheme: str, credentials: bytes, token: T, now: float) -> bytes:
        """An auth packet for a live connection; its :class:`AuthReply` carries ``token``.

        Raises:
            ConnectionLossError: not connected (nothing is queued).
            DataTooLargeError: the credentials do not fit in one frame (nothing is queued).
        """
        if self.phase not in _LIVE:
            raise ConnectionLossError(f"not connected (state {self._reported.value})")
        frame = self._frame(XID_AUTH, Auth(scheme, credentials))
        self._auth_pending.append(token)
        self.last_send = now
        return frame

    def close_session_frame(self, token: T, now: float) -> bytes:
        """CloseSession, queued like a request (sent while closing, so not via submit)."""
        request = CloseSession()
        xid = self._next_xid()
        frame = self._frame(xid, request)
        self._pending.append(_Pending(xid, request, token))
        self.last_send = now
        return frame

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    # --- replies ---------------------------------------------------------------------

    def receive(
        self, payload: bytes | memoryview, now: float
    ) -> Reply[T] | Notification | AuthReply[T] | PingReply | Outgoing | None:
        """Decode one server frame after the handshake.

        Returns None for a frame that only moved the session on (a SetWatches reply).

        Raises:
            ProtocolError: malformed frame, reply out of order, unexpected xid. The request
                it answered stays pending, so :meth:`connection_lost` fails it.
        """
        self.last_recv = now
        if len(payload) < 16:
            raise ProtocolError(f"reply frame of {len(payload)} bytes is shorter than a header")
        xid, zxid, err = _REPLY_HEADER.unpack_from(payload, 0)
        if xid == XID_NOTIFICATION:
            return new_notification(read_watcher_event(Reader(payload, 16)), zxid)
        if xid == XID_AUTH:
            if not self._auth_pending:
                raise ProtocolError("auth reply without an auth request")
            token = self._auth_pending.popleft()
            if token is None and err == 0:
                self._restore_step()
            return AuthReply(err, token)
        pending = self._pending
        if not pending:
            raise ProtocolError(f"reply with xid {xid} but no request is pending")
        head = pending[0]
        if head.xid != xid:
            if err == _NOT_READ_ONLY and xid > 0:
                return self._write_refused(xid, zxid)
            raise ProtocolError(f"reply xid {xid} out of order (expected {head.xid})")
        if xid == XID_PING:
            pending.popleft()
            return _PING_REPLY
        request = head.request
        if request.__class__ is Sasl:
            challenge: bytes | None = (
                request.read_response(Reader(payload, 16)) if err == 0 else None
            )
            pending.popleft()
            return self._sasl_reply(err, challenge, now)
        result: Any = None
        if err == 0 and xid != XID_SET_WATCHES:
            # Decoded before the request leaves the FIFO: a body that does not decode
            # raises with the request still pending, so the dropped connection fails it.
            result = request.read_response(Reader(payload, 16))
        pending.popleft()
        if zxid > 0:
            self.last_zxid = zxid
        if xid == XID_SET_WATCHES:
            self._restore_step()
            return None
        return new_reply(head.token, request, err, result, zxid)

    def _write_refused(self, xid: int, zxid: int) -> Reply[T]:
        """A read-only server refuses a write at once, ahead of the replies to reads still
        in its pipeline (ZooKeeper 3.8's ReadOnlyRequestProcessor answers NOTREADONLY
        itself): the one reply that may overtake others. Raises ProtocolError if no such
        request is pending."""
        for entry in self._pending:
            if entry.xid == xid:
                self._pending.remove(entry)
                if zxid > 0:
                    self.last_zxid = max(self.last_zxid, zxid)
                return new_reply(entry.token, entry.request, _NOT_READ_ONLY, None, zxid)
        raise ProtocolError(f"NOTREADONLY reply for xid {xid}, which is not pending")

    # --- connection loss and expiry ------------------------------------------------------

    def _drop_pending(self) -> list[T]:
        failed = [p.token for p in self._pending if p.token is not None]
        failed.extend(t for t in self._auth_pending if t is not None)
        self._pending.clear()
        self._auth_pending.clear()
        self._restore_pending = 0
        self._sasl = None
        return failed

    def connection_lost(self) -> list[T]:
        """The connection dropped (or never got past its handshake).

        Returns the tokens of every request and auth packet in flight, to fail.
        """
        failed = self._drop_pending()
        self._fire(SessionEvent.DISCONNECTED)
        return failed

    def check_presumed_expired(self, now: float) -> bool:
        """While no connection is live: give the session up once no server has been heard
        for a whole session timeout. True when it was given up (LOST is reported if the
        application had been told about it; a connection still in its handshake or
        restore must be dropped by the caller)."""
        if self.session_id == 0 or self.phase in _LIVE or self.closing:
            return False
        if now < self.presumed_expiry_at():
            return False
        lost_id = self.session_id
        self._stale.append((lost_id, self.password))
        self._forget_session()
        self._fire(SessionEvent.PRESUMED_EXPIRED, lost_id=lost_id)
        return True

    def presumed_expiry_at(self) -> float:
        """When :meth:`check_presumed_expired` could first give the session up."""
        return self.last_recv + self.session_timeout


def attach_and_close_frames(session_id: int, password: bytes) -> bytes:
    """A ConnectRequest attaching to ``session_id`` and a CloseSession, in one buffer.

    Sent in one write, the server runs them in order once the session is attached, and the
    session's owner gets no window to re-attach it in between.
    """
    payload = ConnectRequest(0, 0, 10_000, session_id, password, False).encode()
    body = CloseSession().body()
    return (struct.pack(">i", len(payload)) + payload
            + _FRAME_HEADER.pack(8 + len(body), 1, CloseSession.OPCODE) + body)
