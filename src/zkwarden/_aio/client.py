"""AsyncClient: the operations, the reconnect supervisor, and state listeners.

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
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal

from .. import paths as _paths
from .._ratelimit import RateLimitedLog
from ..errors import (
    AuthFailedError,
    ClientClosedError,
    ConfigurationError,
    ConnectionLossError,
    ForkedClientError,
    InvalidArgumentError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
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
from ..protocol.records import ClientInfo
from ..protocol.session import AuthReply, Notification, PingReply, Reply, SessionMachine
from ..protocol.watches import WatchRegistry
from ..types import (
    ACL,
    OPEN_ACL_UNSAFE,
    ClientState,
    ClientStateChange,
    CreateMode,
    EventType,
    KeeperState,
    Stat,
    WatcherType,
    WatchEvent,
)
from .connection import Connection
from .retry import Backoff, backoff_delay
from .transaction import Transaction
from .transport import close_session_blocking, open_connection
from .watch import PersistentWatchStream, Subscriber, WatchStream

__all__ = ("AsyncClient",)

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


_live_clients: weakref.WeakSet[AsyncClient] = weakref.WeakSet()
_forked = False


def _after_fork_in_child() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


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


class AsyncClient:
    """An asyncio ZooKeeper client.

    ``hosts`` is a connect string (``"h1:2181,h2:2181/chroot"``). Times are seconds.
    Use ``await client.start()`` / ``await client.close()``, or ``async with``.

    Raises (constructor):
        ConfigurationError: bad connect string, timeout or auth spec.
    """

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

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self, timeout: float | None = None, *, wait: bool = True) -> None:
        """Connect and open a session.

        With ``wait=False`` return at once and keep connecting in the background.
        ``timeout`` defaults to the session timeout plus one connect timeout per host.

        Raises:
            ConnectionLossError: no server could be reached within ``timeout`` (the client
                is closed then).
            AuthFailedError: the server rejected the credentials.
            ClientClosedError: the client was closed.
        """
        self._check_usable()
        if self._supervisor is None:
            self._loop = asyncio.get_running_loop()
            self._ready = asyncio.Event()
            self._closed_done = asyncio.Event()
            _live_clients.add(self)
            self._supervisor = self._loop.create_task(self._supervise(), name="zkwarden-supervisor")
        if not wait:
            return
        if timeout is None:
            timeout = self._session_timeout + self._per_host_timeout() * len(self._hosts)
        assert self._ready is not None
        try:
            async with asyncio.timeout(timeout):
                while not self.connected:
                    if self._fatal is not None:
                        raise self._fatal
                    if self._closing:
                        raise ClientClosedError("client closed while starting")
                    await self._ready.wait()
        except TimeoutError:
            await self.close()
            raise ConnectionLossError(
                f"could not connect to {self._connect_string} within {timeout:.1f}s"
            ) from None
        if self._fatal is not None:
            raise self._fatal

    async def __aenter__(self) -> AsyncClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_usable(self) -> None:
        if _forked and self._pid != os.getpid():
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
        if watcher is not None:
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

    # --- operations ----------------------------------------------------------------------

    async def create(
        self,
        path: str,
        data: bytes = b"",
        *,
        ephemeral: bool = False,
        sequence: bool = False,
        container: bool = False,
        ttl: float | None = None,
        acl: Sequence[ACL] | None = None,
        makepath: bool = False,
        include_stat: bool = False,
    ) -> Any:
        """Create a node; return its actual path (with the sequence suffix, if any).

        ``ttl`` (seconds) makes a persistent TTL node (server needs extendedTypesEnabled);
        ``container`` a container node; ``makepath`` creates missing parents.
        With ``include_stat=True`` return ``(path, Stat)``.

        Raises:
            NodeExistsError, NoNodeError (parent missing), NoChildrenForEphemeralsError,
            InvalidACLError, NoAuthError, UnimplementedError (TTL disabled on the server),
            InvalidPathError, InvalidArgumentError, DataTooLargeError,
            ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        request = self._create_request(
            path, data, ephemeral=ephemeral, sequence=sequence, container=container, ttl=ttl,
            acl=acl, include_stat=include_stat,
        )
        try:
            created, stat = await self._call(request, path)
        except NoNodeError:
            if not makepath or _paths.parent(path) == "/":
                raise
            await self.ensure_path(_paths.parent(path))
            created, stat = await self._call(request, path)
        created = _paths.strip_chroot(self._chroot, created)
        if include_stat:
            return created, stat
        return created

    def _create_request(
        self,
        path: str,
        data: bytes,
        *,
        ephemeral: bool,
        sequence: bool,
        container: bool,
        ttl: float | None,
        acl: Sequence[ACL] | None,
        include_stat: bool = False,
    ) -> ops.Request:
        """The request for a create (also inside a transaction), with its options checked.

        Raises:
            InvalidPathError, InvalidArgumentError.
        """
        data = self._check_data(data)
        if container and (ephemeral or sequence or ttl is not None):
            raise InvalidArgumentError("container nodes cannot be ephemeral, sequential or TTL")
        if ttl is not None:
            if ephemeral:
                raise InvalidArgumentError("TTL nodes cannot be ephemeral")
            if not ttl > 0:
                raise InvalidArgumentError(f"ttl must be > 0 seconds, got {ttl!r}")
        server_path = self._server_path(path, sequential=sequence)
        acl_t = tuple(acl) if acl is not None else OPEN_ACL_UNSAFE
        if not acl_t:
            raise InvalidArgumentError("acl must not be empty")
        mode = CreateMode.from_options(
            ephemeral=ephemeral, sequence=sequence, container=container, ttl=ttl is not None
        )
        if ttl is not None:
            return ops.CreateTTL(server_path, data, acl_t, mode, max(1, int(ttl * 1000)))
        if container:
            return ops.CreateContainer(server_path, data, acl_t, mode)
        if include_stat:
            return ops.Create2(server_path, data, acl_t, mode)
        return ops.Create(server_path, data, acl_t, mode)

    async def ensure_path(self, path: str, acl: Sequence[ACL] | None = None) -> None:
        """Create ``path`` and any missing parents (persistent, empty); no error if present.

        Raises:
            NoAuthError, InvalidPathError, ConnectionLossError, SessionExpiredError,
            ClientClosedError.
        """
        self._server_path(path)
        if path == "/":
            return
        if await self.exists(path) is not None:
            return
        parts = path.strip("/").split("/")
        current = ""
        acl = tuple(acl) if acl is not None else OPEN_ACL_UNSAFE
        for part in parts:
            current = f"{current}/{part}"
            try:
                await self._call(ops.Create(self._server_path_unchecked(current), b"", acl, 0),
                                 current)
            except NodeExistsError:
                pass

    async def get(self, path: str) -> tuple[bytes, Stat]:
        """Return the node's data and Stat.

        Raises:
            NoNodeError, NoAuthError, InvalidPathError, ConnectionLossError,
            SessionExpiredError, ClientClosedError.
        """
        result: tuple[bytes, Stat] = await self._call(ops.GetData(self._server_path(path)), path)
        return result

    async def set(self, path: str, data: bytes, version: int = -1) -> Stat:
        """Set the node's data (``version=-1``: any version); return the new Stat.

        Raises:
            NoNodeError, BadVersionError, NoAuthError, InvalidPathError,
            InvalidArgumentError, DataTooLargeError, ConnectionLossError,
            SessionExpiredError, ClientClosedError.
        """
        data = self._check_data(data)
        stat: Stat = await self._call(ops.SetData(self._server_path(path), data, version), path)
        return stat

    async def delete(self, path: str, version: int = -1, recursive: bool = False) -> None:
        """Delete the node; with ``recursive=True`` its whole subtree (no error if absent).

        Raises:
            NoNodeError (not recursive), NotEmptyError, BadVersionError, NoAuthError,
            InvalidPathError, ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        server_path = self._server_path(path)
        if not recursive:
            await self._call(ops.Delete(server_path, version), path)
            return
        while True:
            try:
                children = await self.get_children(path)
            except NoNodeError:
                return
            if children:
                await asyncio.gather(*(
                    self.delete(_paths.join(path, c), recursive=True) for c in children
                ))
            try:
                await self._call(ops.Delete(server_path, version), path)
                return
            except NoNodeError:
                return
            except NotEmptyError:
                continue  # a child was created meanwhile: delete again

    async def exists(self, path: str) -> Stat | None:
        """Return the node's Stat, or None when it does not exist.

        Raises:
            NoAuthError, InvalidPathError, ConnectionLossError, SessionExpiredError,
            ClientClosedError.
        """
        try:
            stat: Stat = await self._call(ops.Exists(self._server_path(path)), path)
        except NoNodeError:
            return None
        return stat

    async def get_children(self, path: str, *, include_stat: bool = False) -> Any:
        """Return the child names (unsorted, as the server sends them).

        With ``include_stat=True`` return ``(children, Stat)``.

        Raises:
            NoNodeError, NoAuthError, InvalidPathError, ConnectionLossError,
            SessionExpiredError, ClientClosedError.
        """
        server_path = self._server_path(path)
        if include_stat:
            return await self._call(ops.GetChildren2(server_path), path)
        return await self._call(ops.GetChildren(server_path), path)

    async def get_many(self, paths: Sequence[str]) -> list[tuple[bytes, Stat] | ZooKeeperError]:
        """Read many nodes in one pipelined round; per path the (data, Stat) or the error.

        Raises:
            InvalidPathError, ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        server_paths = [self._server_path(p) for p in paths]
        if not server_paths:
            return []
        futures = [self._call(ops.GetData(sp), p) for sp, p in zip(server_paths, paths, strict=True)]
        results = await asyncio.gather(*futures, return_exceptions=True)
        out: list[tuple[bytes, Stat] | ZooKeeperError] = []
        for item in results:
            if isinstance(item, (NoNodeError,)) or not isinstance(item, BaseException):
                out.append(item)
            elif isinstance(item, ZooKeeperError) and not isinstance(
                item, (ConnectionLossError, SessionExpiredError, ClientClosedError)
            ):
                out.append(item)
            else:
                raise item
        return out

    async def multi_read(self, paths: Sequence[str], *, children: bool = False) -> list[Any]:
        """One multiRead request (ZooKeeper >= 3.6): getData (or getChildren) per path.

        Each entry is the result or the error for that path (not atomic).

        Raises:
            InvalidPathError, ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        op_type = ops.GetChildren if children else ops.GetData
        request = ops.MultiRead([op_type(self._server_path(p)) for p in paths])
        results: list[Any] = await self._call(request, paths[0] if paths else "/")
        return results

    async def sync(self, path: str) -> str:
        """Make the connected server catch up with the leader for ``path``.

        Raises:
            InvalidPathError, ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        result: str = await self._call(ops.Sync(self._server_path(path)), path)
        return _paths.strip_chroot(self._chroot, result)

    async def get_acl(self, path: str) -> tuple[list[ACL], Stat]:
        """Return the node's ACL and Stat.

        Raises:
            NoNodeError, NoAuthError, InvalidPathError, ConnectionLossError,
            SessionExpiredError, ClientClosedError.
        """
        result: tuple[list[ACL], Stat] = await self._call(ops.GetACL(self._server_path(path)), path)
        return result

    async def set_acl(self, path: str, acls: Sequence[ACL], version: int = -1) -> Stat:
        """Replace the node's ACL (``version`` is the ACL version, aversion).

        Raises:
            NoNodeError, BadVersionError, InvalidACLError, NoAuthError, InvalidPathError,
            ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        stat: Stat = await self._call(
            ops.SetACL(self._server_path(path), tuple(acls), version), path
        )
        return stat

    async def get_ephemerals(self, prefix: str = "/") -> list[str]:
        """This session's ephemeral nodes whose path starts with ``prefix`` (ZK >= 3.6).

        Raises:
            ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        server_prefix = _paths.add_chroot(self._chroot, prefix) if prefix != "/" else (
            self._chroot or "/")
        found: list[str] = await self._call(ops.GetEphemerals(server_prefix), prefix)
        return sorted(_paths.strip_chroot(self._chroot, p) for p in found)

    async def get_all_children_number(self, path: str) -> int:
        """The number of all descendants of ``path`` (ZK >= 3.6).

        Raises:
            NoNodeError, InvalidPathError, ConnectionLossError, SessionExpiredError,
            ClientClosedError.
        """
        n: int = await self._call(ops.GetAllChildrenNumber(self._server_path(path)), path)
        return n

    async def whoami(self) -> list[ClientInfo]:
        """The identities of this connection (ZK >= 3.7).

        Raises:
            ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        info: list[ClientInfo] = await self._call(ops.WhoAmI(), "/")
        return info

    async def add_auth(self, scheme: str, credentials: str | bytes) -> None:
        """Authenticate this connection (and every later one) with ``scheme``.

        Raises:
            AuthFailedError, ConnectionLossError, ClientClosedError.
        """
        (entry,) = _auth_bytes([(scheme, credentials)])
        if not self._session.connected:
            await self._wait_connected()
        conn = self._conn
        assert conn is not None and self._loop is not None
        waiter = self._auth_waiter()
        self._session._auth_pending += 1
        conn.write(self._session._frame(-4, ops.Auth(*entry)))
        await waiter
        if entry not in self._auth:
            self._auth.append(entry)

    async def check_watches(self, path: str, watcher_type: WatcherType = WatcherType.ANY) -> None:
        """Raise NoWatcherError unless this session has such a watch on ``path``.

        Raises:
            NoWatcherError, InvalidPathError, ConnectionLossError, ClientClosedError.
        """
        await self._call(ops.CheckWatches(self._server_path(path), int(watcher_type)), path)

    async def remove_watches(self, path: str, watcher_type: WatcherType = WatcherType.ANY) -> None:
        """Remove this session's watches of a type on ``path`` from the server.

        Streams on that path stop receiving events from the server; prefer closing the
        streams (``aclose()``), which does this when the last one on a path goes.

        Raises:
            NoWatcherError, MarshallingError (types 4/5 on ZooKeeper < 3.9),
            InvalidPathError, ConnectionLossError, ClientClosedError.
        """
        await self._call(ops.RemoveWatches(self._server_path(path), int(watcher_type)), path)

    def transaction(self) -> Transaction:
        """A transaction: ``async with zk.transaction() as t: t.create(...); ...``.

        It commits when the block exits without an exception; ``await t.commit()`` commits
        explicitly and returns the per-operation results.
        """
        return Transaction(self)

    async def _multi(self, requests: Sequence[ops.Request], first_path: str) -> list[Any]:
        results: list[Any] = await self._call(ops.Multi(list(requests)), first_path)
        return results

    # --- watches -------------------------------------------------------------------------

    def watch(self, path: str, kind: Literal["data", "exists", "children"] = "data") -> WatchStream:
        """A stream of one-shot watch events on ``path``, re-armed after every event.

        The first event (type NONE) holds the current state; each later one the state
        read in the same request that re-armed the watch. It survives the node being
        absent or deleted and reconnects; it ends with SessionExpiredError or
        ClientClosedError. ``aclose()`` (or leaving ``async for`` with break) stops it.

        Raises:
            InvalidPathError, InvalidArgumentError (unknown kind), ClientClosedError.
        """
        if kind not in ("data", "exists", "children"):
            raise InvalidArgumentError(f"kind must be 'data', 'exists' or 'children', not {kind!r}")
        self._server_path(path)
        self._check_usable()
        return WatchStream(self, path, kind)

    def add_watch(self, path: str, *, recursive: bool = True) -> PersistentWatchStream:
        """A persistent (``recursive=False``) or persistent recursive watch (ZK >= 3.6).

        Use ``async for ev in zk.add_watch(path)``, or ``stream = await zk.add_watch(path)``
        to be sure it is armed before going on. An event of type NONE marks each time the
        watch was (re-)armed; after a reconnect, re-read the state you keep.

        Raises:
            InvalidPathError, ClientClosedError.
        """
        self._server_path(path)
        self._check_usable()
        return PersistentWatchStream(self, path, recursive)

    def _register(self, sub: Subscriber) -> None:
        self._check_usable()
        self._subscribers.add(sub)

    def _unregister(self, sub: Subscriber, kinds: Sequence[WatchKind]) -> bool:
        """Forget a subscriber; True when it was the last persistent one of its kind/path."""
        self._subscribers.discard(sub)
        server_path = self._server_path_unchecked(sub.path)
        last = False
        for kind in kinds:
            if self._watches.remove(kind, server_path, sub) and kind in (
                WatchKind.PERSISTENT, WatchKind.PERSISTENT_RECURSIVE
            ):
                last = True
        return last

    def _abandon(self, sub: Subscriber, persistent: WatchKind | None) -> None:
        """A stream was garbage-collected without being closed (``break`` out of ``async
        for``): forget it, and remove its persistent watch from the server if it was the
        last one. Runs from a weakref finalizer, so only schedules the I/O."""
        last = self._unregister(sub, [persistent] if persistent else list(WatchKind))
        loop = self._loop
        if (persistent is None or not sub.armed or not last or loop is None
                or loop.is_closed() or self._closing):
            return
        path = sub.path

        def remove() -> None:
            task = loop.create_task(self._remove_persistent_watch(path, persistent))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

        loop.call_soon_threadsafe(remove)

    async def _remove_persistent_watch(self, path: str, kind: WatchKind) -> None:
        """Remove the session's persistent watch on ``path`` from the server. Never raises."""
        if not self.connected:
            return  # not restored on reconnect any more either: it is out of the registry
        watcher_type = (WatcherType.PERSISTENT_RECURSIVE
                        if kind is WatchKind.PERSISTENT_RECURSIVE else WatcherType.PERSISTENT)
        try:
            await self.remove_watches(path, watcher_type)
        except ZooKeeperError as exc:
            # ZooKeeper < 3.9 knows only Children/Data/Any; Any would also drop the
            # watches of other streams on this path, so use it only when there are none.
            if self._has_other_watchers(path):
                log.debug("persistent watch on %s left to the session: %s", path, exc)
                return
            try:
                await self.remove_watches(path, WatcherType.ANY)
            except ZooKeeperError as exc2:
                log.debug("could not remove watch on %s: %s", path, exc2)

    def _has_other_watchers(self, path: str) -> bool:
        # Any live stream on the path counts, armed or not: one whose re-arming read is in
        # flight is not in the registry yet, and RemoveWatches(ANY) sent behind that read
        # would strip the watch it is about to get.
        if any(s.path == path and not s.ended for s in self._subscribers):
            return True
        server_path = self._server_path_unchecked(path)
        return any(self._watches.has(k, server_path) for k in WatchKind)

    async def _watched_call(self, request: ops.Request, path: str, sub: Subscriber) -> Any:
        return await self._call(request, path, sub)

    async def exists_watched(self, server_path: str, path: str, sub: Subscriber) -> Stat | None:
        """exists with a watch for ``sub`` (armed even when the node is absent)."""
        try:
            stat: Stat = await self._call(ops.Exists(server_path, True), path, sub)
        except NoNodeError:
            return None
        return stat

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

    async def close(self) -> None:
        """Close the session and the client (DESIGN rule 4).

        Idempotent; callable from any task, including a watch consumer or a listener's
        task; bounded in time. Sends CloseSession so the server drops this session's
        ephemeral nodes at once; every pending operation fails with ClientClosedError and
        every watch stream ends with ClientClosedError. Never raises.
        """
        if self._closing:
            if self._closed_done is not None:
                try:
                    async with asyncio.timeout(5.0):
                        await self._closed_done.wait()
                except TimeoutError:
                    pass
            return
        self._closing = True
        try:
            await self._close_now()
        finally:
            _live_clients.discard(self)
            if self._closed_done is not None:
                self._closed_done.set()

    async def _close_now(self) -> None:
        session_id, password = self._session.session_id, self._session.password
        closed_on_server = False
        supervisor = self._supervisor
        conn = self._conn
        if conn is not None and self._session.connected:
            # Unanswered (the connection died or the server went silent): the session may
            # still be alive, so it is closed from a new connection below.
            closed_on_server = await self._send_close_session(conn)
        if supervisor is not None and supervisor is not asyncio.current_task():
            supervisor.cancel()
            try:
                async with asyncio.timeout(2.0):
                    await asyncio.gather(supervisor, return_exceptions=True)
            except TimeoutError:
                log.warning("reconnect supervisor did not stop within 2s")
        conn = self._conn
        if conn is not None:
            conn.abort(ClientClosedError("client closed"))
        if self._presumed_timer is not None:
            self._presumed_timer.cancel()
            self._presumed_timer = None
        if not closed_on_server and session_id and not self._session.lost_reported:
            # Disconnected (or mid-reconnect) with a live session: attach once more and
            # close it, so its ephemeral nodes do not outlive us by a session timeout.
            closed_on_server = await self._close_remote(session_id, password)
        self._session_closed_on_server = closed_on_server or not session_id
        self._fail_everything(ClientClosedError("client closed"))
        change = self._session.close()
        self._emit([change] if change else [])
        for q in self._state_queues:
            q.put_nowait(None)
        if self._ready is not None:
            self._ready.set()

    async def _close_remote(self, session_id: int, password: bytes) -> bool:
        deadline = time.monotonic() + max(1.0, min(3.0, self._session_timeout))
        for host in self._hosts:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            args = (host, session_id, password)
            kwargs: dict[str, Any] = {"timeout": min(remaining, 1.0), "tls": self._tls}
            try:
                try:
                    await asyncio.to_thread(close_session_blocking, *args, **kwargs)
                except RuntimeError:
                    # Interpreter shutdown refuses new threads: block briefly instead.
                    close_session_blocking(*args, **kwargs)
                return True
            except ZooKeeperError as exc:
                log.info("could not close session 0x%x on %s: %s", session_id, host, exc)
        return False

    def _fail_everything(self, exc: ZooKeeperError) -> None:
        failed, _ = self._session.connection_lost(closing=True)
        for token in failed:
            if token is not None and not token[0].done():
                token[0].set_exception(exc)
        for waiter in self._auth_waiters:
            if not waiter.done():
                waiter.set_exception(exc)
        self._auth_waiters.clear()
        self._watches.clear()
        for sub in list(self._subscribers):
            sub.end(exc)
        self._subscribers.clear()

    def _close_at_exit(self) -> None:
        # Also when a close() began but never reached the server (its loop stopped first).
        if self._session_closed_on_server or not self._session.session_id:
            return
        self._closing = True
        self._session_closed_on_server = True
        session_id, password = self._session.session_id, self._session.password
        for host in self._hosts:
            try:
                close_session_blocking(host, session_id, password, timeout=1.0, tls=self._tls)
                return
            except ZooKeeperError:
                continue

    def __repr__(self) -> str:
        sid = f"0x{self._session.session_id:x}" if self._session.session_id else "none"
        return f"<AsyncClient {self._connect_string!r} state={self.state.value} session={sid}>"
