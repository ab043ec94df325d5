"""The agent's views of services: a ServiceCache each, plus an index for blocking queries.

A view's *index* starts at 1 and goes up by one whenever what the API would answer for
the service changes: an instance added, removed or updated, or the stale flag flipping.
``GET /v1/services/{name}?index=N&wait=30s`` waits while the index is still N (a
Consul-style blocking query). Indexes are per view and restart at 1 with the agent; a
client that sees the index go backwards starts over from 0.

A view keeps serving its last instances while ZooKeeper is unreachable (``stale`` true);
``age`` is how long ago the view was last known current: 0 while live, the time since
the connection dropped, or since the snapshot was written when it was never live.

On-demand views (names not in ``[agent] watch``) are a resource any local caller can ask
for, so they are bounded: the HTTP API opens one only for a service that exists (or, with
ZooKeeper unreachable, that has a snapshot), :meth:`Views.sweep` closes those idle for
``idle_timeout`` and those whose service was deleted (with their snapshot file), and when
``max_on_demand`` are open the least recently used idle one makes room for a new one. A
view in use (a blocking query or an event stream) is never evicted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence

from .._tasks import TaskOwner
from ..discovery import Provider, Resynced, ServiceCache, ServiceDiscovery, ServiceInstance
from ..errors import ClientClosedError, ZooKeeperError
from .logs import logger

__all__ = ("ServiceView", "Views", "MAX_NAME_LENGTH", "snapshot_path")

_MAX_PROVIDERS = 32

#: The longest service name the API accepts (a view's snapshot file name embeds it, and
#: file names stop at 255 bytes).
MAX_NAME_LENGTH = 200


def snapshot_path(snapshot_dir: str, format_name: str, name: str) -> str:
    """Where the cache of service ``name`` keeps its snapshot (the ServiceCache naming)."""
    return os.path.join(snapshot_dir, f"cache-{format_name}-{name}.json")


class ServiceView:
    """One service's cache with an index, waiters, staleness and providers."""

    def __init__(self, name: str, cache: ServiceCache, *, pinned: bool) -> None:
        self.name = name
        self.cache = cache
        #: True for services listed in ``[agent] watch``; False for on-demand views.
        self.pinned = pinned
        self.index = 1
        #: monotonic time of the last request that used the view (LRU and idle eviction)
        self.last_used = time.monotonic()
        #: requests holding the view open right now (blocking queries, event streams)
        self.users = 0
        self._signal = asyncio.Event()
        # After a (re)connect the view is not current until the cache has re-read it.
        self._resyncing = False
        self._state = self._current()
        self._went_stale_at: float | None = None
        self._was_live = not cache.stale
        self._providers: OrderedDict[tuple[str, str | None, tuple[str, ...]], Provider] = (
            OrderedDict()
        )
        self._closed = False
        # The view owns the task following its cache: close() ends it, and a failure
        # in it is logged (the view would otherwise freeze while looking live).
        self._tasks = TaskOwner(f"view {name}", logger)
        self._tasks.spawn(self._follow(), name="follow")

    # --- state ---------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """True once the view holds data (live, or from the snapshot)."""
        return self.cache.updated_at is not None

    @property
    def stale(self) -> bool:
        """True while the view may be out of date: no session, served from the snapshot,
        or reconnected but not re-read yet."""
        return self.cache.stale or self._resyncing

    def mark_resyncing(self) -> None:
        """The session (re)connected: stale until the cache's next full re-read."""
        if self.loaded:
            self._resyncing = True

    def instances(self, tags: Sequence[str] = ()) -> list[ServiceInstance]:
        """The instances (having every tag in ``tags``), sorted by id."""
        found = self.cache.instances(self.name)
        if tags:
            found = [i for i in found if all(t in i.tags for t in tags)]
        return found

    def age(self, now: float | None = None) -> float | None:
        """Seconds since the view was last known current (None: no data at all)."""
        now = time.time() if now is None else now
        if not self.stale:
            return 0.0
        since = self._went_stale_at if self._was_live else self.cache.updated_at
        return None if since is None else max(0.0, now - since)

    def refresh(self) -> None:
        """Re-evaluate the view; bump the index and wake waiters if the answer changed."""
        stale = self.stale
        if stale and self._was_live and self._state[1] is False:
            self._went_stale_at = time.time()
        if not stale:
            self._was_live = True
        state = self._current()
        if state != self._state:
            self._state = state
            self.index += 1
            self._wake()

    def _current(self) -> tuple[tuple[ServiceInstance, ...], bool, bool]:
        return (tuple(self.cache.instances(self.name)), self.stale, self.loaded)

    def _wake(self) -> None:
        signal, self._signal = self._signal, asyncio.Event()
        signal.set()

    async def wait(self, index: int, timeout: float) -> None:
        """Return when the index is not ``index`` any more, or after ``timeout`` seconds."""
        if index != self.index or self._closed:
            return
        signal = self._signal
        try:
            async with asyncio.timeout(timeout):
                await signal.wait()
        except TimeoutError:
            pass

    async def changes(self, index: int) -> int:
        """Wait (without a time limit) until the index differs from ``index``; return it."""
        while index == self.index and not self._closed:
            await self._signal.wait()
        return self.index

    @property
    def closed(self) -> bool:
        return self._closed

    def touch(self) -> None:
        """A request used the view: it is the most recently used now."""
        self.last_used = time.monotonic()

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """Hold the view for a long request: not evicted while held."""
        self.users += 1
        self.touch()
        try:
            yield
        finally:
            self.users -= 1
            self.touch()

    # --- providers -------------------------------------------------------------------

    def provider(self, strategy: str, zone: str | None, tags: tuple[str, ...]) -> Provider:
        """A provider (kept, so round robin goes round) for these options.

        Raises:
            ConfigurationError: unknown strategy, or ``zone`` strategy without a zone.
        """
        key = (strategy, zone, tags)
        provider = self._providers.get(key)
        if provider is None:

            def current() -> Sequence[ServiceInstance]:
                return self.instances(tags)

            provider = Provider(current, strategy, zone=zone, name=self.name)
            self._providers[key] = provider
            while len(self._providers) > _MAX_PROVIDERS:
                self._providers.popitem(last=False)
        else:
            self._providers.move_to_end(key)
        return provider

    # --- lifecycle -------------------------------------------------------------------

    async def _follow(self) -> None:
        try:
            async for change in self.cache.changes():
                if isinstance(change, Resynced) and not change.stale:
                    self._resyncing = False
                self.refresh()
        except ClientClosedError:
            pass

    async def close(self) -> None:
        """Stop following and close the cache; waiters return at once."""
        if self._closed:
            return
        self._closed = True
        await self._tasks.aclose()
        try:
            await self.cache.close()
        except ZooKeeperError:
            pass
        self._wake()


