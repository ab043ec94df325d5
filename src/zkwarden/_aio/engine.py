"""The session engine under AsyncClient: reconnect supervisor, frame dispatch, states.

The session lifecycle is decided by :class:`zkwarden.protocol.session.SessionMachine`
alone; this module does the I/O it asks for and reports what it decided. One supervisor
task per client opens connections (capped exponential backoff with full jitter over the
shuffled host list), primes them (auth, SetWatches), and waits for them to drop. Requests
never spawn tasks: a request is encoded, queued on the connection's batched writer, and its
future resolved from ``data_received``.

Every connection loss is applied to the machine synchronously (:meth:`SessionEngine.drop`),
so the machine never waits for asyncio's ``connection_lost`` callback to learn it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

from .. import paths as _paths
from .._ratelimit import RateLimitedLog
from ..errors import (
    AuthFailedError,
    ClientClosedError,
    ConnectionLossError,
    ForkedClientError,
    ProtocolError,
    RequestTimeoutError,
    SessionExpiredError,
    ZooKeeperError,
    error_for_code,
)
from ..hosts import parse_connect_string
from ..metrics import ClientMetrics
from ..protocol import ops
from ..protocol.framing import DEFAULT_MAX_RECEIVE, DEFAULT_MAX_SEND
from ..protocol.ops import WatchKind
from ..protocol.sasl import SaslFactory
from ..protocol.session import (
    AuthReply,
    Notification,
    Outgoing,
    Reply,
    SessionMachine,
)
from ..protocol.watches import WatchRegistry
from ..sasl import SASLOptions
from ..tls import resolve_tls
from ..types import ClientState, ClientStateChange
from .connection import Connection
from .events import EVENT_TYPES, KEEPER_STATES, watch_event
from .options import auth_bytes, check_engine_options, forked_since
from .requests import ReplySink
from .states import StateChangeStream
from .subscriber import Subscriber

__all__ = ("SessionEngine", "EngineHooks", "auth_bytes")

log = logging.getLogger("zkwarden.client")

_NO_NODE = -101


# (who gets the outcome, client path, watcher to register on success)
_Token = tuple[ReplySink, str, Subscriber | None]
_LIVE = (ClientState.CONNECTED, ClientState.READ_ONLY)

class EngineHooks(Protocol):
    """What the engine tells the watch side (see :mod:`zkwarden._aio.subscriptions`)."""

    def session_lost(self, exc: ZooKeeperError) -> None: ...

    def reconnected(self) -> None: ...


class SessionEngine:
    """Owns the connection, the reconnect supervisor, frame dispatch, state reporting and
    the request path. The session rules live in :mod:`zkwarden.protocol.session`."""

    def __init__(
        self,
        hosts: str,
        *,
        session_timeout: float,
        connect_timeout: float | None,
        auth: Sequence[tuple[str, str | bytes]] | None,
        tls: ssl.SSLContext | bool | None,
        sasl: SASLOptions | None = None,
        read_only: bool,
        request_timeout: float | None,
        max_request_size: int = DEFAULT_MAX_SEND,
        max_response_size: int = DEFAULT_MAX_RECEIVE,
        randomize_hosts: bool = True,
        max_queued_events: int = 10_000,
    ) -> None:
        parsed = parse_connect_string(hosts)
        check_engine_options(session_timeout=session_timeout, connect_timeout=connect_timeout,
                             request_timeout=request_timeout,
                             max_queued_events=max_queued_events)
        self.hosts = list(parsed.hosts)
        if randomize_hosts:
            random.shuffle(self.hosts)
        self.chroot = parsed.chroot
        self.connect_string = hosts
        self.session_timeout = float(session_timeout)
        self._connect_timeout = connect_timeout
        self.auth = auth_bytes(auth)
        self.tls: ssl.SSLContext | None = resolve_tls(tls)
        #: makes the SASL mechanism of each connection (None: no SASL)
        self.sasl: SaslFactory | None = sasl.factory() if sasl is not None else None
        self._request_timeout = request_timeout
        self.max_response = max_response_size
        self.max_queued_events = max_queued_events
        self.machine: SessionMachine[_Token] = SessionMachine(
            requested_timeout=session_timeout, read_only_allowed=read_only,
            max_send=max_request_size,
        )
        self.watches: WatchRegistry[Subscriber] = WatchRegistry()
        self.hooks: EngineHooks | None = None
        #: called when the client cannot go on (rejected credentials): it closes
        self.on_fatal: Callable[[ZooKeeperError], None] | None = None
        self.conn: Connection | None = None
        self.supervisor: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.fatal: ZooKeeperError | None = None
        self.closed_on_server = False
        #: sessions given up as presumed expired, not yet closed on a server
        self.stale_sessions: list[tuple[int, bytes]] = []
        self._listeners: list[Callable[[ClientStateChange], object]] = []
        self._state_streams: weakref.WeakSet[StateChangeStream] = weakref.WeakSet()
        # Replaced on every state change: whoever waits for "something changed" awaits the
        # current one (a plain Event would need clearing, racing its waiters).
        self._changed: asyncio.Event | None = None
        self.restore_waiter: asyncio.Future[None] | None = None
        self.handshaking: Connection | None = None
        self._presumed_timer: asyncio.TimerHandle | None = None
        self._warn = RateLimitedLog(log)
        self.pid = os.getpid()
        #: connections that reached CONNECTED/READ_ONLY
        self.reconnects = 0
        #: the client's metrics hook (:mod:`zkwarden.metrics`); None: none (the request
        #: path then costs one attribute test more, nothing else)
        self.metrics: ClientMetrics | None = None
        # With metrics only: when each pending request was sent, and its opcode name.
        self._sent: dict[ReplySink, tuple[float, str]] = {}
        self._state_since = time.monotonic()

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self.loop is not None

    def start(self, supervise: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start the reconnect supervisor on the running loop (idempotent); the engine owns
        its task and cancels it in :meth:`stop`."""
        if self.loop is not None:
            return
        self.loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self.supervisor = self.loop.create_task(supervise(), name="zkwarden-supervisor")

    def auth_failed(self, exc: AuthFailedError) -> None:
        """SASL was refused: every waiting call fails with ``exc`` until a connection
        authenticates again (the supervisor keeps trying, slowly)."""
        self.fatal = exc
        self.notify()

    def fail(self, exc: ZooKeeperError) -> None:
        """The client cannot go on (rejected credentials): waiters get ``exc``; it closes."""
        self.fatal = exc
        self.notify()
        if self.on_fatal is not None:
            self.on_fatal(exc)

    @property
    def state(self) -> ClientState:
        return self.machine.state

    @property
    def closing(self) -> bool:
        return self.machine.closing

    def per_host_timeout(self) -> float:
        if self._connect_timeout is not None:
            return self._connect_timeout
        timeout = self.machine.session_timeout
        # At least three tries per session timeout, even with one host: a server that
        # accepts and never answers (one still starting up, or overloaded) must not use
        # up the whole session on a single handshake.
        return max(timeout / max(len(self.hosts), 3), 0.5)

    def check_usable(self) -> None:
        """Raises:
        ForkedClientError, ClientClosedError."""
        if forked_since(self.pid):
            raise ForkedClientError(
                "this client was created before fork(); create a new client in the child"
            )
        if self.machine.closing:
            raise ClientClosedError("client is closed")

    # --- connection events (Connection's owner) ------------------------------------------

    def on_frame(self, conn: Connection, payload: bytes | memoryview) -> None:
        if conn is not self.conn:
            return
        machine = self.machine
        assert self.loop is not None
        try:
            msg = machine.receive(payload, self.loop.time())
        except ProtocolError as exc:
            self._warn.log(logging.WARNING, "protocol", "protocol error from %s: %s; "
                           "dropping the connection", conn.host, exc)
            self.drop(conn, exc)
            return
        if msg.__class__ is Reply:
            self._on_reply(msg)
        elif msg.__class__ is Notification:
            self._on_notification(msg)
        elif msg.__class__ is AuthReply:
            self._on_auth_reply(conn, msg)
        elif msg.__class__ is Outgoing:
            if msg.frame:
                conn.write_now(msg.frame)
        if machine.changes:
            self.flush_changes()

    def _on_reply(self, reply: Reply[_Token]) -> None:
        fut, path, watcher = reply.token
        err = reply.err
        # A stream closed while its arming read was in flight must not come back into the
        # table (it would be restored on every reconnect and never removed).
        if watcher is not None and not watcher.ended:
            kind = reply.request.watch_kind
            if kind is WatchKind.EXIST and err == 0:
                # The node exists: the server set a data watch (the Java client restores
                # it as one too); as an exist watch, SetWatches would report NodeCreated.
                kind = WatchKind.DATA
            if kind is not None and (err == 0 or (err == _NO_NODE and kind is WatchKind.EXIST)):
                self.watches.add(kind, _paths.watch_server_path(self.chroot, path), watcher)
                if self.metrics is not None:
                    self.metrics.watches(self.watches.count())
        if self.metrics is not None:
            # exists() of an absent node is an answer, not a failure
            self._request_done(fut, err == 0 or (
                err == _NO_NODE and reply.request.__class__ is ops.Exists))
        if fut.done():
            return
        if err == 0:
            fut.set_result(reply.result)
        else:
            fut.set_exception(error_for_code(err, path))

    def _on_auth_reply(self, conn: Connection, reply: AuthReply[_Token]) -> None:
        if reply.token is None:  # auth restored after a handshake
            if reply.err:
                exc = AuthFailedError(
                    f"authentication failed (code {reply.err})"
                    + (f": {reply.reason}" if reply.reason else "")
                )
                if self.restore_waiter is not None and not self.restore_waiter.done():
                    self.restore_waiter.set_exception(exc)
                self.drop(conn, exc)
            return
        fut = reply.token[0]
        if not fut.done():
            if reply.err:
                fut.set_exception(AuthFailedError(f"authentication failed (code {reply.err})"))
            else:
                fut.set_result(None)

    def _on_notification(self, msg: Notification) -> None:
        raw = msg.event
        etype = EVENT_TYPES.get(raw.type)
        state = KEEPER_STATES.get(raw.state)
        if etype is None or state is None:
            log.warning("ignoring notification with unknown type/state %r", raw)
            return
        watchers = self.watches.fire(etype, raw.path)
        if watchers:
            event = watch_event(etype, state, _paths.watch_client_path(self.chroot, raw.path),
                                 msg.zxid)
            for watcher in watchers:
                watcher.deliver(event)
            if self.metrics is not None:
                self.metrics.watches(self.watches.count())

    def on_timer(self, conn: Connection) -> None:
        if conn is not self.conn or not self.machine.attached:
            # Closing (or the connection is no longer the session's): no more pings, and
            # no timer re-armed at a deadline that stays in the past.
            return
        assert self.loop is not None
        now = self.loop.time()
        if self.machine.read_timed_out(now):
            self._warn.log(logging.WARNING, "read-timeout", "no reply from %s for %.2fs; "
                           "reconnecting", conn.host, self.machine.read_timeout)
            self.drop(conn, ConnectionLossError(f"read timeout from {conn.host}"))
            return
        ping = self.machine.on_timer(now)
        if ping is not None:
            conn.write(ping)
        conn.schedule_timer(self.machine.next_deadline())

    def on_connection_lost(self, conn: Connection, reason: BaseException) -> None:
        self.drop(conn, reason)

    def drop(self, conn: Connection, reason: BaseException) -> None:
        """Apply the loss of ``conn`` to the session now, then abort it. Idempotent."""
        if conn is self.conn:
            self.conn = None
            failed = self.machine.connection_lost()
            text = str(reason) or "connection lost"
            # Once close() has begun, whatever is still pending fails because of the close.
            exc_type = ClientClosedError if self.machine.closing else ConnectionLossError
            for fut, _path, _watcher in failed:
                if self.metrics is not None:
                    self._request_done(fut, False)
                if not fut.done():
                    fut.set_exception(exc_type(text))
            waiter = self.restore_waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(
                    reason if isinstance(reason, AuthFailedError) else ConnectionLossError(text)
                )
            if self.machine.changes:
                self._warn.log(logging.WARNING, "disconnect", "disconnected from %s: %s",
                               conn.host, text)
            self.flush_changes()
            self._arm_presumed_timer()
        conn.abort(reason)

    def drop_current(self, reason: BaseException) -> None:
        if self.conn is not None:
            self.drop(self.conn, reason)

    # --- presumed expiry -----------------------------------------------------------------

    def _arm_presumed_timer(self) -> None:
        machine = self.machine
        if (self._presumed_timer is not None or self.loop is None or machine.closing
                or not machine.session_id or machine.can_send):
            return
        self._presumed_timer = self.loop.call_at(machine.presumed_expiry_at(),
                                                 self._check_presumed)

    def cancel_presumed_timer(self) -> None:
        if self._presumed_timer is not None:
            self._presumed_timer.cancel()
            self._presumed_timer = None

    def _check_presumed(self) -> None:
        self._presumed_timer = None
        assert self.loop is not None
        if self.machine.check_presumed_expired(self.loop.time()):
            self._warn.log(logging.WARNING, "lost", "no server for a whole session timeout: "
                           "session presumed expired")
            # A handshake or restore still in flight would resume the given-up session.
            self.drop_current(ConnectionLossError("session presumed expired"))
            self.flush_changes()
        self._arm_presumed_timer()

    # --- state reporting -----------------------------------------------------------------

    def flush_changes(self) -> None:
        changes = self.machine.take_changes()
        if not changes:
            return
        for change in changes:
            log.info("state %s -> %s (session 0x%x%s)", change.previous.value,
                     change.state.value, change.session_id or 0,
                     ", new" if change.new_session else "")
            if self.metrics is not None:
                now = time.monotonic()
                self.metrics.state_entered(change.state, now - self._state_since)
                self._state_since = now
            if change.state is ClientState.LOST:
                self.watches.clear()
                if self.metrics is not None:
                    self.metrics.watches(0)
                if self.hooks is not None:
                    self.hooks.session_lost(SessionExpiredError(
                        "session expired" if change.confirmed else "session presumed expired"
                    ))
            elif change.state in _LIVE:
                self.cancel_presumed_timer()
                if self.sasl is not None:
                    self.fatal = None  # authenticated again
                self.reconnects += 1
                if not change.new_session and self.hooks is not None:
                    self.hooks.reconnected()
                waiter = self.restore_waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            for stream in list(self._state_streams):
                stream.put(change)
            for fn in list(self._listeners):
                try:
                    fn(change)
                except Exception:
                    log.exception("state listener %r raised", fn)
        self.notify()

    def notify(self) -> None:
        changed = self._changed
        if changed is not None:
            self._changed = asyncio.Event()
            changed.set()

    def add_listener(self, fn: Callable[[ClientStateChange], object]) -> None:
        if fn not in self._listeners:
            self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[ClientStateChange], object]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def state_changes(self) -> StateChangeStream:
        stream = StateChangeStream(self.max_queued_events,
                                   ended=self.machine.state is ClientState.CLOSED,
                                   metrics=self.metrics)
        self._state_streams.add(stream)
        return stream

    # --- request path --------------------------------------------------------------------

    async def wait_live(self, timeout: float | None, *, epoch: int | None = None) -> None:
        """Wait until requests can be sent.

        ``epoch``: the session the caller belongs to; if LOST is reported meanwhile, the
        caller's session is gone (SessionExpiredError) rather than silently continued on
        the next one.

        Raises:
            ClientClosedError, AuthFailedError, SessionExpiredError (epoch given),
            RequestTimeoutError: not connected within ``timeout``.
        """
        machine = self.machine
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if machine.closing or self._changed is None:
                        raise ClientClosedError(
                            "client is closed" if machine.closing else "client not started"
                        )
                    if self.fatal is not None:
                        raise self.fatal
                    if epoch is not None and machine.epoch != epoch:
                        raise SessionExpiredError("the session was lost while waiting")
                    if machine.can_send and self.conn is not None:
                        return
                    await self._changed.wait()
        except TimeoutError:
            raise RequestTimeoutError(
                f"not connected within {timeout:.1f}s (state {self.state.value})"
            ) from None

    def call(
        self, request: ops.Request, path: str, watcher: Subscriber | None = None
    ) -> Awaitable[Any]:
        """Send ``request``; return an awaitable of its result.

        Connected (the common case), the request is encoded and queued at once and the
        reply's future itself is returned: awaiting it costs no coroutine, and gathering
        many calls creates no task per call. Otherwise a coroutine that waits for the
        connection (or raises) first.
        """
        loop = self.loop
        if loop is not None:
            fut: asyncio.Future[Any] = loop.create_future()
            if self.send_now(request, path, fut, watcher):
                return fut
        return self._call_when_live(request, path, watcher)

    def send_now(
        self, request: ops.Request, path: str, sink: ReplySink,
        watcher: Subscriber | None = None,
    ) -> bool:
        """Loop thread only: send ``request`` now if the connection is live (True), its
        outcome going to ``sink``; False (nothing sent) otherwise."""
        machine = self.machine
        conn = self.conn
        if conn is None or not machine.can_send:
            return False
        loop = self.loop
        assert loop is not None
        now = loop.time()
        conn.write(machine.submit(request, (sink, path, watcher), now))
        if self.metrics is not None:
            self._request_sent(sink, request, now)
        return True

    # --- metrics (only with a hook; see zkwarden.metrics) --------------------------------

    def _request_sent(self, fut: ReplySink, request: ops.Request, now: float) -> None:
        sent = self._sent
        sent[fut] = (now, request.__class__.__name__)
        assert self.metrics is not None
        self.metrics.requests_in_flight(len(sent))

    def _request_done(self, fut: ReplySink, ok: bool) -> None:
        entry = self._sent.pop(fut, None)
        if entry is None:  # add_auth, CloseSession, or sent before the hook saw it
            return
        assert self.metrics is not None and self.loop is not None
        self.metrics.request_done(entry[1], self.loop.time() - entry[0], ok)
        self.metrics.requests_in_flight(len(self._sent))

    def default_wait(self) -> float:
        if self._request_timeout is not None:
            return self._request_timeout
        return self.machine.session_timeout

    async def _call_when_live(
        self, request: ops.Request, path: str, watcher: Subscriber | None
    ) -> Any:
        def frame(token: _Token, now: float) -> bytes:
            data = self.machine.submit(request, token, now)
            if self.metrics is not None:
                self._request_sent(token[0], request, now)
            return data

        return await self._send_when_live(frame, path, watcher)

    async def add_auth(self, scheme: str, credentials: bytes) -> None:
        """Send an auth packet on the live connection and wait for its reply.

        Raises:
            AuthFailedError, DataTooLargeError, ConnectionLossError, SessionExpiredError,
            ClientClosedError.
        """
        def frame(token: _Token, now: float) -> bytes:
            return self.machine.auth_frame(scheme, credentials, token, now)

        await self._send_when_live(frame, "/", None)

    async def _send_when_live(
        self, frame: Callable[[_Token, float], bytes], path: str, watcher: Subscriber | None
    ) -> Any:
        """Wait (bounded) for a live connection of the session this call started in, then
        send the frame ``frame(token, now)`` makes and await its reply."""
        self.check_usable()
        epoch = self.machine.epoch
        while True:
            try:
                await self.wait_live(self.default_wait(), epoch=epoch)
            except RequestTimeoutError as exc:
                raise ConnectionLossError(str(exc)) from None
            conn, loop = self.conn, self.loop
            if conn is not None and loop is not None and self.machine.can_send:
                fut: asyncio.Future[Any] = loop.create_future()
                conn.write(frame((fut, path, watcher), loop.time()))
                return await fut

    async def send_close_session(self) -> bool:
        """Send CloseSession on the live connection; True when the server confirmed it."""
        conn, loop = self.conn, self.loop
        if conn is None or loop is None:
            return False
        fut: asyncio.Future[Any] = loop.create_future()
        conn.write_now(self.machine.close_session_frame((fut, "/", None), loop.time()))
        try:
            async with asyncio.timeout(max(0.5, min(2.0, self.machine.read_timeout))):
                await asyncio.wait([fut, conn.closed], return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            log.warning("no reply to CloseSession within the close timeout")
        if fut.done() and not fut.cancelled():
            return fut.exception() is None
        return False

    async def stop(self, reason: ZooKeeperError) -> None:
        """Stop the supervisor and drop the connection (part of close)."""
        self.notify()
        supervisor = self.supervisor
        if supervisor is not None and supervisor is not asyncio.current_task():
            if self.handshaking is not None:
                # A ConnectRequest is in flight: let its answer arrive, so that a session
                # the server grants now is known (handed over to be closed), not left to
                # expire on the server.
                await asyncio.wait([supervisor], timeout=min(2.0, self.per_host_timeout()))
            supervisor.cancel()
            try:
                async with asyncio.timeout(2.0):
                    await asyncio.gather(supervisor, return_exceptions=True)
            except TimeoutError:
                log.warning("reconnect supervisor did not stop within 2s")
        self.drop_current(reason)
        self.cancel_presumed_timer()

    def finish_close(self, reason: ZooKeeperError) -> None:
        for fut, _path, _watcher in self.machine.finish_close():
            if self.metrics is not None:
                self._request_done(fut, False)
            if not fut.done():
                fut.set_exception(reason)
        self._sent.clear()
        self.watches.clear()
        self.flush_changes()
        for stream in list(self._state_streams):
            stream.end()
        self.notify()
