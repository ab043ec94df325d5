"""The session engine under AsyncClient: reconnect supervisor, frame dispatch, states.

The session rules live in :mod:`zkwarden.protocol.session`; this module does the I/O
they ask for. One supervisor task per client opens connections (capped exponential
backoff with full jitter over the shuffled host list), primes them (auth, SetWatches),
and waits for them to drop. Requests never spawn tasks: a request is encoded, queued on
the connection's batched writer, and its future resolved from ``data_received``.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import logging
import os
import random
import ssl
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from .. import paths as _paths
from .._ratelimit import RateLimitedLog
from ..errors import (
    AuthFailedError,
    ClientClosedError,
    ConfigurationError,
    ConnectionLossError,
    ForkedClientError,
    InvalidArgumentError,
    ProtocolError,
    RequestTimeoutError,
    SessionExpiredError,
    ZooKeeperError,
    error_for_code,
)
from ..hosts import HostPort, parse_connect_string
from ..protocol import ops
from ..protocol.framing import DEFAULT_MAX_RECEIVE, DEFAULT_MAX_SEND
from ..protocol.ops import WatchKind
from ..protocol.session import AuthReply, Notification, PingReply, Reply, SessionMachine
from ..protocol.watches import WatchRegistry
from ..types import (
    ClientState,
    ClientStateChange,
    EventType,
    KeeperState,
    WatchEvent,
)
from .connection import Connection
from .retry import Backoff, backoff_delay
from .transport import open_connection
from .watch import Subscriber

__all__ = ("SessionEngine",)

log = logging.getLogger("zkwarden.client")

_NO_NODE = -101
# (future, client path, watcher to register on success)
_Token = tuple["asyncio.Future[Any]", str, Subscriber | None]

# Every notification needs these: dict lookups instead of Enum calls, and WatchEvent (a
# frozen dataclass of 7 fields) built through its slots instead of its __init__.
_EVENT_TYPES: dict[int, EventType] = {int(e): e for e in EventType}
_KEEPER_STATES: dict[int, KeeperState] = {int(k): k for k in KeeperState}
_WATCH_EVENT_FIELDS = ("type", "state", "path", "zxid", "data", "stat", "children")
_WATCH_EVENT_FAST = tuple(f.name for f in dataclasses.fields(WatchEvent)) == _WATCH_EVENT_FIELDS
_WATCH_EVENT_SLOTS = tuple(getattr(WatchEvent, n).__set__ for n in _WATCH_EVENT_FIELDS)


def _watch_event(etype: EventType, state: KeeperState, path: str, zxid: int) -> WatchEvent:
    """``WatchEvent(etype, state, path, zxid)``, the other fields at their defaults."""
    if not _WATCH_EVENT_FAST:  # WatchEvent grew a field: take the slow, always right way
        return WatchEvent(etype, state, path, zxid)
    event: WatchEvent = object.__new__(WatchEvent)
    set_type, set_state, set_path, set_zxid, set_data, set_stat, set_children = (
        _WATCH_EVENT_SLOTS
    )
    set_type(event, etype)
    set_state(event, state)
    set_path(event, path)
    set_zxid(event, zxid)
    set_data(event, None)
    set_stat(event, None)
    set_children(event, None)
    return event


_live_clients: weakref.WeakSet[SessionEngine] = weakref.WeakSet()
_forked = False


def _after_fork_in_child() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def forked_since(pid: int) -> bool:
    """True in a child process forked after ``pid`` created a client (the flag saves a
    getpid() per call in the common, unforked case)."""
    return _forked and pid != os.getpid()


@atexit.register
def _close_leftover_sessions() -> None:
    # A client left open must not leave its ephemerals behind for a session timeout. The
    # event loop is usually gone by now, so close from a plain socket, bounded in time.
    if _forked:
        return
    for client in list(_live_clients):
        client._close_at_exit()


def _auth_bytes(auth: Sequence[tuple[str, str | bytes]] | None) -> list[tuple[str, bytes]]:
    result: list[tuple[str, bytes]] = []
    for item in auth or ():
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise ConfigurationError(f"auth entries are (scheme, credentials) pairs, got {item!r}")
        scheme, cred = item
        result.append((scheme, cred.encode() if isinstance(cred, str) else bytes(cred)))
    return result


class SessionEngine:
    """The session engine under :class:`AsyncClient`: it owns the connection, the reconnect
    supervisor, the dispatch of server frames, state reporting and the request path.

    The session rules themselves live in :mod:`zkwarden.protocol.session`; this class does
    the I/O they ask for. Operations are in :mod:`zkwarden._aio.client`.
    """

    async def close(self) -> None:  # implemented by AsyncClient
        raise NotImplementedError

    def _close_at_exit(self) -> None:  # implemented by AsyncClient
        raise NotImplementedError

    def __init__(
        self,
        hosts: str = "127.0.0.1:2181",
        *,
        session_timeout: float = 10.0,
        connect_timeout: float | None = None,
        auth: Sequence[tuple[str, str | bytes]] | None = None,
        tls: ssl.SSLContext | bool | None = None,
        read_only: bool = False,
        backoff: Backoff | None = None,
        request_timeout: float | None = None,
        max_request_size: int = DEFAULT_MAX_SEND,
        max_response_size: int = DEFAULT_MAX_RECEIVE,
        randomize_hosts: bool = True,
    ) -> None:
        parsed = parse_connect_string(hosts)
        if not session_timeout > 0:
            raise ConfigurationError(f"session_timeout must be > 0, got {session_timeout!r}")
        if connect_timeout is not None and not connect_timeout > 0:
            raise ConfigurationError(f"connect_timeout must be > 0, got {connect_timeout!r}")
        self._hosts = list(parsed.hosts)
        if randomize_hosts:
            random.shuffle(self._hosts)
        self._chroot = parsed.chroot
        self._connect_string = hosts
        self._session_timeout = float(session_timeout)
        self._connect_timeout = connect_timeout
        self._auth = _auth_bytes(auth)
        if tls is True:
            tls = ssl.create_default_context()
        self._tls: ssl.SSLContext | None = tls or None
        self._backoff = backoff or Backoff()
        self._request_timeout = request_timeout
        self._max_response = max_response_size
        self._session: SessionMachine[_Token | None] = SessionMachine(
            requested_timeout=session_timeout, read_only_allowed=read_only,
            max_send=max_request_size,
        )
        self._watches: WatchRegistry[Subscriber] = WatchRegistry()
        self._subscribers: set[Subscriber] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._listeners: list[Callable[[ClientStateChange], object]] = []
        self._state_queues: list[asyncio.Queue[ClientStateChange | None]] = []
        self._conn: Connection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self._closing = False
        self._reported_state = ClientState.CONNECTING
        self._session_closed_on_server = False
        self._closed_done: asyncio.Event | None = None
        self._fatal: ZooKeeperError | None = None
        self._auth_waiters: deque[asyncio.Future[None]] = deque()
        self._presumed_timer: asyncio.TimerHandle | None = None
        self._rng = random.Random()
        self._warn = RateLimitedLog(log)
        self._host_index = 0
        self._pid = os.getpid()
        #: connection attempts since the last stable connection (exposed for tests/metrics)
        self.connect_attempts = 0
        self.reconnects = 0

    # --- public properties -------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        """The current :class:`ClientState`: the last one reported to listeners.

        (The session machine moves first; after a reconnect, CONNECTED is reported once
        the watches are restored, and this property says so at the same moment.)
        """
        return self._reported_state

    @property
    def session_id(self) -> int | None:
        """The current session id, or None before the first session / after loss."""
        return self._session.session_id or None

    @property
    def session_password(self) -> bytes:
        """The session password (needed only to attach another connection to the session)."""
        return self._session.password

    @property
    def negotiated_timeout(self) -> float | None:
        """The session timeout the server granted, in seconds."""
        return self._session.negotiated_timeout

    @property
    def connected(self) -> bool:
        """True while a connection with a live session is up and reported (CONNECTED or
        READ_ONLY)."""
        return self._session.connected and self._reported_state in (
            ClientState.CONNECTED, ClientState.READ_ONLY
        )

    @property
    def hosts(self) -> list[HostPort]:
        """The servers of the connect string."""
        return list(self._hosts)

    @property
    def current_host(self) -> HostPort | None:
        """The server of the current connection, if any."""
        return self._conn.host if self._conn is not None and self._session.connected else None

    @property
    def chroot(self) -> str:
        return self._chroot

    @property
    def closed(self) -> bool:
        return self._closing

    def _check_usable(self) -> None:
        if forked_since(self._pid):
            raise ForkedClientError(
                "this client was created before fork(); create a new client in the child"
            )
        if self._closing:
            raise ClientClosedError("client is closed")

    def _per_host_timeout(self) -> float:
        if self._connect_timeout is not None:
            return self._connect_timeout
        timeout = self._session.negotiated_timeout or self._session_timeout
        # At least three tries per session timeout, even with one host: a server that
        # accepts and never answers (one still starting up, or overloaded) must not use
        # up the whole session on a single handshake.
        return max(timeout / max(len(self._hosts), 3), 0.5)

    # --- supervisor ----------------------------------------------------------------------

    def _next_host(self) -> HostPort:
        host = self._hosts[self._host_index % len(self._hosts)]
        self._host_index += 1
        return host

    def _backoff_cap(self) -> float:
        # While the session may still be alive, retry often enough to resume it within its
        # timeout; once it is lost, the full ceiling protects the servers.
        if self._session.session_id and not self._session.lost_reported:
            timeout = self._session.negotiated_timeout or self._session_timeout
            return min(self._backoff.maximum, max(timeout / 3, self._backoff.initial))
        return self._backoff.maximum

    async def _supervise(self) -> None:
        attempt = 0
        loop = asyncio.get_running_loop()
        while not self._closing:
            delay = backoff_delay(attempt, self._backoff.initial, self._backoff_cap(), self._rng)
            if delay > 0:
                await asyncio.sleep(delay)
                if self._closing:
                    return
            host = self._next_host()
            self.connect_attempts += 1
            try:
                conn = await self._connect(host)
            except (ConnectionLossError, ProtocolError, OSError) as exc:
                # ProtocolError: a garbled handshake reply; that connection is dropped,
                # the next attempt starts afresh (the supervisor must never die of it).
                attempt += 1
                self._warn.log(
                    logging.WARNING, "connect", "cannot connect to %s: %s (attempt %d)",
                    host, exc, attempt,
                )
                continue
            except AuthFailedError as exc:
                self._fatal = exc
                log.error("authentication failed on %s: %s; closing the client", host, exc)
                loop.create_task(self.close())
                return
            if conn is None:  # the server confirmed our session expired: new session now
                attempt = 0
                continue
            up_since = loop.time()
            await asyncio.shield(conn.closed)
            lived = loop.time() - up_since
            if lived >= self._session.read_timeout:
                attempt = 0
                self._warn.reset("connect")
            else:
                attempt += 1

    async def _connect(self, host: HostPort) -> Connection | None:
        """Open, handshake and prime one connection. None when the old session expired."""
        loop = asyncio.get_running_loop()
        timeout = self._per_host_timeout()
        transport, conn = await open_connection(
            host, lambda: Connection(self, host, self._max_response), timeout=timeout,
            tls=self._tls,
        )
        try:
            transport.write(self._session.connect_request(loop.time()))
            payload = await conn.first_frame(timeout)
            if self._closing:
                raise ClientClosedError("client closed during handshake")
            result = self._session.handshake(payload, loop.time())
        except BaseException:
            conn.abort()
            raise
        if result.expired:
            if self._session.presumed_lost and self._session.session_id:
                # We already reported this session LOST; close it on the server so its
                # ephemerals go now, then open a fresh session.
                self._session.connected = True
                conn.activate()
                try:
                    await self._send_close_session(conn)
                finally:
                    conn.abort()
                self._session.forget_presumed_session()
            else:
                conn.abort()
            self._emit(result.changes)
            self._on_session_lost(confirmed=True)
            return None
        self._conn = conn
        conn.activate()
        if any(c.state is ClientState.LOST for c in result.changes):
            # The server handed us another session than the one we asked to resume: the
            # old one's watches are gone; never restore them onto the new session.
            self._on_session_lost(confirmed=True)
        restoring = self._watches.count() > 0
        primed = self._session.prime(self._auth, self._watches, loop.time())
        auth_waits = [self._auth_waiter() for _ in self._auth]
        if primed:
            conn.write_now(primed)
        conn.schedule_timer(self._session.next_deadline())
        if auth_waits:
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.gather(*auth_waits)
            except TimeoutError:
                conn.abort(ConnectionLossError("no auth reply"))
                raise ConnectionLossError(f"no auth reply from {host}") from None
        if restoring:
            # Replies are FIFO: once this read returns, the server has processed the
            # SetWatches batches. Only then report CONNECTED, so that a change made right
            # after it is seen by persistent watches too (they get no catch-up events).
            try:
                async with asyncio.timeout(timeout):
                    await self._call(ops.Exists("/"), "/")
            except TimeoutError:
                conn.abort(ConnectionLossError("no reply after restoring watches"))
                raise ConnectionLossError(f"no reply from {host} after SetWatches") from None
        if self._presumed_timer is not None:
            self._presumed_timer.cancel()
            self._presumed_timer = None
        if result.new_session:
            self._watches.clear()
        else:
            for sub in list(self._subscribers):
                sub.reconnected()
        self.reconnects += 1
        log.info(
            "connected to %s, session 0x%x (%s), timeout %.1fs",
            host, self._session.session_id, "new" if result.new_session else "resumed",
            self._session.negotiated_timeout or 0.0,
        )
        assert self._ready is not None
        self._ready.set()
        self._emit(result.changes)
        return conn

    def _auth_waiter(self) -> asyncio.Future[None]:
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        self._auth_waiters.append(fut)
        return fut

    # --- ConnectionOwner -----------------------------------------------------------------

    def on_frame(self, conn: Connection, payload: bytes | memoryview) -> None:
        assert self._loop is not None
        msg = self._session.receive(payload, self._loop.time())
        if isinstance(msg, Reply):
            self._on_reply(msg)
        elif isinstance(msg, Notification):
            self._on_notification(msg)
        elif isinstance(msg, AuthReply):
            waiter = self._auth_waiters.popleft() if self._auth_waiters else None
            if waiter is not None and not waiter.done():
                if msg.err:
                    waiter.set_exception(AuthFailedError(f"authentication failed (code {msg.err})"))
                else:
                    waiter.set_result(None)
        else:
            assert isinstance(msg, PingReply)

    def _on_reply(self, reply: Reply[_Token | None]) -> None:
        token = reply.token
        if token is None:  # SetWatches: nothing waits for it
            if reply.err:
                log.warning("SetWatches failed with code %d", reply.err)
            return
        fut, path, watcher = token
        err = reply.err
        # A stream closed while its arming read was in flight must not come back into the
        # table (it would be restored on every reconnect and never removed).
        if watcher is not None and not watcher.ended:
            kind = reply.request.watch_kind
            if kind is not None and (
                err == 0 or (err == _NO_NODE and kind is WatchKind.EXIST)
            ):
                self._watches.add(kind, self._server_path_unchecked(path), watcher)
        if fut.done():
            return
        if err == 0:
            fut.set_result(reply.result)
        else:
            fut.set_exception(error_for_code(err, path))

    def _on_notification(self, msg: Notification) -> None:
        raw = msg.event
        etype = _EVENT_TYPES.get(raw.type)
        state = _KEEPER_STATES.get(raw.state)
        if etype is None or state is None:
            log.warning("ignoring notification with unknown type/state %r", raw)
            return
        watchers = self._watches.fire(etype, raw.path)
        if watchers:
            event = _watch_event(etype, state, _paths.strip_chroot(self._chroot, raw.path),
                                 msg.zxid)
            for watcher in watchers:
                watcher.deliver(event)

    def on_timer(self, conn: Connection) -> None:
        assert self._loop is not None
        now = self._loop.time()
        if self._session.read_timed_out(now):
            self._warn.log(
                logging.WARNING, "read-timeout", "no reply from %s for %.2fs; reconnecting",
                conn.host, self._session.read_timeout,
            )
            conn.abort(ConnectionLossError(f"read timeout from {conn.host}"))
            return
        ping = self._session.on_timer(now)
        if ping is not None:
            conn.write(ping)
        conn.schedule_timer(self._session.next_deadline())

    def on_connection_lost(self, conn: Connection, reason: BaseException) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        assert self._ready is not None and self._loop is not None
        self._ready.clear()
        failed, changes = self._session.connection_lost(closing=self._closing)
        exc_text = str(reason) or "connection lost"
        # Once close() has begun, whatever is still pending fails because of the close.
        exc_type = ClientClosedError if self._closing else ConnectionLossError
        for token in failed:
            if token is not None and not token[0].done():
                token[0].set_exception(exc_type(exc_text))
        for waiter in self._auth_waiters:
            if not waiter.done():
                waiter.set_exception(exc_type(exc_text))
        self._auth_waiters.clear()
        if not self._closing:
            if changes:
                self._warn.log(logging.WARNING, "disconnect", "disconnected from %s: %s",
                               conn.host, exc_text)
            self._emit(changes)
            if self._session.session_id and not self._session.lost_reported:
                self._presumed_timer = self._loop.call_at(
                    self._session.presumed_expiry_at(), self._check_presumed
                )

    def _check_presumed(self) -> None:
        self._presumed_timer = None
        assert self._loop is not None
        change = self._session.check_presumed_expired(self._loop.time())
        if change is not None:
            self._warn.log(logging.WARNING, "lost", "no server for a whole session timeout: "
                           "session 0x%x presumed expired", self._session.session_id)
            self._emit([change])
            self._on_session_lost(confirmed=False)
        elif not self._session.connected and not self._session.lost_reported:
            self._presumed_timer = self._loop.call_at(
                self._session.presumed_expiry_at(), self._check_presumed
            )

    def _on_session_lost(self, *, confirmed: bool) -> None:
        self._watches.clear()
        exc = SessionExpiredError("session expired" if confirmed else "session presumed expired")
        for sub in list(self._subscribers):
            sub.end(exc)

    # --- state reporting -----------------------------------------------------------------

    def _emit(self, changes: Sequence[ClientStateChange]) -> None:
        for change in changes:
            self._reported_state = change.state
            log.info("state %s -> %s (session 0x%x%s)", change.previous.value, change.state.value,
                     change.session_id or 0, ", new" if change.new_session else "")
            for q in self._state_queues:
                q.put_nowait(change)
            for fn in list(self._listeners):
                try:
                    fn(change)
                except Exception:
                    log.exception("state listener %r raised", fn)

    def add_listener(self, fn: Callable[[ClientStateChange], object]) -> None:
        """Call ``fn(change)`` on every state change (on the event loop; must not block)."""
        if fn not in self._listeners:
            self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[ClientStateChange], object]) -> None:
        """Stop calling ``fn``; a no-op when it was not added."""
        if fn in self._listeners:
            self._listeners.remove(fn)

    async def state_changes(self) -> AsyncIterator[ClientStateChange]:
        """Every state change from now on; ends after CLOSED."""
        q: asyncio.Queue[ClientStateChange | None] = asyncio.Queue()
        self._state_queues.append(q)
        try:
            if self._closing and self._session.state is ClientState.CLOSED:
                return
            while True:
                change = await q.get()
                if change is None:
                    return
                yield change
                if change.state is ClientState.CLOSED:
                    return
        finally:
            if q in self._state_queues:
                self._state_queues.remove(q)

    # --- request plumbing ----------------------------------------------------------------

    def _server_path(self, path: str, *, sequential: bool = False) -> str:
        _paths.validate(path, sequential=sequential)
        return _paths.add_chroot(self._chroot, path)

    def _server_path_unchecked(self, path: str) -> str:
        return _paths.add_chroot(self._chroot, path)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until a session is up (however long ``timeout`` allows; None: forever).

        Raises:
            ClientClosedError: the client is or gets closed.
            AuthFailedError: the credentials were rejected.
            RequestTimeoutError: not connected within ``timeout``.
        """
        if self._ready is None:
            raise ClientClosedError("client not started; call start() first")
        try:
            async with asyncio.timeout(timeout):
                while not self.connected:
                    if self._closing:
                        raise ClientClosedError("client is closed")
                    if self._fatal is not None:
                        raise self._fatal
                    await self._ready.wait()
        except TimeoutError:
            raise RequestTimeoutError(f"not connected within {timeout}s") from None

    async def _wait_connected(self) -> None:
        assert self._ready is not None
        timeout = self._request_timeout
        if timeout is None:
            timeout = self._session.negotiated_timeout or self._session_timeout
        try:
            async with asyncio.timeout(timeout):
                while not self._session.connected:
                    if self._closing:
                        raise ClientClosedError("client is closed")
                    if self._fatal is not None:
                        raise self._fatal
                    await self._ready.wait()
        except TimeoutError:
            raise ConnectionLossError(
                f"not connected to ZooKeeper for {timeout:.1f}s (state {self.state.value})"
            ) from None

    def _call(
        self, request: ops.Request, path: str, watcher: Subscriber | None = None
    ) -> Awaitable[Any]:
        """Send ``request``; return an awaitable of its result.

        Connected (the common case), the request is encoded and queued at once and the
        reply's future itself is returned: awaiting it costs no coroutine, and gathering
        many calls creates no task per call. Otherwise a coroutine that waits for the
        connection (or raises) first.
        """
        session = self._session
        conn = self._conn
        if session.connected and conn is not None and not self._closing:
            loop = self._loop
            assert loop is not None
            fut: asyncio.Future[Any] = loop.create_future()
            conn.write(session.submit(request, (fut, path, watcher), loop.time()))
            return fut
        return self._call_when_connected(request, path, watcher)

    async def _call_when_connected(
        self, request: ops.Request, path: str, watcher: Subscriber | None
    ) -> Any:
        if self._closing or self._supervisor is None:
            self._check_usable()
            raise ClientClosedError("client not started; call start() first")
        if not self._session.connected:
            await self._wait_connected()
        conn = self._conn
        assert conn is not None and self._loop is not None
        fut: asyncio.Future[Any] = self._loop.create_future()
        conn.write(self._session.submit(request, (fut, path, watcher), self._loop.time()))
        return await fut

    def _check_data(self, data: object) -> bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidArgumentError(f"data must be bytes, not {type(data).__name__}")
        return bytes(data)

    # --- close ---------------------------------------------------------------------------

    async def _send_close_session(self, conn: Connection) -> bool:
        """Send CloseSession; True when the server confirmed it."""
        assert self._loop is not None
        fut: asyncio.Future[Any] = self._loop.create_future()
        conn.write_now(self._session.close_session_frame((fut, "/", None), self._loop.time()))
        try:
            async with asyncio.timeout(max(0.5, min(2.0, self._session.read_timeout))):
                await asyncio.wait([fut, conn.closed], return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            log.warning("no reply to CloseSession within the close timeout")
        if fut.done() and not fut.cancelled():
            return fut.exception() is None
        return False
