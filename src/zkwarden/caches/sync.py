"""The blocking form of the caches, for code that uses :class:`zkwarden.Client`.

Same classes, same rules, taking a ``Client``: the asyncio cache runs on the client's
loop thread (one implementation, not two); reads of the view run there too, so they never
see it half-updated; change callbacks run on the client's dispatcher thread, in order,
never on the loop.

    from zkwarden import Client
    from zkwarden.caches.sync import TreeCache

    with Client("127.0.0.1:2181") as zk:
        tree = TreeCache(zk, "/config").start()
        data, stat = tree.get("/config/db")
        handle = tree.subscribe(print)   # Resynced first, then every change

A callback that falls behind by more than ``max_queued_callbacks`` changes gets one
``Resynced`` (the view at that moment) instead of the changes it missed (changes queued
on the loop at that moment may follow it: applying them again is harmless).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from types import MappingProxyType
from typing import Any, TypeVar

from ..sync._dispatch import Channel
from ..sync._watch import DEFAULT_MAX_QUEUED, WatchHandle
from ..sync.client import Client
from ..types import Stat
from . import node as _node
from . import tree as _tree
from .events import Resynced, TreeChange

__all__ = ("TreeCache", "NodeCache")

log = logging.getLogger("zkwarden.caches")

T = TypeVar("T")


async def _call(fn: Callable[[], T]) -> T:
    # Run on the loop thread: the asyncio cache belongs to that loop.
    return fn()


class _CacheHandle(WatchHandle):
    """A WatchHandle pumping a cache's changes, bounded with a ``Resynced`` on overflow."""

    def __init__(self, client: Client, path: str, callback: Callable[[TreeChange], object],
                 on_error: Callable[[Exception], object] | None,
                 current: Callable[[], Resynced], limit: int) -> None:
        super().__init__(client, client._dispatcher, path, "cache",
                         callback, on_error)  # type: ignore[arg-type]
        self._current = current
        self._channel = Channel(f"cache {path}", limit=limit, overflow=self._resync)

    def _resync(self) -> tuple[Callable[..., object], tuple[Any, ...]]:
        # On the loop thread (where changes are posted), so the view is consistent.
        log.warning("cache %s: callback fell behind; delivering the whole view instead",
                    self.path)
        return self._callback, (self._current(),)


class _Base:
    _cache: _tree.TreeCache | _node.NodeCache

    def __init__(self, client: Client) -> None:
        self._client = client

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self._client.run_coroutine(coro, timeout=timeout)

    @property
    def path(self) -> str:
        """The cached path."""
        return self._cache.path

    @property
    def stale(self) -> bool:
        """True when the view may be out of date (see the asyncio class)."""
        return self._cache.stale

    @property
    def loaded(self) -> bool:
        """True once the view holds data read from ZooKeeper (or from the snapshot)."""
        return self._cache.loaded

    def _resynced(self) -> Resynced:
        raise NotImplementedError

    def subscribe(
        self,
        callback: Callable[[TreeChange], object],
        *,
        on_error: Callable[[Exception], object] | None = None,
        max_queued_callbacks: int = DEFAULT_MAX_QUEUED,
        timeout: float | None = None,
    ) -> WatchHandle:
        """Call ``callback(change)``: first ``Resynced`` (the view now), then every change.

        Runs on the client's dispatcher thread, in order; ``handle.cancel()`` stops it.
        When the cache or client closes, ``on_error(ClientClosedError)`` is called once.

        Raises:
            RequestTimeoutError, ClientClosedError.
        """
        handle = _CacheHandle(self._client, self.path, callback, on_error, self._resynced,
                              max_queued_callbacks)

        async def subscribe() -> None:
            await handle.subscribe(self._cache.changes())  # type: ignore[arg-type]

        self._run(subscribe(), timeout)
        return handle

    def close(self, *, timeout: float | None = None) -> None:
        """Stop the cache; subscriptions end with ClientClosedError. Never raises."""
        if not self._client.closed:
            self._run(self._cache.close(), timeout)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the view is loaded.

        Raises:
            RequestTimeoutError: not within ``timeout``.
            ClientClosedError, UnimplementedError: the cache ended first.
        """
        self._run(self._cache.wait_ready(), timeout)


class TreeCache(_Base):
    """Blocking :class:`zkwarden.caches.TreeCache` (same options).

    Raises:
        InvalidPathError, ConfigurationError: as the asyncio form.
        ClientClosedError: the client is closed.
    """

    def __init__(self, client: Client, path: str, **options: Any) -> None:
        super().__init__(client)
        aio = client.async_client
        self._tree = self._run(_call(lambda: _tree.TreeCache(aio, path, **options)))
        self._cache = self._tree

    def start(self, *, wait: bool = True, timeout: float | None = None) -> TreeCache:
        """Arm the watch and read the tree (``wait=False``: in the background).

        Raises:
            RequestTimeoutError: not loaded within ``timeout`` (it keeps loading).
            ClientClosedError, UnimplementedError: as the asyncio form.
        """
        self._run(_call(self._tree.start_soon))
        if wait:
            self.wait_ready(timeout)
        return self

    @property
    def degraded(self) -> str | None:
        """Why the view is incomplete (``max_nodes`` reached), or None."""
        return self._tree.degraded

    def get(self, path: str) -> tuple[bytes, Stat] | None:
        """``(data, Stat)`` of ``path`` in the view, or None."""
        return self._run(_call(lambda: self._tree.get(path)))

    def children(self, path: str) -> list[str]:
        """The names of ``path``'s children in the view, sorted."""
        return self._run(_call(lambda: self._tree.children(path)))

    def nodes(self) -> dict[str, tuple[bytes, Stat]]:
        """A copy of the whole view: path → (data, Stat)."""
        return self._run(_call(self._tree.nodes))

    def _resynced(self) -> Resynced:
        return Resynced(MappingProxyType(self._tree.nodes()), self._tree.stale)

    def __enter__(self) -> TreeCache:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class NodeCache(_Base):
    """Blocking :class:`zkwarden.caches.NodeCache` (same options).

    Raises:
        InvalidPathError, ConfigurationError: as the asyncio form.
        ClientClosedError: the client is closed.
    """

    def __init__(self, client: Client, path: str, **options: Any) -> None:
        super().__init__(client)
        aio = client.async_client
        self._node = self._run(_call(lambda: _node.NodeCache(aio, path, **options)))
        self._cache = self._node

    def start(self, *, wait: bool = True, timeout: float | None = None) -> NodeCache:
        """Arm the watch and read the node (``wait=False``: in the background).

        Raises:
            RequestTimeoutError: not loaded within ``timeout`` (it keeps loading).
            ClientClosedError, UnimplementedError: as the asyncio form.
        """
        self._run(_call(self._node.start_soon))
        if wait:
            self.wait_ready(timeout)
        return self

    def get(self) -> tuple[bytes, Stat] | None:
        """``(data, Stat)`` of the node, or None while it does not exist."""
        return self._run(_call(self._node.get))

    def _resynced(self) -> Resynced:
        found = self._node.get()
        return Resynced(MappingProxyType({self.path: found} if found is not None else {}),
                        self._node.stale)

    def __enter__(self) -> NodeCache:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
