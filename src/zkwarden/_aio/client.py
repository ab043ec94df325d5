"""AsyncClient: the public asyncio API, and nothing else.

It is composed of three private parts: the session engine (connection, reconnects, frame
dispatch, state reporting, the request path; :mod:`zkwarden._aio.engine`), the watch
subscriptions (:mod:`zkwarden._aio.subscriptions`) and the closer
(:mod:`zkwarden._aio.closer`). The session rules live in
:mod:`zkwarden.protocol.session`.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ..retry import RetryPolicy

from ..errors import (
    AuthFailedError,
    ConnectionLossError,
    InvalidArgumentError,
    RequestTimeoutError,
)
from ..hosts import HostPort
from ..metrics import ClientMetrics, check_metrics
from ..protocol.framing import DEFAULT_MAX_RECEIVE, DEFAULT_MAX_SEND
from ..sasl import SASLOptions
from ..types import (
    ACL,
    OPEN_ACL_UNSAFE,
    ClientState,
    ClientStateChange,
)
from .closer import Closer
from .engine import SessionEngine
from .ensemble import EnsembleConfig, EnsembleTracker, get_config, reconfig, watch_config
from .operations import NodeOperations
from .retry import Backoff
from .states import StateChangeStream
from .subscriptions import Subscriptions
from .supervisor import Supervisor
from .watch import PersistentWatchStream, WatchStream

__all__ = ("AsyncClient",)

log = logging.getLogger("zkwarden.client")


class AsyncClient(NodeOperations):
    """An asyncio ZooKeeper client.

    ``hosts`` is a connect string (``"h1:2181,h2:2181/chroot"``). Times are seconds.
    Use ``await client.start()`` / ``await client.close()``, or ``async with``.
    ``max_queued_events`` bounds every queue between the connection and user code (per
    watch stream and state stream): a consumer that falls further behind gets one event of
    type NONE saying events were lost, and re-reads. ``default_acl``: the ACL of nodes
    created with ``acl=None`` (create, ensure_path, transactions; default: open).
    ``metrics``: an object the client reports requests, states, watches and queues to
    (:mod:`zkwarden.metrics`). ``track_ensemble`` (default True; None means True): follow
    ``/zookeeper/config`` and keep the host list equal to the ensemble's members,
    rebalancing when it changes (:mod:`zkwarden._aio.ensemble`). It costs one GetData and
    one data watch per session (re-read after each change); a connect string that names
    no member (a load balancer) is left alone, with one log line. False turns it off.

    Raises (constructor):
        ConfigurationError: bad connect string, timeout, size, auth spec or metrics hook.
        InvalidArgumentError: an empty ``default_acl``.
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
        max_queued_events: int = 10_000,
        default_acl: Sequence[ACL] | None = None,
        metrics: ClientMetrics | None = None,
        track_ensemble: bool | None = True,
    ) -> None:
        if default_acl is not None and not tuple(default_acl):
            raise InvalidArgumentError("default_acl must not be empty")
        self._default_acl = tuple(default_acl) if default_acl is not None else OPEN_ACL_UNSAFE
        self._engine = SessionEngine(
            hosts, session_timeout=session_timeout, connect_timeout=connect_timeout,
            auth=auth, tls=tls, sasl=sasl, read_only=read_only,
            request_timeout=request_timeout, max_request_size=max_request_size,
            max_response_size=max_response_size, randomize_hosts=randomize_hosts,
            max_queued_events=max_queued_events,
        )
        self._subs = Subscriptions(self._engine)
        self._closer = Closer(self._engine, self._subs)
        self._supervisor = Supervisor(self._engine, backoff)
        self._engine.hooks = self._subs
        self._engine.on_fatal = self._closer.begin
        self._engine.metrics = check_metrics(metrics)
        # On by default for any connect string, one host included (issue 15); None is
        # what the blocking facade passes by default.
        if track_ensemble is None:
            track_ensemble = True
        self._tracker = (EnsembleTracker(self, self._engine, self._supervisor)
                         if track_ensemble else None)

    # --- properties ----------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        """The current :class:`ClientState`: the last one reported to listeners."""
        return self._engine.state

    @property
    def session_id(self) -> int | None:
        """The current session id, or None before the first session / after loss."""
        return self._engine.machine.session_id or None

    @property
    def session_password(self) -> bytes:
        """The session password (needed only to attach another connection to the session)."""
        return self._engine.machine.password

    @property
    def negotiated_timeout(self) -> float | None:
        """The session timeout the server granted, in seconds."""
        return self._engine.machine.negotiated_timeout

    @property
    def connected(self) -> bool:
        """True while requests can be sent (CONNECTED or READ_ONLY)."""
        return self._engine.machine.can_send

    @property
    def hosts(self) -> list[HostPort]:
        """The servers of the connect string."""
        return list(self._engine.hosts)

    @property
    def current_host(self) -> HostPort | None:
        """The server of the current connection, if any."""
        conn = self._engine.conn
        return conn.host if conn is not None and self._engine.machine.attached else None

    @property
    def connect_string(self) -> str:
        """The connect string the client was made with."""
        return self._engine.connect_string

    @property
    def connect_attempts(self) -> int:
        """Connection attempts since start (for tests and metrics)."""
        return self._supervisor.connect_attempts

    @property
    def reconnects(self) -> int:
        """Connections that reached CONNECTED or READ_ONLY."""
        return self._engine.reconnects

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
            ForkedClientError: called in a child process after fork().
        """
        engine = self._engine
        engine.check_usable()
        if not engine.started:
            engine.start(self._supervisor.run)
            self._closer.started()
            if self._tracker is not None:
                self._tracker.start()
        if not wait:
            return
        if timeout is None:
            timeout = engine.session_timeout + engine.per_host_timeout() * len(engine.hosts)
        try:
            await engine.wait_live(timeout)
        except RequestTimeoutError:
            await self.close()
            raise ConnectionLossError(
                f"could not connect to {engine.connect_string} within {timeout:.1f}s"
            ) from None
        except AuthFailedError:
            await self.close()  # a start() that fails leaves nothing running
            raise

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until a session is up (however long ``timeout`` allows; None: forever).

        Raises:
            ClientClosedError: the client is or gets closed (or was never started).
            AuthFailedError: the credentials were rejected.
            RequestTimeoutError: not connected within ``timeout``.
        """
        await self._engine.wait_live(timeout)

    async def __aenter__(self) -> AsyncClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session and the client (DESIGN rule 4).

        Idempotent; callable from any task, including a watch consumer or a listener;
        bounded in time; a caller cancelled while waiting does not stop the close (every
        ``close()`` waits for the same one). Sends CloseSession so the server drops this
        session's ephemeral nodes at once; every pending operation fails with
        ClientClosedError and every watch stream ends with ClientClosedError. Never raises
        (but CancelledError for a cancelled caller).
        """
        if self._tracker is not None:
            self._tracker.stop()
        await self._closer.close()

    def _close_at_exit(self) -> None:
        self._closer.close_at_exit()

    # --- state listeners -----------------------------------------------------------------

    def add_listener(self, fn: Callable[[ClientStateChange], object]) -> None:
        """Call ``fn(change)`` on every state change (on the event loop; must not block)."""
        self._engine.add_listener(fn)

    def remove_listener(self, fn: Callable[[ClientStateChange], object]) -> None:
        """Stop calling ``fn``; a no-op when it was not added."""
        self._engine.remove_listener(fn)

    def state_changes(self) -> StateChangeStream:
        """Every state change from this call on (``async for``); ends after CLOSED."""
        return self._engine.state_changes()

    async def retry(self, fn: Callable[..., Any], /, *args: Any, policy: RetryPolicy | None = None,
                    **kwargs: Any) -> Any:
        """``await fn(*args, **kwargs)`` retried on connection loss within ``policy`` (a
        :class:`zkwarden.retry.RetryPolicy`); operations not safe to repeat are refused
        (see :mod:`zkwarden.retry` for which, and why).

        Raises:
            InvalidArgumentError: ``fn`` is an operation not safe to repeat.
            ConnectionLossError: still failing when the deadline or attempts ran out.
            ClientClosedError: the client was closed meanwhile.
            ZooKeeperError: anything else ``fn`` raises, at once.
        """
        from ..retry import retry

        return await retry(self, fn, *args, policy=policy, **kwargs)

    async def get_config(
        self, watch: Callable[[EnsembleConfig], object] | None = None
    ) -> EnsembleConfig:
        """The ensemble's configuration (``/zookeeper/config``, never under the chroot):
        members, roles, client addresses, version.

        ``watch``: a callable (kazoo's ``watch=``, Curator's ``usingWatcher``) called with
        every LATER configuration, in order, on the event loop (it must not block); the
        read that returns the config arms the watch in the same request, so no change
        falls between them. Unlike a one-shot watch it keeps following (re-armed after
        each change, across reconnects and new sessions) until the client closes or the
        callback returns False; a burst of changes may be coalesced, the last is always
        delivered. ``zk.watch("/zookeeper/config")`` gives the raw events as a stream.

        Raises:
            InvalidArgumentError (a malformed config), NoAuthError, ConnectionLossError,
            SessionExpiredError, ClientClosedError.
        """
        if watch is not None:
            return await watch_config(self, watch)
        return await get_config(self._engine)

    async def reconfig(
        self,
        joining: Sequence[str] | None = None,
        leaving: Sequence[int | str] | None = None,
        new_members: Sequence[str] | None = None,
        from_config: int = -1,
    ) -> EnsembleConfig:
        """Change the membership (ZooKeeper >= 3.5, ``reconfigEnabled=true``); return the
        configuration committed. ``joining``: ``server.N=host:q:e[:role];chost:cport``
        lines to add (or update); ``leaving``: server ids to remove; or ``new_members``:
        the whole new list. ``from_config``: the version it must change (-1: any).
        On ConnectionLoss the change may have been committed: read :meth:`get_config`.

        Raises:
            InvalidArgumentError (nothing to change, or both styles), BadVersionError
            (``from_config`` is stale), ReconfigInProgressError, NewConfigNoQuorumError,
            ReconfigDisabledError, NoAuthError, BadArgumentsError, ConnectionLossError,
            SessionExpiredError, ClientClosedError.
        """
        return await reconfig(self._engine, joining, leaving, new_members, from_config)

    # --- watches -------------------------------------------------------------------------

    def watch(self, path: str, kind: Literal["data", "exists", "children"] = "data") -> WatchStream:
        """A stream of one-shot watch events on ``path``, re-armed after every event.

        The first event (type NONE) holds the current state; each later one the state
        read in the same request that re-armed the watch. It survives the node being
        absent or deleted and reconnects; it ends with SessionExpiredError,
        ClientClosedError, or the error that stopped it from arming (NoAuthError, ...).
        ``aclose()`` (or leaving ``async for`` with break) stops it.

        Raises:
            InvalidPathError, InvalidArgumentError (unknown kind), ClientClosedError.
        """
        if kind not in ("data", "exists", "children"):
            raise InvalidArgumentError(f"kind must be 'data', 'exists' or 'children', not {kind!r}")
        self._server_path(path)
        self._engine.check_usable()
        return WatchStream(self._subs, path, kind)

    def add_watch(self, path: str, *, recursive: bool = True) -> PersistentWatchStream:
        """A persistent (``recursive=False``) or persistent recursive watch (ZK >= 3.6).

        Use ``async for ev in zk.add_watch(path)``, or ``stream = await zk.add_watch(path)``
        to be sure it is armed before going on. An event of type NONE marks each time the
        watch was (re-)armed and each time the consumer fell more than
        ``max_queued_events`` behind: re-read the state you keep then.

        Raises:
            InvalidPathError, ClientClosedError.
        """
        self._server_path(path)
        self._engine.check_usable()
        return PersistentWatchStream(self._subs, path, recursive)

    def __repr__(self) -> str:
        machine = self._engine.machine
        sid = f"0x{machine.session_id:x}" if machine.session_id else "none"
        return (f"<AsyncClient {self._engine.connect_string!r} state={self.state.value} "
                f"session={sid}>")