class Views:
    """The views the agent keeps: watched ones from the config, and on-demand ones.

    ``on_close(name)`` is called for every view closed (the agent drops its metrics
    series there); ``exists(name)`` answers whether the service is registered (None: it
    cannot tell now), for :meth:`sweep`.
    """

    def __init__(
        self,
        discovery: ServiceDiscovery,
        *,
        max_on_demand: int = 256,
        idle_timeout: float = 300.0,
        snapshot_dir: str | None = None,
        on_close: Callable[[str], None] | None = None,
    ) -> None:
        self._discovery = discovery
        self._views: dict[str, ServiceView] = {}
        self._lock = asyncio.Lock()
        self.max_on_demand = max_on_demand
        self.idle_timeout = idle_timeout
        self._snapshot_dir = snapshot_dir
        self._on_close = on_close

    def get(self, name: str) -> ServiceView | None:
        return self._views.get(name)

    def all(self) -> list[ServiceView]:
        return [self._views[n] for n in sorted(self._views)]

    def on_demand_count(self) -> int:
        return sum(1 for v in self._views.values() if not v.pinned)

    def has_snapshot(self, name: str) -> bool:
        """True when a snapshot of ``name`` is on disk (a view can be served from it)."""
        if self._snapshot_dir is None:
            return False
        return os.path.isfile(snapshot_path(self._snapshot_dir, self._discovery.format.name,
                                            name))

    async def open(self, name: str, *, pinned: bool) -> ServiceView:
        """The view of ``name``, started if new (never waits for ZooKeeper).

        A new on-demand view over ``max_on_demand`` first evicts the least recently
        used idle one.

        Raises:
            ClientClosedError: the client is closed.
            ConfigurationError: a name the registry format cannot express.
            LookupError: ``max_on_demand`` on-demand views are open and all in use.
        """
        evicted: ServiceView | None = None
        async with self._lock:
            view = self._views.get(name)
            if view is None:
                if not pinned and self.on_demand_count() >= self.max_on_demand:
                    evicted = self._least_recently_used()
                    if evicted is None:
                        raise LookupError("every on-demand view is in use")
                    del self._views[evicted.name]
                # One discovery shares one cache per name, which is what we want here.
                cache = await self._discovery.cache(name, wait=False)
                view = ServiceView(name, cache, pinned=pinned)
                self._views[name] = view
            elif pinned:
                view.pinned = True
            view.touch()
        if evicted is not None:
            await self._closed_view(evicted)
        return view

    def _least_recently_used(self) -> ServiceView | None:
        idle = [v for v in self._views.values() if not v.pinned and v.users == 0]
        return min(idle, key=lambda v: v.last_used, default=None)

    async def close_view(self, name: str, *, forget_snapshot: bool = False) -> None:
        """Stop keeping the view of ``name`` (a no-op when there is none); with
        ``forget_snapshot`` also delete its snapshot file."""
        async with self._lock:
            view = self._views.pop(name, None)
        if view is not None:
            await self._closed_view(view)
        if forget_snapshot and self._snapshot_dir is not None:
            with contextlib.suppress(OSError):
                os.unlink(
                    snapshot_path(self._snapshot_dir, self._discovery.format.name, name)
                )

    async def _closed_view(self, view: ServiceView) -> None:
        await view.close()
        if self._on_close is not None:
            self._on_close(view.name)

    async def sweep(
        self, exists: Callable[[str], Awaitable[bool | None]], now: float | None = None
    ) -> list[str]:
        """Close idle on-demand views, and those of services no longer registered.

        ``exists(name)`` says whether the service is registered (None: unknown now, so
        the view stays). Returns the names closed. Never raises.
        """
        now = time.monotonic() if now is None else now
        closed: list[str] = []
        for view in list(self._views.values()):
            if view.pinned or view.users or view.closed:
                continue
            gone = False
            if not view.instances():
                try:
                    gone = await exists(view.name) is False
                except ZooKeeperError:  # a failed lookup proves nothing: keep the view
                    gone = False
            if gone or now - view.last_used >= self.idle_timeout:
                current = self._views.get(view.name)
                if current is not view or view.pinned or view.users:
                    continue  # re-pinned or picked up while we looked
                await self.close_view(view.name, forget_snapshot=gone)
                closed.append(view.name)
        return closed

    def refresh_all(self, *, reconnected: bool = False) -> None:
        for view in self._views.values():
            if reconnected:
                view.mark_resyncing()
            view.refresh()

    async def close(self) -> None:
        views = list(self._views.values())
        self._views.clear()
        await asyncio.gather(*(v.close() for v in views), return_exceptions=True)
