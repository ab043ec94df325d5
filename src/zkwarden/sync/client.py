"""Client: the blocking facade over AsyncClient.

Thread model (DESIGN section 2, rules 3 and 4):

* Each ``Client`` owns one daemon thread running an asyncio event loop, and on it one
  :class:`~zkwarden.AsyncClient`. Every method is one coroutine of that AsyncClient run on
  the loop while the calling thread waits (``Portal.run``); there is no second
  implementation of the protocol or the session. One loop per client, rather than one per
  process, keeps clients independent (a client's close stops exactly its own threads, a
  busy client cannot delay another's pings, nothing is shared across fork()), and costs one
  thread per client, which a program with one or two clients never notices.
* User callbacks (watch callbacks, state listeners) run on dispatcher threads, never on
  the loop thread: the loop keeps pinging and re-arming whatever a callback does, and a
  callback may block, raise, call any Client method or close the client. Callbacks of one
  watch (or one listener) run one at a time, in order; those of different watches may
  run at once on a small lazily-started pool (``max_callback_threads``), so one blocked
  callback delays only its own watch. State listeners have a pool of their own, so even
  ``max_callback_threads`` blocked watch callbacks cannot hold back the LOST notice a lock
  holder waits for.
* Waiting for a connection is bounded by default (DESIGN rule 8): a call made while no
  server is reachable fails with ConnectionLossError after the connection wait (the
  ``request_timeout``, else the session timeout), watch()/add_watch() included; pass
  ``timeout=FOREVER`` to wait for a connection as long as it takes.
* ``close()`` works from any thread, including a callback: it waits (bounded) for the
  session close on the loop, never for the callback that called it.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import math
import os
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

from .._aio.client import AsyncClient
from .._aio.options import forked_since
from .._aio.retry import Backoff
from ..errors import (
    ClientClosedError,
    ConnectionLossError,
    ForkedClientError,
    InvalidArgumentError,
    RequestTimeoutError,
    ZooKeeperError,
)
from ..hosts import HostPort
from ..metrics import ClientMetrics
from ..protocol.framing import DEFAULT_MAX_RECEIVE, DEFAULT_MAX_SEND
from ..protocol.ops import Request
from ..sasl import SASLOptions
from ..types import ACL, ClientState, ClientStateChange
from ._dispatch import Channel, Dispatcher
from ._operations import Operations
from ._portal import Portal
from ._watch import DEFAULT_MAX_QUEUED
from ._watches import Watches

__all__ = ("Client", "FOREVER")

#: ``timeout=FOREVER``: wait for a connection as long as it takes (never give up).
FOREVER: float = math.inf

log = logging.getLogger("zkwarden.sync")

T = TypeVar("T")

#: Default bound of close(): the session close on the loop plus joining the threads.
CLOSE_TIMEOUT = 5.0
# At interpreter exit nobody waits for callbacks; the session close alone matters.
_EXIT_CLOSE_TIMEOUT = 3.0
# After the AsyncClient closed, how long watch pumps get to hand over their final error.
_PUMP_DRAIN = 1.0

# Max threads running state listeners (a separate pool from the watch callbacks').
_LISTENER_THREADS = 4

_serial = itertools.count(1)
_live: weakref.WeakSet[Client] = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    # Registered after the AsyncClient's own exit hook (this module imports it first), so
    # it runs before it: close through the still-running loop threads, and leave only the
    # clients this fails for to the AsyncClient's plain-socket fallback.
    for client in list(_live):
        if client._pid == os.getpid():
            client._close(_EXIT_CLOSE_TIMEOUT, join_callbacks=False, at_exit=True)


def _forever(timeout: float | None) -> bool:
    return timeout is not None and math.isinf(timeout) and timeout > 0


class Client(Operations, Watches):
    """A blocking ZooKeeper client: the :class:`~zkwarden.AsyncClient` API for threads.

    Takes the same arguments as AsyncClient, plus ``max_callback_threads`` (how many
    dispatcher threads may run callbacks of different watches at once; state listeners
    have their own threads) and ``max_queued_events`` (how many events a persistent watch
    handle queues while its callback is busy before it drops them and delivers one event
    of type NONE instead; one-shot watch handles keep only the newest event).

    Every blocking method takes ``timeout`` (seconds):

    * ``None`` (default): made while disconnected, the call waits for a connection at
      most the connection wait (``request_timeout`` if given, else the negotiated or
      requested session timeout), then raises ConnectionLossError; once sent, the
      AsyncClient's own bounds apply (the read timeout). ``watch()``/``add_watch()`` then
      get one more connection wait plus the read timeout to be armed.
    * a number: the whole call is bounded by it; past it the call raises
      :class:`~zkwarden.errors.RequestTimeoutError` (a ``TimeoutError`` and a
      ConnectionLossError; the outcome of a write is then unknown).
    * :data:`FOREVER`: wait for a connection as long as it takes.

    Thread-safe: any number of threads may call any method at once.

    Use ``zk.start()`` / ``zk.close()``, or ``with Client(...) as zk:``.

    Raises (constructor):
        ConfigurationError: bad connect string, timeout or auth spec.
        InvalidArgumentError: ``max_callback_threads`` or ``max_queued_events`` < 1.
    """

    def __init__(
        self,
        hosts: str = "127.0.0.1:2181",
        *,
        session_timeout: float = 10.0,
        connect_timeout: float | None = None,
        auth: Sequence[tuple[str, str | bytes]] | None = None,
        tls: ssl.SSLContext | bool | None = None,
        sasl: SASLOptions | None = None,
        read_only: bool = False,
        backoff: Backoff | None = None,
        request_timeout: float | None = None,
        max_request_size: int = DEFAULT_MAX_SEND,
        max_response_size: int = DEFAULT_MAX_RECEIVE,
        randomize_hosts: bool = True,
        max_callback_threads: int = 8,
        max_queued_events: int = DEFAULT_MAX_QUEUED,
        default_acl: Sequence[ACL] | None = None,
        metrics: ClientMetrics | None = None,
        track_ensemble: bool = True,
    ) -> None:
        for name, value in (("max_callback_threads", max_callback_threads),
                            ("max_queued_events", max_queued_events)):
            if not (isinstance(value, int) and value >= 1):
                raise InvalidArgumentError(f"{name} must be an int >= 1, got {value!r}")
        self._aio = AsyncClient(
            hosts, session_timeout=session_timeout, connect_timeout=connect_timeout,
            auth=auth, tls=tls, sasl=sasl, read_only=read_only, backoff=backoff,
            request_timeout=request_timeout, max_request_size=max_request_size,
            max_response_size=max_response_size, randomize_hosts=randomize_hosts,
            default_acl=default_acl, metrics=metrics, track_ensemble=track_ensemble,
        )
        self._pid = os.getpid()
        self._name = f"zkwarden-{next(_serial)}"
        self._session_timeout = float(session_timeout)
        self._request_timeout = request_timeout
        self._max_queued = max_queued_events
        self._dispatcher = Dispatcher(f"{self._name}-callbacks", max_callback_threads)
        # State listeners' own lane: watch callbacks, however many block, cannot hold back
        # a LOST notice (rule 7 is only as good as its delivery).
        self._listener_dispatcher = Dispatcher(f"{self._name}-listeners", _LISTENER_THREADS)
        self._portal: Portal | None = None
        # Guards start/close bookkeeping and the listener table. Never held while waiting
        # on the loop: the loop thread takes it (to read the listeners).
        self._lock = threading.Lock()
        self._closing = False
        self._session_closed = threading.Event()
        self._listeners: dict[Callable[[ClientStateChange], object], Channel] = {}
        self._aio.add_listener(self._on_state_change)
        # Loop-thread only: watch pumps, awaited by close so their final error is handed
        # to the dispatcher before it stops.
        self._tasks: set[asyncio.Task[None]] = set()
        # Loop-thread only: the close started from the loop thread itself (owned here, so
        # it is not a task nobody holds; the loop's shutdown awaits it).
        self._closer: asyncio.Task[None] | None = None

    # --- plumbing ------------------------------------------------------------------------

    def _check_fork(self) -> None:
        # Before any lock: a lock held by a parent thread at fork() stays held in the child.
        if forked_since(self._pid):
            raise ForkedClientError(
                "this Client was created before fork(); its threads and connection belong "
                "to the parent process: create a new Client in the child"
            )

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None, what: str) -> T:
        """Run ``coro`` on the loop; ``timeout`` bounds the whole call (None, FOREVER: no
        bound of ours)."""
        try:
            self._check_fork()
        except ForkedClientError:
            coro.close()
            raise
        portal = self._portal
        if portal is None:
            coro.close()
            if self._closing:
                raise ClientClosedError("client is closed")
            raise ClientClosedError("client not started; call start() first")
        return portal.run(coro, None if _forever(timeout) else timeout, what)

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None, what: str) -> T:
        """An operation: ``_run`` with the default connection wait (see the class doc)."""
        # A racy read is fine: connected, the AsyncClient sends at once; if that changed
        # meanwhile, its own bounded wait applies.
        try:
            # A separate wait rather than a wrapping coroutine: a wrapper cancelled before
            # it starts would leave ``coro`` never awaited.
            self._wait_for_connection(timeout, what)
        except BaseException:
            coro.close()
            raise
        return self._run(coro, timeout, what)

    def _wait_for_connection(self, timeout: float | None, what: str) -> None:
        """With the default or FOREVER ``timeout``, wait until connected, bounded by the
        connection wait (default) or not at all (FOREVER). An explicit timeout bounds the
        whole call instead, so nothing is done for it here.

        Raises:
            ConnectionLossError: not connected within the connection wait.
            ClientClosedError, AuthFailedError, ForkedClientError.
        """
        if self._aio.connected or not (timeout is None or _forever(timeout)):
            return
        wait = None if timeout is not None else self._connection_wait()
        try:
            self._run(self._aio.wait_connected(wait), None, what)
        except RequestTimeoutError:
            raise ConnectionLossError(
                f"{what}: not connected to ZooKeeper within {wait}s "
                f"(state {self._aio.state.value})"
            ) from None

    def _run_direct(
        self, request: Request, path: str, fallback: Callable[[], Coroutine[Any, Any, T]],
        timeout: float | None, what: str,
    ) -> T:
        """Send ``request`` from the loop thread without a coroutine (``fallback()`` when
        not connected there); ``timeout`` bounds the whole call."""
        portal = self._portal
        if portal is None:
            if self._closing:
                raise ClientClosedError("client is closed")
            raise ClientClosedError("client not started; call start() first")
        aio = self._aio
        return portal.run_direct(lambda sink: aio._send_now(request, path, sink), fallback,
                                 None if _forever(timeout) else timeout, what)

    def _connection_wait(self) -> float:
        """How long a call with the default timeout waits for a connection (the same
        wait the AsyncClient gives a request made while disconnected)."""
        if self._request_timeout is not None:
            return self._request_timeout
        return self._aio.negotiated_timeout or self._session_timeout

    def _portal_call_soon(self, fn: Callable[[], object]) -> None:
        portal = self._portal
        if portal is not None:
            portal.call_soon(fn)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def run_coroutine(self, coro: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
        """Run a coroutine that uses :attr:`async_client` on this client's loop thread and
        block until it finishes: the hook for blocking facades of async components.

        Raises:
            RequestTimeoutError: not done within ``timeout`` seconds (it is cancelled).
            ClientClosedError, ForkedClientError, and whatever the coroutine raises.
        """
        return self._run(coro, timeout, getattr(coro, "__qualname__", "coroutine"))

    # --- properties ----------------------------------------------------------------------

    @property
    def async_client(self) -> AsyncClient:
        """The AsyncClient this facade drives. Use it only from coroutines run by
        :meth:`run_coroutine` (it belongs to the loop thread)."""
        return self._aio

    @property
    def state(self) -> ClientState:
        """The current :class:`ClientState`."""
        return self._aio.state

    @property
    def session_id(self) -> int | None:
        """The current session id, or None before the first session / after loss."""
        return self._aio.session_id

    @property
    def session_password(self) -> bytes:
        """The session password (needed only to attach another connection to the session)."""
        return self._aio.session_password

    @property
    def negotiated_timeout(self) -> float | None:
        """The session timeout the server granted, in seconds."""
        return self._aio.negotiated_timeout

    @property
    def connected(self) -> bool:
        """True while a connection with a live session is up."""
        return self._aio.connected

    @property
    def hosts(self) -> list[HostPort]:
        """The servers of the connect string."""
        return self._aio.hosts

    @property
    def current_host(self) -> HostPort | None:
        """The server of the current connection, if any."""
        return self._aio.current_host

    @property
    def chroot(self) -> str:
        """The chroot of the connect string ("" when none)."""
        return self._aio.chroot

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closing

    @property
    def connect_string(self) -> str:
        """The connect string the client was made with."""
        return self._aio.connect_string

    @property
    def reconnects(self) -> int:
        """Connections that reached CONNECTED or READ_ONLY."""
        return self._aio.reconnects

    @property
    def connect_attempts(self) -> int:
        """Connection attempts since start (for tests and metrics)."""
        return self._aio.connect_attempts

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float | None = None, *, wait: bool = True) -> None:
        """Start the client's threads, connect and open a session.

        ``timeout`` defaults to the session timeout plus one connect timeout per host; when
        it expires the client is closed. :data:`FOREVER` keeps trying as long as it takes.
        With ``wait=False`` return at once and keep connecting in the background.

        Raises:
            RequestTimeoutError: no server could be reached within ``timeout`` (a
                ConnectionLossError and a TimeoutError; the client is closed then).
            AuthFailedError: the server rejected the credentials (the client is closed).
            ClientClosedError, ForkedClientError.
        """
        self._check_fork()
        with self._lock:
            if self._closing:
                raise ClientClosedError("client is closed")
            if self._portal is None:
                portal = Portal(f"{self._name}-loop")
                portal.start()
                self._portal = portal
                _live.add(self)
        try:
            if _forever(timeout) and wait:
                self._run(self._start_forever(), None, "start")
            else:
                self._run(self._aio.start(timeout, wait=wait), None, "start")
        except ConnectionLossError as exc:
            self._close(CLOSE_TIMEOUT, join_callbacks=True)
            if isinstance(exc, RequestTimeoutError):
                raise
            raise RequestTimeoutError(str(exc)) from exc
        except ZooKeeperError:
            if self._aio.closed:
                self._close(CLOSE_TIMEOUT, join_callbacks=True)
            raise

    async def _start_forever(self) -> None:
        await self._aio.start(wait=False)
        await self._aio.wait_connected(None)

    def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until a session is up: at most the connection wait by default (see the
        class doc), ``timeout`` seconds if given, as long as it takes with FOREVER.

        Raises:
            ClientClosedError: the client is or gets closed.
            AuthFailedError: the credentials were rejected.
            RequestTimeoutError: not connected within the wait.
            ForkedClientError: called in a child process after fork().
        """
        if timeout is None:
            timeout = self._connection_wait()
        wait = None if _forever(timeout) else timeout
        self._run(self._aio.wait_connected(wait), None, "wait_connected")

    def close(self, timeout: float | None = None) -> None:
        """Close the session and the client (DESIGN rule 4); never raises.

        Idempotent, callable from any thread, including a watch callback or a state
        listener of this client. Sends CloseSession, so the server drops this session's
        ephemeral nodes at once; pending and later calls fail with ClientClosedError;
        watch streams end with ClientClosedError (``on_error``); listeners get CLOSED.
        Then the loop thread exits, and the dispatcher threads once they have run what is
        queued. Bounded by ``timeout`` (default 5 s): from a callback it waits for the
        session close but not for the callbacks; from elsewhere also for running callbacks
        to finish. In a child process after fork() it does nothing (the session is the
        parent's).
        """
        if forked_since(self._pid):
            return
        self._close(CLOSE_TIMEOUT if timeout is None else timeout, join_callbacks=True)

    def _close(self, timeout: float, *, join_callbacks: bool, at_exit: bool = False) -> None:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            first = not self._closing
            self._closing = True
            portal = self._portal
        if not first:
            # Someone else is closing: wait for the session close (it needs only the loop,
            # which runs no user code, so this cannot deadlock on the closer).
            if portal is not None and not portal.in_loop_thread():
                self._session_closed.wait(max(0.0, deadline - time.monotonic()))
            return
        _live.discard(self)
        if portal is None:  # never started: no session, no loop thread
            self._session_closed.set()
            self._stop_dispatchers(None)
            return
        if portal.in_loop_thread():
            # Only reachable from code we run on the loop: it cannot wait for itself. The
            # task is ours (self._closer); it stops the loop, whose shutdown awaits it.
            self._closer = portal.loop.create_task(self._close_then_stop(portal, deadline))
            return
        # A callback that closes its client must not wait for other callbacks either: one
        # of them may be waiting for it.
        in_callback = self._dispatcher.in_worker() or self._listener_dispatcher.in_worker()
        join_callbacks = join_callbacks and not in_callback
        if at_exit and not self._aio.connected:
            # Disconnected at exit: the AsyncClient would re-attach to the session through
            # asyncio.to_thread, which the interpreter already refuses by now; close it
            # from a plain socket here instead, then just stop the threads.
            self._aio._close_at_exit()
            self._session_closed.set()
            portal.stop(max(0.0, deadline - time.monotonic()))
            self._stop_dispatchers(None)
            return
        try:
            portal.run(self._close_on_loop(), max(0.0, deadline - time.monotonic()), "close")
        except RequestTimeoutError:
            log.warning("%s: session close did not finish within %.1fs", self._name, timeout)
        except ZooKeeperError as exc:
            log.debug("%s: close: %s", self._name, exc)
        except Exception:
            log.exception("%s: error while closing", self._name)
        finally:
            self._session_closed.set()
            if not portal.stop(max(0.0, deadline - time.monotonic())):
                log.warning("%s: event-loop thread still running after close", self._name)
            if not self._stop_dispatchers(deadline if join_callbacks else None) and join_callbacks:
                log.warning("%s: a callback was still running when close() returned",
                            self._name)

    def _stop_dispatchers(self, deadline: float | None) -> bool:
        """Stop both callback lanes, joining their threads until ``deadline`` (None: no
        join). False when a callback was still running at the deadline."""
        stopped = True
        for dispatcher in (self._dispatcher, self._listener_dispatcher):
            remaining = 0.0 if deadline is None else max(0.0, deadline - time.monotonic())
            stopped = dispatcher.stop(remaining) and stopped
        return stopped

    async def _close_on_loop(self) -> None:
        await self._aio.close()
        # The pumps now take their streams' ClientClosedError to the dispatcher.
        pumps = list(self._tasks)
        if pumps:
            await asyncio.wait(pumps, timeout=_PUMP_DRAIN)

    async def _close_then_stop(self, portal: Portal, deadline: float) -> None:
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self._close_on_loop()
        except (TimeoutError, ZooKeeperError):
            pass
        finally:
            self._session_closed.set()
            portal.stop(0.0)
            self._stop_dispatchers(None)

    def __enter__(self) -> Client:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- state listeners -----------------------------------------------------------------

    def add_listener(self, fn: Callable[[ClientStateChange], object]) -> None:
        """Call ``fn(change)`` on every state change, on a dispatcher thread, in order.

        ``fn`` may block, raise (logged) and call any Client method, close() included.
        Listeners run on threads of their own, never behind watch callbacks: a LOST is
        delivered even while every callback thread is blocked (a listener that blocks
        delays only its own later changes).
        Adding the same function twice is a no-op. Works before start() (to see the
        first CONNECTED).

        Raises:
            ForkedClientError: called in a child process after fork().
        """
        self._check_fork()
        with self._lock:
            if fn not in self._listeners:
                self._listeners[fn] = Channel(f"state listener {fn!r}")

    def remove_listener(self, fn: Callable[[ClientStateChange], object]) -> None:
        """Stop calling ``fn`` (changes already queued for it are dropped); a no-op when it
        was not added.

        Raises:
            ForkedClientError: called in a child process after fork().
        """
        self._check_fork()
        with self._lock:
            channel = self._listeners.pop(fn, None)
        if channel is not None:
            self._listener_dispatcher.cancel(channel)

    def _on_state_change(self, change: ClientStateChange) -> None:
        # On the loop thread (an AsyncClient listener): hand over, never call user code.
        with self._lock:
            listeners = list(self._listeners.items())
            closing = self._closing
        for fn, channel in listeners:
            self._listener_dispatcher.post(channel, fn, change)
        if change.state is ClientState.CLOSED and not closing:
            # The AsyncClient closed itself (credentials rejected on a reconnect): stop our
            # threads too. Not from here: close() waits for this very thread.
            threading.Thread(target=self.close, name=f"{self._name}-closer",
                             daemon=True).start()

    def __repr__(self) -> str:
        sid = f"0x{self.session_id:x}" if self.session_id else "none"
        return f"<Client {self._aio.connect_string!r} state={self.state.value} session={sid}>"
