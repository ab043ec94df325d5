"""AsyncClient: the operations, the reconnect supervisor, and state listeners.

The session rules live in :mod:`zkwarden.protocol.session`; this module does the I/O
they ask for. One supervisor task per client opens connections (capped exponential
backoff with full jitter over the shuffled host list), primes them (auth, SetWatches),
and waits for them to drop. Requests never spawn tasks: a request is encoded, queued on
the connection's batched writer, and its future resolved from ``data_received``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Literal

from .. import paths as _paths
from ..errors import (
    ClientClosedError,
    ConnectionLossError,
    InvalidArgumentError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    SessionExpiredError,
    ZooKeeperError,
)
from ..protocol import ops
from ..protocol.ops import WatchKind
from ..protocol.records import ClientInfo
from ..types import (
    ACL,
    OPEN_ACL_UNSAFE,
    CreateMode,
    Stat,
    WatcherType,
)
from .engine import SessionEngine, _auth_bytes, _live_clients
from .transaction import Transaction
from .transport import close_session_blocking
from .watch import PersistentWatchStream, Subscriber, WatchStream

__all__ = ("AsyncClient",)

log = logging.getLogger("zkwarden.client")

class AsyncClient(SessionEngine):
    """An asyncio ZooKeeper client.

    ``hosts`` is a connect string (``"h1:2181,h2:2181/chroot"``). Times are seconds.
    Use ``await client.start()`` / ``await client.close()``, or ``async with``.

    Raises (constructor):
        ConfigurationError: bad connect string, timeout or auth spec.
    """

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
