"""NodeCache: a live view of one node (kazoo/Curator ``NodeCache``).

A :class:`TreeCache` of depth 0: one persistent (non-recursive) watch on the node, one
read per change, a re-read and ``Resynced`` after every reconnect, czxid/mzxid to tell
a re-created node from an updated one, the last value kept (stale) through outages. The
node may be absent, appear, go away and come back: the cache follows it throughout.
On servers without persistent watches (or with ``watch_mode="one-shot"``) it holds one
one-shot data watch, re-armed by every read in the same request (see
:mod:`zkwarden.caches.tree` for ``watch_mode`` and ``sync_on_reconnect``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from .._aio.client import AsyncClient
from ..types import Stat
from ._feed import DEFAULT_MAX_QUEUED_CHANGES
from .events import TreeChange
from .tree import TreeCache, WatchMode

__all__ = ("NodeCache",)


class NodeCache:
    """A live view of the node at ``path`` (present or not).

    ``watch_mode`` ("auto", "persistent", "one-shot") and ``sync_on_reconnect``: as for
    :class:`TreeCache`.

    Raises:
        InvalidPathError: ``path`` is not a valid absolute path.
        ConfigurationError: ``max_queued_changes`` is not a positive integer, or an
            unknown ``watch_mode``.
    """

    def __init__(
        self,
        client: AsyncClient,
        path: str,
        *,
        snapshot_dir: str | None = None,
        max_queued_changes: int = DEFAULT_MAX_QUEUED_CHANGES,
        watch_mode: WatchMode = "auto",
        sync_on_reconnect: bool = False,
    ) -> None:
        self._tree = TreeCache(client, path, max_depth=0, snapshot_dir=snapshot_dir,
                               max_queued_changes=max_queued_changes, watch_mode=watch_mode,
                               sync_on_reconnect=sync_on_reconnect)

    @property
    def path(self) -> str:
        """The cached node's path."""
        return self._tree.path

    @property
    def stale(self) -> bool:
        """True when the value may be out of date (see :attr:`TreeCache.stale`)."""
        return self._tree.stale

    @property
    def loaded(self) -> bool:
        """True once the node has been read (or loaded from the snapshot)."""
        return self._tree.loaded

    @property
    def updated_at(self) -> float | None:
        """When the value last changed (seconds since the epoch), None before any data."""
        return self._tree.updated_at

    @property
    def watch_mode_in_use(self) -> str | None:
        """"persistent" or "one-shot" once watching (see :class:`TreeCache`)."""
        return self._tree.watch_mode_in_use

    @property
    def reads(self) -> int:
        """Reads issued for the node."""
        return self._tree.reads

    def get(self) -> tuple[bytes, Stat] | None:
        """``(data, Stat)`` of the node, or None while it does not exist."""
        return self._tree.get(self._tree.path)

    def changes(self) -> AsyncIterator[TreeChange]:
        """``Resynced`` (with the node, or empty) first, then ``NodeAdded`` /
        ``NodeUpdated`` / ``NodeRemoved`` as the node is created, changed, deleted.

        Raises (from iteration):
            ClientClosedError: the cache or its client is closed.
            UnimplementedError: the server has no persistent watches (< 3.6) and
                ``watch_mode="persistent"``.
        """
        return self._tree.changes()

    async def start(self, *, wait: bool = True, timeout: float | None = None) -> NodeCache:
        """Arm the watch and read the node.

        Raises:
            ClientClosedError, UnimplementedError, TimeoutError (builtin): as
            :meth:`TreeCache.start`.
        """
        await self._tree.start(wait=wait, timeout=timeout)
        return self

    def start_soon(self) -> None:
        """Start without waiting (idempotent).

        Raises:
            ClientClosedError: the cache is closed.
            RuntimeError (builtin): no running event loop.
        """
        self._tree.start_soon()

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the node has been read.

        Raises:
            TimeoutError (builtin), ClientClosedError, UnimplementedError.
        """
        await self._tree.wait_ready(timeout)

    async def close(self) -> None:
        """Stop watching; streams end with ClientClosedError. Never raises."""
        await self._tree.close()

    async def __aenter__(self) -> NodeCache:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<NodeCache {self.path!r} {'stale' if self.stale else 'live'}>"
