"""The node operations of AsyncClient (create, get, set, delete, ...): each validates its
arguments, builds its request (:mod:`zkwarden.protocol.ops`) and hands it to the engine.

A part of :class:`zkwarden._aio.client.AsyncClient`'s API, kept apart so that the client
module holds the lifecycle, states and watches (as :mod:`zkwarden.sync._operations` does
for the blocking client).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from .. import paths as _paths
from ..errors import InvalidArgumentError, NoNodeError, ZooKeeperError
from ..protocol import ops
from ..protocol.records import ClientInfo
from ..types import ACL, Stat, WatcherType
from . import compound
from .engine import SessionEngine
from .options import auth_bytes
from .requests import ReplySink, create_request
from .transaction import Transaction

__all__ = ("NodeOperations", "DirectKind")

DirectKind = Literal["get", "exists", "get_children"]
_DIRECT_READS: dict[str, Callable[[str], ops.Request]] = {
    "get": ops.GetData, "exists": ops.Exists, "get_children": ops.GetChildren,
}


class NodeOperations:
    """Node operations on ``self._engine`` (AsyncClient sets it and ``_default_acl``)."""

    _engine: SessionEngine
    _default_acl: tuple[ACL, ...]

    @property
    def chroot(self) -> str:
        """The chroot of the connect string ("" for none)."""
        return self._engine.chroot

    @property
    def closed(self) -> bool:
        """True once close() has begun."""
        return self._engine.closing

    # --- helpers for operations and transactions -----------------------------------------

    def _server_path(self, path: str, *, sequential: bool = False) -> str:
        _paths.validate(path, sequential=sequential)
        return _paths.add_chroot(self._engine.chroot, path)

    def _check_data(self, data: object) -> bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidArgumentError(f"data must be bytes, not {type(data).__name__}")
        return bytes(data)

    # --- without a coroutine: the blocking facade's hot path (zkwarden.sync) ------------

    def _read_request(self, kind: DirectKind, path: str) -> ops.Request:
        """The request of ``get``/``exists``/``get_children`` of ``path`` (any thread).

        Raises:
            InvalidPathError.
        """
        return _DIRECT_READS[kind](self._server_path(path))

    def _set_request(self, path: str, data: bytes, version: int) -> ops.Request:
        """The request of ``set`` (any thread).

        Raises:
            InvalidPathError, InvalidArgumentError.
        """
        return ops.SetData(self._server_path(path), self._check_data(data), version)

    def _send_now(self, request: ops.Request, path: str, sink: ReplySink) -> bool:
        """Loop thread only: send ``request`` at once if connected, its outcome (as the
        coroutine operation would give it, but NoNodeError for an absent ``exists``) going
        to ``sink`` synchronously; False (nothing sent) when not connected. Raises nothing.
        """
        return self._engine.send_now(request, path, sink)

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
            created, stat = await self._engine.call(request, path)
        except NoNodeError:
            if not makepath or _paths.parent(path) == "/":
                raise
            await self.ensure_path(_paths.parent(path))
            created, stat = await self._engine.call(request, path)
        created = _paths.strip_chroot(self._engine.chroot, created)
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
        return create_request(
            self._server_path(path, sequential=sequence), self._check_data(data),
            ephemeral=ephemeral, sequence=sequence, container=container, ttl=ttl,
            acl=tuple(acl) if acl is not None else self._default_acl, include_stat=include_stat,
        )

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
        await compound.ensure_path(
            self._engine, path, tuple(acl) if acl is not None else self._default_acl
        )

    async def get(self, path: str) -> tuple[bytes, Stat]:
        """Return the node's data and Stat.

        Raises:
            NoNodeError, NoAuthError, InvalidPathError, ConnectionLossError,
            SessionExpiredError, ClientClosedError.
        """
        result: tuple[bytes, Stat] = await self._engine.call(ops.GetData(self._server_path(path)), path)
        return result

    async def set(self, path: str, data: bytes, version: int = -1) -> Stat:
        """Set the node's data (``version=-1``: any version); return the new Stat.

        Raises:
            NoNodeError, BadVersionError, NoAuthError, InvalidPathError,
            InvalidArgumentError, DataTooLargeError, ConnectionLossError,
            SessionExpiredError, ClientClosedError.
        """
        data = self._check_data(data)
        stat: Stat = await self._engine.call(ops.SetData(self._server_path(path), data, version), path)
        return stat

    async def delete(self, path: str, version: int = -1, recursive: bool = False) -> None:
        """Delete the node; with ``recursive=True`` its whole subtree (no error if absent).

        Raises:
            NoNodeError (not recursive), NotEmptyError, BadVersionError, NoAuthError,
            InvalidPathError, ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        server_path = self._server_path(path)
        if not recursive:
            await self._engine.call(ops.Delete(server_path, version), path)
            return
        await compound.delete_recursive(self._engine, path, version)

    async def exists(self, path: str) -> Stat | None:
        """Return the node's Stat, or None when it does not exist.

        Raises:
            NoAuthError, InvalidPathError, ConnectionLossError, SessionExpiredError,
            ClientClosedError.
        """
        try:
            stat: Stat = await self._engine.call(ops.Exists(self._server_path(path)), path)
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
            return await self._engine.call(ops.GetChildren2(server_path), path)
        return await self._engine.call(ops.GetChildren(server_path), path)

    async def get_many(self, paths: Sequence[str]) -> list[tuple[bytes, Stat] | ZooKeeperError]:
        """Read many nodes in one pipelined round; per path the (data, Stat) or the error.

        Raises:
            InvalidPathError, ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        server_paths = [self._server_path(p) for p in paths]
        if not server_paths:
            return []
        return await compound.read_many(self._engine, paths, server_paths)

    async def multi_read(self, paths: Sequence[str], *, children: bool = False) -> list[Any]:
        """One multiRead request (ZooKeeper >= 3.6): getData (or getChildren) per path.

        Each entry is the result or the error for that path (not atomic).

        Raises:
            InvalidPathError, ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        op_type = ops.GetChildren if children else ops.GetData
        request = ops.MultiRead([op_type(self._server_path(p)) for p in paths])
        results: list[Any] = await self._engine.call(request, paths[0] if paths else "/")
        return results

    async def sync(self, path: str) -> str:
        """Make the connected server catch up with the leader for ``path``.

        Raises:
            InvalidPathError, ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        result: str = await self._engine.call(ops.Sync(self._server_path(path)), path)
        return _paths.strip_chroot(self._engine.chroot, result)

    async def get_acl(self, path: str) -> tuple[list[ACL], Stat]:
        """Return the node's ACL and Stat.

        Raises:
            NoNodeError, NoAuthError, InvalidPathError, ConnectionLossError,
            SessionExpiredError, ClientClosedError.
        """
        result: tuple[list[ACL], Stat] = await self._engine.call(ops.GetACL(self._server_path(path)), path)
        return result

    async def set_acl(self, path: str, acls: Sequence[ACL], version: int = -1) -> Stat:
        """Replace the node's ACL (``version`` is the ACL version, aversion).

        Raises:
            NoNodeError, BadVersionError, InvalidACLError, NoAuthError, InvalidPathError,
            ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        stat: Stat = await self._engine.call(
            ops.SetACL(self._server_path(path), tuple(acls), version), path
        )
        return stat

    async def get_ephemerals(self, prefix: str = "/") -> list[str]:
        """This session's ephemeral nodes whose path starts with ``prefix`` (ZK >= 3.6).

        Raises:
            ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        server_prefix = _paths.add_chroot(self._engine.chroot, prefix) if prefix != "/" else (
            self._engine.chroot or "/")
        found: list[str] = await self._engine.call(ops.GetEphemerals(server_prefix), prefix)
        return sorted(_paths.strip_chroot(self._engine.chroot, p) for p in found)

    async def get_all_children_number(self, path: str) -> int:
        """The number of all descendants of ``path`` (ZK >= 3.6).

        Raises:
            NoNodeError, InvalidPathError, ConnectionLossError, SessionExpiredError,
            ClientClosedError.
        """
        n: int = await self._engine.call(ops.GetAllChildrenNumber(self._server_path(path)), path)
        return n

    async def whoami(self) -> list[ClientInfo]:
        """The identities of this connection (ZK >= 3.7).

        Raises:
            ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        info: list[ClientInfo] = await self._engine.call(ops.WhoAmI(), "/")
        return info

    async def add_auth(self, scheme: str, credentials: str | bytes) -> None:
        """Authenticate this connection (and every later one) with ``scheme``.

        Raises:
            AuthFailedError, DataTooLargeError (credentials too large for one request),
            ConfigurationError (not a str/bytes pair), ConnectionLossError,
            SessionExpiredError, ClientClosedError.
        """
        (entry,) = auth_bytes([(scheme, credentials)])
        await self._engine.add_auth(*entry)
        if entry not in self._engine.auth:
            self._engine.auth.append(entry)

    async def check_watches(self, path: str, watcher_type: WatcherType = WatcherType.ANY) -> None:
        """Raise NoWatcherError unless this session has such a watch on ``path``.

        Raises:
            NoWatcherError, InvalidPathError, ConnectionLossError, ClientClosedError.
        """
        await self._engine.call(ops.CheckWatches(self._server_path(path), int(watcher_type)), path)

    async def remove_watches(self, path: str, watcher_type: WatcherType = WatcherType.ANY) -> None:
        """Remove this session's watches of a type on ``path`` from the server.

        Streams on that path stop receiving events from the server; prefer closing the
        streams (``aclose()``), which does this when the last one on a path goes.

        Raises:
            NoWatcherError, MarshallingError (types 4/5 on ZooKeeper < 3.9),
            InvalidPathError, ConnectionLossError, ClientClosedError.
        """
        await self._engine.call(ops.RemoveWatches(self._server_path(path), int(watcher_type)), path)

    def transaction(self) -> Transaction:
        """A transaction: ``async with zk.transaction() as t: t.create(...); ...``.

        It commits when the block exits without an exception; ``await t.commit()`` commits
        explicitly and returns the per-operation results.
        """
        return Transaction(self)

    async def _multi(self, requests: Sequence[ops.Request], first_path: str) -> list[Any]:
        results: list[Any] = await self._engine.call(ops.Multi(list(requests)), first_path)
        return results
