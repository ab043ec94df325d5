"""What the watch drivers (:mod:`._persistent`, :mod:`._oneshot`) use of a TreeCache.

The drivers feed the view the cache owns; typing them against this Protocol instead of
``TreeCache`` keeps imports one way (tree -> drivers -> core), and mypy checks that
TreeCache still provides all of it wherever it hands itself to a driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .._aio.client import AsyncClient
    from .._tasks import TaskOwner
    from ..errors import ZooKeeperError
    from ..types import Stat, WatchEvent
    from .events import TreeChange

__all__ = ("CacheCore",)


class CacheCore(Protocol):
    """The view and the hooks a driver works with (TreeCache implements them)."""

    _client: AsyncClient
    _tasks: TaskOwner
    _closed: bool
    _degraded: str | None
    _max_depth: int | None
    _max_nodes: int
    _nodes: dict[str, tuple[bytes, Stat]]
    _want_full: bool
    reads: int

    @property
    def path(self) -> str: ...

    def _depth(self, path: str) -> int: ...

    def _wanted(self, path: str) -> bool: ...

    def _end(self, exc: ZooKeeperError) -> None: ...

    def _mark_stale(self) -> None: ...

    def _set_degraded(self, reason: str) -> None: ...

    def _drop(self, path: str) -> list[TreeChange]: ...

    def _merge(self, path: str,
               result: tuple[bytes, Stat] | ZooKeeperError) -> list[TreeChange]: ...

    def _publish(self, changes: list[TreeChange]) -> None: ...

    def _resynced(self, *, truncated: bool) -> None: ...

    async def _sync_if_moved(self) -> None: ...

    async def _resync(self) -> None: ...

    async def _apply(self, events: list[WatchEvent]) -> None: ...
