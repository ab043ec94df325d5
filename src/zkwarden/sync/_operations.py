"""The blocking operations of :class:`~zkwarden.Client`: one AsyncClient coroutine each.

Each method builds the AsyncClient coroutine in the caller's thread and runs it on the
client's loop thread (``_call``), adding only the per-call ``timeout``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ..retry import RetryPolicy

from .._aio.client import AsyncClient
from .._aio.ensemble import EnsembleConfig
from .._aio.operations import DirectKind
from ..errors import NoNodeError, ZooKeeperError
from ..protocol.ops import Request
from ..protocol.records import ClientInfo
from ..types import ACL, Stat, WatcherType
from ._dispatch import Channel, Dispatcher
from .transaction import Transaction

__all__ = ("Operations",)

T = TypeVar("T")


class Operations:
    """Mixin of :class:`~zkwarden.Client`: the ZooKeeper operations, blocking."""

    _aio: AsyncClient
    _dispatcher: Dispatcher

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None, what: str) -> T:
        raise NotImplementedError  # provided by Client

    def _check_fork(self) -> None:
        raise NotImplementedError  # provided by Client

    def _run_direct(
        self, request: Request, path: str, fallback: Callable[[], Coroutine[Any, Any, T]],
        timeout: float | None, what: str,
    ) -> T:
        raise NotImplementedError  # provided by Client

    def _read(
        self, kind: DirectKind, path: str, fallback: Callable[[], Coroutine[Any, Any, T]],
        timeout: float | None,
    ) -> T:
        """A read: connected, sent without a coroutine or a task (the common case, about
        half the facade's cost per call); otherwise ``fallback()`` with the usual wait."""
        if not self._aio.connected:
            return self._call(fallback(), timeout, kind)
        self._check_fork()
        return self._run_direct(self._aio._read_request(kind, path), path, fallback, timeout,
                                kind)

    def create(
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
        timeout: float | None = None,
    ) -> Any:
        """Create a node; return its actual path (with the sequence suffix, if any).

        ``ttl`` (seconds) makes a persistent TTL node; ``container`` a container node;
        ``makepath`` creates missing parents. With ``include_stat=True`` return
        ``(path, Stat)``.

        Raises:
            NodeExistsError, NoNodeError (parent missing), NoChildrenForEphemeralsError,
            InvalidACLError, NoAuthError, UnimplementedError (TTL disabled on the server),
            InvalidPathError, InvalidArgumentError, DataTooLargeError,
            RequestTimeoutError, ConnectionLossError, SessionExpiredError,
            ClientClosedError, ForkedClientError.
        """
        return self._call(
            self._aio.create(path, data, ephemeral=ephemeral, sequence=sequence,
                             container=container, ttl=ttl, acl=acl, makepath=makepath,
                             include_stat=include_stat),
            timeout, "create",
        )

    def ensure_path(
        self, path: str, acl: Sequence[ACL] | None = None, *, timeout: float | None = None
    ) -> None:
        """Create ``path`` and any missing parents (persistent, empty); no error if present.

        Raises:
            NoAuthError, InvalidPathError, RequestTimeoutError, ConnectionLossError,
            SessionExpiredError, ClientClosedError, ForkedClientError.
        """
        self._call(self._aio.ensure_path(path, acl), timeout, "ensure_path")

    def get(self, path: str, *, timeout: float | None = None) -> tuple[bytes, Stat]:
        """Return the node's data and Stat.

        Raises:
            NoNodeError, NoAuthError, InvalidPathError, RequestTimeoutError,
            ConnectionLossError, SessionExpiredError, ClientClosedError, ForkedClientError.
        """
        return self._read("get", path, lambda: self._aio.get(path), timeout)

    def set(
        self, path: str, data: bytes, version: int = -1, *, timeout: float | None = None
    ) -> Stat:
        """Set the node's data (``version=-1``: any version); return the new Stat.

        Raises:
            NoNodeError, BadVersionError, NoAuthError, InvalidPathError,
            InvalidArgumentError, DataTooLargeError, RequestTimeoutError,
            ConnectionLossError, SessionExpiredError, ClientClosedError, ForkedClientError.
        """
        if not self._aio.connected:
            return self._call(self._aio.set(path, data, version), timeout, "set")
        self._check_fork()
        return self._run_direct(self._aio._set_request(path, data, version), path,
                                lambda: self._aio.set(path, data, version), timeout, "set")

    def delete(
        self,
        path: str,
        version: int = -1,
        recursive: bool = False,
        *,
        timeout: float | None = None,
    ) -> None:
        """Delete the node; with ``recursive=True`` its whole subtree (no error if absent).

        Raises:
            NoNodeError (not recursive), NotEmptyError, BadVersionError, NoAuthError,
            InvalidPathError, RequestTimeoutError, ConnectionLossError,
            SessionExpiredError, ClientClosedError, ForkedClientError.
        """
        self._call(self._aio.delete(path, version, recursive), timeout, "delete")

    def exists(self, path: str, *, timeout: float | None = None) -> Stat | None:
        """Return the node's Stat, or None when it does not exist.

        Raises:
            NoAuthError, InvalidPathError, RequestTimeoutError, ConnectionLossError,
            SessionExpiredError, ClientClosedError, ForkedClientError.
        """
        try:
            return self._read("exists", path, lambda: self._aio.exists(path), timeout)
        except NoNodeError:  # the direct path's answer for an absent node
            return None

    def get_children(
        self, path: str, *, include_stat: bool = False, timeout: float | None = None
    ) -> Any:
        """Return the child names (unsorted); with ``include_stat=True``
        ``(children, Stat)``.

        Raises:
            NoNodeError, NoAuthError, InvalidPathError, RequestTimeoutError,
            ConnectionLossError, SessionExpiredError, ClientClosedError, ForkedClientError.
        """
        if include_stat:
            return self._call(self._aio.get_children(path, include_stat=True), timeout,
                              "get_children")
        return self._read("get_children", path, lambda: self._aio.get_children(path), timeout)

    def get_many(
        self, paths: Sequence[str], *, timeout: float | None = None
    ) -> list[tuple[bytes, Stat] | ZooKeeperError]:
        """Read many nodes in one pipelined round; per path the (data, Stat) or the error.

        Raises:
            InvalidPathError, RequestTimeoutError, ConnectionLossError,
            SessionExpiredError, ClientClosedError, ForkedClientError.
        """
        return self._call(self._aio.get_many(list(paths)), timeout, "get_many")

    def multi_read(
        self, paths: Sequence[str], *, children: bool = False, timeout: float | None = None
    ) -> list[Any]:
        """One multiRead request (ZooKeeper >= 3.6): getData (or getChildren) per path;
        each entry is the result or the error for that path (not atomic).

        Raises:
            InvalidPathError, RequestTimeoutError, ConnectionLossError,
            SessionExpiredError, ClientClosedError, ForkedClientError.
        """
        return self._call(self._aio.multi_read(list(paths), children=children), timeout,
                          "multi_read")

    def sync(self, path: str, *, timeout: float | None = None) -> str:
        """Make the connected server catch up with the leader for ``path``.

        Raises:
            InvalidPathError, RequestTimeoutError, ConnectionLossError,
            SessionExpiredError, ClientClosedError, ForkedClientError.
        """
        return self._call(self._aio.sync(path), timeout, "sync")

    def get_acl(self, path: str, *, timeout: float | None = None) -> tuple[list[ACL], Stat]:
        """Return the node's ACL and Stat.

        Raises:
            NoNodeError, NoAuthError, InvalidPathError, RequestTimeoutError,
            ConnectionLossError, SessionExpiredError, ClientClosedError, ForkedClientError.
        """
        return self._call(self._aio.get_acl(path), timeout, "get_acl")

    def set_acl(
        self, path: str, acls: Sequence[ACL], version: int = -1, *,
        timeout: float | None = None,
    ) -> Stat:
        """Replace the node's ACL (``version`` is the ACL version, aversion).

        Raises:
            NoNodeError, BadVersionError, InvalidACLError, NoAuthError, InvalidPathError,
            RequestTimeoutError, ConnectionLossError, SessionExpiredError,
            ClientClosedError, ForkedClientError.
        """
        return self._call(self._aio.set_acl(path, list(acls), version), timeout, "set_acl")

    def get_ephemerals(self, prefix: str = "/", *, timeout: float | None = None) -> list[str]:
        """This session's ephemeral nodes whose path starts with ``prefix`` (ZK >= 3.6).

        Raises:
            RequestTimeoutError, ConnectionLossError, SessionExpiredError,
            ClientClosedError, ForkedClientError.
        """
        return self._call(self._aio.get_ephemerals(prefix), timeout, "get_ephemerals")

    def get_all_children_number(self, path: str, *, timeout: float | None = None) -> int:
        """The number of all descendants of ``path`` (ZK >= 3.6).

        Raises:
            NoNodeError, InvalidPathError, RequestTimeoutError, ConnectionLossError,
            SessionExpiredError, ClientClosedError, ForkedClientError.
        """
        return self._call(self._aio.get_all_children_number(path), timeout,
                          "get_all_children_number")

    def get_config(
        self,
        watch: Callable[[EnsembleConfig], object] | None = None,
        *,
        timeout: float | None = None,
    ) -> EnsembleConfig:
        """The ensemble's configuration (``/zookeeper/config``, never under the chroot):
        members, roles, client addresses, version.

        ``watch``: called with every later configuration, in order, on a dispatcher thread
        (it may block; later configs then wait, coalesced to the newest), until the client
        closes or it returns False (see :meth:`zkwarden.AsyncClient.get_config`).

        Raises:
            InvalidArgumentError (a malformed config), NoAuthError, RequestTimeoutError,
            ConnectionLossError, SessionExpiredError, ClientClosedError, ForkedClientError.
        """
        if watch is None:
            return self._call(self._aio.get_config(), timeout, "get_config")
        self._check_fork()
        user = watch
        channel = Channel(f"config watch {user!r}", coalesce=True)
        stopped = False

        def run(config: EnsembleConfig) -> None:  # on a dispatcher thread
            nonlocal stopped
            if not stopped and user(config) is False:
                stopped = True

        def on_loop(config: EnsembleConfig) -> bool:  # never user code on the loop
            if stopped:
                return False
            self._dispatcher.post(channel, run, config, droppable=True)
            return True

        return self._call(self._aio.get_config(on_loop), timeout, "get_config")

    def reconfig(
        self,
        joining: Sequence[str] | None = None,
        leaving: Sequence[int | str] | None = None,
        new_members: Sequence[str] | None = None,
        from_config: int = -1,
        *,
        timeout: float | None = None,
    ) -> EnsembleConfig:
        """Change the membership; return the configuration committed (see
        :meth:`zkwarden.AsyncClient.reconfig`).

        Raises:
            InvalidArgumentError (nothing to change, or both styles), BadVersionError
            (``from_config`` is stale), ReconfigInProgressError, NewConfigNoQuorumError,
            ReconfigDisabledError, NoAuthError, BadArgumentsError, RequestTimeoutError,
            ConnectionLossError, SessionExpiredError, ClientClosedError, ForkedClientError.
        """
        return self._call(self._aio.reconfig(joining, leaving, new_members, from_config),
                          timeout, "reconfig")

    def whoami(self, *, timeout: float | None = None) -> list[ClientInfo]:
        """The identities of this connection (ZK >= 3.7).

        Raises:
            RequestTimeoutError, ConnectionLossError, SessionExpiredError,
            ClientClosedError, ForkedClientError.
        """
        return self._call(self._aio.whoami(), timeout, "whoami")

    def add_auth(
        self, scheme: str, credentials: str | bytes, *, timeout: float | None = None
    ) -> None:
        """Authenticate this connection (and every later one) with ``scheme``.

        Raises:
            AuthFailedError, DataTooLargeError (credentials too large for one request),
            ConfigurationError (not a str/bytes pair), RequestTimeoutError,
            ConnectionLossError, SessionExpiredError, ClientClosedError, ForkedClientError.
        """
        self._call(self._aio.add_auth(scheme, credentials), timeout, "add_auth")

    def check_watches(
        self, path: str, watcher_type: WatcherType = WatcherType.ANY, *,
        timeout: float | None = None,
    ) -> None:
        """Raise NoWatcherError unless this session has such a watch on ``path``.

        Raises:
            NoWatcherError, InvalidPathError, RequestTimeoutError, ConnectionLossError,
            ClientClosedError, ForkedClientError.
        """
        self._call(self._aio.check_watches(path, watcher_type), timeout, "check_watches")

    def remove_watches(
        self, path: str, watcher_type: WatcherType = WatcherType.ANY, *,
        timeout: float | None = None,
    ) -> None:
        """Remove this session's watches of a type on ``path`` from the server (prefer
        ``handle.cancel()``, which does this when the last watch on a path goes).

        Raises:
            NoWatcherError, MarshallingError (types 4/5 on ZooKeeper < 3.9),
            InvalidPathError, RequestTimeoutError, ConnectionLossError,
            ClientClosedError, ForkedClientError.
        """
        self._call(self._aio.remove_watches(path, watcher_type), timeout, "remove_watches")

    def retry(self, fn: Callable[..., Any], /, *args: Any, policy: RetryPolicy | None = None,
              timeout: float | None = None, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` (a blocking call, in this thread) retried on connection
        loss within ``policy`` (:class:`zkwarden.retry.RetryPolicy`); operations not safe to
        repeat are refused (:mod:`zkwarden.retry`). ``timeout`` caps the policy's deadline.

        Raises:
            InvalidArgumentError: ``fn`` is an operation not safe to repeat.
            ConnectionLossError: still failing when the deadline or attempts ran out.
            RequestTimeoutError: an attempt's own timeout passed (retried like a loss).
            ClientClosedError: the client was closed meanwhile.
            ForkedClientError: called in a child process after fork().
            ZooKeeperError: anything else ``fn`` raises, at once.
        """
        from ..retry import retry_blocking

        self._check_fork()
        return retry_blocking(self, fn, *args, policy=policy, timeout=timeout, **kwargs)

    def transaction(self) -> Transaction:
        """A transaction: ``with zk.transaction() as t: t.create(...); ...`` commits when
        the block exits without an exception; ``t.commit()`` commits explicitly.

        Raises:
            ForkedClientError: called in a child process after fork().
        """
        self._check_fork()
        return Transaction(self, self._aio.transaction())
