"""ServiceCache: a view of a service's instances that never misses a change.

Built on :class:`zkwarden.caches.TreeCache`, which holds the one implementation of the
cache rules: one persistent recursive watch on the service node (ZooKeeper >= 3.6), one
read per created or changed instance node and none per removal, a full re-read plus the
difference plus ``Resynced`` after every reconnect, after a session expiry (re-subscribed
on the new session) and after the watch stream overflowed; instances told apart by
czxid (a node deleted and re-created during a partition is a new registration, even at
version 0) and mzxid, never by version alone; bounded queues per subscriber. On servers
without persistent watches (ZooKeeper < 3.6), or with ``watch_mode="one-shot"``, the tree
cache runs on one-shot watches with the same guarantees (each read arms its watch, the
instances re-listed after every children event); ``sync_on_reconnect`` makes a re-read
on another member start with ``sync()`` (see :mod:`zkwarden.caches.tree`).

This module adds what is particular to services: it follows the tree cache's changes
(a subscriber like any other, in a task this cache owns), decodes instance nodes with the
registry format, and keeps ``{(service, node): instance}``. The last good view is kept
through SUSPENDED and LOST (marked stale), and, with a snapshot directory, written to
disk (the discovery snapshot format) after every change and served at start-up when
ZooKeeper cannot be reached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from .. import paths as _paths
from .._aio.client import AsyncClient
from .._tasks import TaskOwner
from ..caches import NodeAdded, NodeRemoved, NodeUpdated, TreeCache, WatchMode
from ..caches import Resynced as TreeResynced
from ..caches._feed import DEFAULT_MAX_QUEUED_CHANGES, ChangeFeed
from ..caches.events import TreeChange
from ..caches.tree import DEFAULT_MAX_NODES
from ..errors import ClientClosedError, ZooKeeperError
from ..types import Stat
from .formats import RegistryFormat
from .instance import ServiceInstance
from .snapshot import read_snapshot, write_snapshot

__all__ = ("ServiceCache", "Added", "Removed", "Updated", "Resynced", "CacheChange")

log = logging.getLogger("zkwarden.discovery")

# Pause after an unexpected failure while following the tree (a format whose decode
# raises): doubled per failure in a row, capped, so a failure that repeats costs one log
# record per pause, not a busy loop.
_FAILURE_PAUSE = 0.1
_FAILURE_PAUSE_MAX = 10.0


@dataclass(frozen=True, slots=True)
class Added:
    """An instance appeared."""

    instance: ServiceInstance


@dataclass(frozen=True, slots=True)
class Removed:
    """An instance went away."""

    instance: ServiceInstance


@dataclass(frozen=True, slots=True)
class Updated:
    """An instance's data changed in place."""

    old: ServiceInstance
    new: ServiceInstance


@dataclass(frozen=True, slots=True)
class Resynced:
    """The whole view, after a full re-read (and first of all, for a new subscriber).

    ``stale`` is True when the view is not known to be current (no session, or served
    from a snapshot).
    """

    instances: tuple[ServiceInstance, ...]
    stale: bool = False


CacheChange = Added | Removed | Updated | Resynced


@dataclass(frozen=True, slots=True)
class _Entry:
    instance: ServiceInstance
    czxid: int
    mzxid: int


_Key = tuple[str, str]  # (service name, node name)


class ServiceCache:
    """A live view of one service (``name``), or of every service under the base path.

    Created and started by :meth:`ServiceDiscovery.cache`; use :meth:`instances` (always
    current), :meth:`changes` (a stream), and :meth:`close`. ``max_nodes`` bounds the
    nodes held; ``watch_mode`` ("auto", "persistent", "one-shot") and
    ``sync_on_reconnect``: as for :class:`zkwarden.caches.TreeCache`.
    """

    def __init__(
        self,
        client: AsyncClient,
        format: RegistryFormat,
        base_path: str,
        name: str | None,
        *,
        snapshot_dir: str | None = None,
        protect_threshold: float | None = None,
        on_close: Callable[[ServiceCache], None] | None = None,
        max_nodes: int = DEFAULT_MAX_NODES,
        watch_mode: WatchMode = "auto",
        sync_on_reconnect: bool = False,
    ) -> None:
        self._client = client
        self._format = format
        self._base = base_path
        self.name = name
        self._root = format.service_path(base_path, name) if name is not None else base_path
        self._snapshot_dir = snapshot_dir
        self._snapshot_file = f"cache-{format.name}-{name or '_all'}.json"
        self._protect = protect_threshold
        self._on_close = on_close
        # The tree's one subscriber is this cache: a rolling restart publishes a whole batch
        # of changes at once (10,000 for batches of 5,000 instances), and falling behind
        # would cost a rebuild from a copy of the view; it may queue what the view may hold.
        queued = max(DEFAULT_MAX_QUEUED_CHANGES, 2 * max_nodes)
        if name is not None:  # the service node and its children, the instances
            self._tree = TreeCache(client, self._root, max_depth=1, max_nodes=max_nodes,
                                   watch_mode=watch_mode, sync_on_reconnect=sync_on_reconnect,
                                   max_queued_changes=queued)
        else:  # every service: only the paths that lead to instance nodes
            self._tree = TreeCache(client, self._root, accept=self._wanted, max_nodes=max_nodes,
                                   watch_mode=watch_mode, sync_on_reconnect=sync_on_reconnect,
                                   max_queued_changes=queued)
        self._view: dict[_Key, _Entry] = {}
        self._feed: ChangeFeed[CacheChange] = ChangeFeed(
            f"cache {self._root}", self._current, limit=DEFAULT_MAX_QUEUED_CHANGES, logger=log
        )
        self._tasks = TaskOwner(f"cache {self._root}", log)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._ended: ZooKeeperError | None = None
        self._from_snapshot = False
        self._broken = False  # following failed; a re-read is under way
        self._seen_resyncs = 0  # the tree's full re-reads this view has taken in
        self._ready = asyncio.Event()
        self.updated_at: float | None = None
        self.resyncs = 0

    # --- public ------------------------------------------------------------------------

    @property
    def reads(self) -> int:
        """Reads issued for instance data (to measure reads per change)."""
        return self._tree.reads

    @property
    def watch_mode_in_use(self) -> str | None:
        """"persistent" or "one-shot" once watching (see :class:`TreeCache`)."""
        return self._tree.watch_mode_in_use

    @property
    def syncs(self) -> int:
        """sync() calls made before re-reads on another member (``sync_on_reconnect``)."""
        return self._tree.syncs

    @property
    def stale(self) -> bool:
        """True when the view may be out of date: no session, served from a snapshot, or
        reconnected but not yet re-read (changes made meanwhile are not in it yet)."""
        return (self._from_snapshot or self._broken or self._tree.stale
                or self._seen_resyncs != self._tree.resyncs)

    def instances(self, name: str | None = None) -> list[ServiceInstance]:
        """The current instances (of ``name``, for a whole-registry cache), sorted by id."""
        return sorted(
            (e.instance for (svc, _), e in self._view.items() if name is None or svc == name),
            key=lambda i: (i.name, i.id),
        )

    def names(self) -> list[str]:
        """The services in the view."""
        return sorted({svc for svc, _ in self._view})

    def changes(self) -> AsyncIterator[CacheChange]:
        """The current view (``Resynced``) first, then every change in order.

        A subscriber that falls far behind gets one ``Resynced`` instead of what it
        missed. Ends with ClientClosedError when the cache or its client is closed.
        """
        return self._feed.subscribe(lambda: self._ended)

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the view holds live (or snapshot) data.

        Raises:
            TimeoutError (builtin): not ready within ``timeout``.
        """
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    async def start(self, *, wait: bool = True) -> ServiceCache:
        """Subscribe and read the view (from the snapshot if ZooKeeper is unreachable).

        Raises:
            ClientClosedError: the cache is closed.
            UnimplementedError: the server has no persistent watches (ZooKeeper < 3.6) and
                ``watch_mode="persistent"``.
        """
        self.start_soon()
        if wait:
            await self._ready.wait()
            if self._ended is not None and not self._view:
                raise self._ended
        return self

    def start_soon(self) -> None:
        """Start the cache's watch loop without waiting for the view (idempotent).

        For callers that cannot await (a provider made in synchronous code): the loop
        runs as a task this cache owns, ended by :meth:`close`.

        Raises:
            ClientClosedError: the cache is closed.
            RuntimeError (builtin): no running event loop.
        """
        if self._closed:
            raise ClientClosedError("cache closed")
        if self._task is None:
            if self._snapshot_dir is not None and not self._client.connected:
                self._load_snapshot()
            self._tree.start_soon()
            self._task = self._tasks.spawn(self._follow(), name="follow")

    async def close(self) -> None:
        """Stop watching; subscribers' streams end with ClientClosedError. Never raises."""
        if self._closed:
            return
        self._closed = True
        await self._tasks.aclose()
        await self._tree.close()
        self._end(ClientClosedError("cache closed"))
        if self._on_close is not None:
            self._on_close(self)

    # --- internals -----------------------------------------------------------------------

    def _current(self) -> Resynced:
        return Resynced(tuple(self.instances()), self.stale)

    def _end(self, exc: ZooKeeperError) -> None:
        if self._ended is None:
            self._ended = exc
        self._feed.end(exc)
        self._ready.set()

    def _publish(self, changes: list[CacheChange]) -> None:
        if not changes:
            return
        self.updated_at = time.time()
        self._feed.publish(changes)
        if self._snapshot_dir is not None:
            self._write_snapshot()

    def _write_snapshot(self) -> None:
        assert self._snapshot_dir is not None
        view: dict[str, list[ServiceInstance]] = {}
        for (svc, _), entry in self._view.items():
            view.setdefault(svc, []).append(entry.instance)
        try:
            write_snapshot(self._snapshot_dir, view, filename=self._snapshot_file)
        except OSError as exc:
            log.warning("could not write discovery snapshot: %s", exc)

    def _load_snapshot(self) -> None:
        assert self._snapshot_dir is not None
        snap = read_snapshot(self._snapshot_dir, filename=self._snapshot_file)
        if snap is None:
            return
        for svc, instances in snap.services.items():
            for inst in instances:
                self._view[(svc, self._format.instance_node_name(inst))] = _Entry(inst, -1, -1)
        self._from_snapshot = True
        self.updated_at = snap.written_at
        log.info("serving %d instances from the snapshot written %.0fs ago (stale)",
                 len(self._view), snap.age())
        self._ready.set()

    def _wanted(self, path: str) -> bool:
        """For a whole-registry cache: a service node, a node on the way from it to its
        instances, or an instance node (nothing else is read)."""
        base = self._base.rstrip("/")
        service = self._format.service_name(path[len(base) + 1:].split("/", 1)[0])
        if service is None:
            return False
        try:
            service_path = self._format.service_path(self._base, service)
        except ZooKeeperError:
            return False
        return (service_path == path or service_path.startswith(path + "/")
                or _paths.parent(path) == service_path)

    def _locate(self, path: str) -> _Key | None:
        """(service, node name) for an instance node path, None for anything else."""
        if self.name is not None:
            parent, node = _paths.split(path)
            return (self.name, node) if parent == self._root and node else None
        if not path.startswith(self._base.rstrip("/") + "/"):
            return None
        rest = path[len(self._base.rstrip("/")) + 1 :]
        service_node = rest.split("/", 1)[0]
        service = self._format.service_name(service_node)
        if service is None:
            return None
        parent, node = _paths.split(path)
        try:
            service_path = self._format.service_path(self._base, service)
        except ZooKeeperError:
            return None
        return (service, node) if parent == service_path and node else None

    async def _follow(self) -> None:
        """Take in the tree cache's changes; after a failure, start over from its view."""
        pause = _FAILURE_PAUSE
        while not self._closed:
            try:
                async for change in self._tree.changes():
                    self._take(change)
                    pause = _FAILURE_PAUSE
            except ZooKeeperError as exc:  # the tree ended: closed, or no persistent watches
                self._end(exc)
                return
            except Exception:
                # Not a ZooKeeper outcome (a format's decode raising, a bug): say so with
                # the traceback, keep the view marked stale, and start over from the tree's
                # whole view after a growing pause; a cache that stopped silently would
                # serve a frozen view as live.
                log.exception("cache %s: watch loop failed; retrying in %.1fs",
                              self._root, pause)
                self._broken = True
                self._feed.wake()
                await asyncio.sleep(pause)
                pause = min(pause * 2, _FAILURE_PAUSE_MAX)

    def _take(self, change: TreeChange) -> None:
        if isinstance(change, TreeResynced):
            if self._tree.loaded:  # else nothing read yet: keep what the snapshot gave
                self._rebuild(change.nodes, change.stale)
            return
        key = self._locate(change.path)
        if key is None:
            return
        if isinstance(change, NodeRemoved):
            old = self._view.pop(key, None)
            self._publish([Removed(old.instance)] if old is not None else [])
        elif isinstance(change, NodeAdded | NodeUpdated):
            self._publish(self._upsert(key, change.data, change.stat))

    def _upsert(self, key: _Key, data: bytes, stat: Stat) -> list[CacheChange]:
        old = self._view.get(key)
        inst = self._format.decode(key[0], key[1], data)
        if inst is None:  # not (or no longer) an instance this format understands
            if old is None:
                return []
            del self._view[key]
            return [Removed(old.instance)]
        self._view[key] = _Entry(inst, stat.czxid, stat.mzxid)
        if old is None:
            return [Added(inst)]
        if old.czxid != stat.czxid:
            return [Removed(old.instance), Added(inst)]
        if old.instance != inst:
            return [Updated(old.instance, inst)]
        return []

    def _rebuild(self, nodes: Mapping[str, tuple[bytes, Stat]], stale: bool) -> None:
        new_view: dict[_Key, _Entry] = {}
        for path, (data, stat) in nodes.items():
            key = self._locate(path)
            if key is None:
                continue
            inst = self._format.decode(key[0], key[1], data)
            if inst is not None:
                new_view[key] = _Entry(inst, stat.czxid, stat.mzxid)
        old_view = self._view
        resyncs = self._tree.resyncs
        if (
            self._protect is not None
            and old_view
            and len(new_view) < self._protect * len(old_view)
        ):
            # Re-read; the old view is kept on purpose.
            if not stale:
                self._seen_resyncs = resyncs
            self._broken = False
            log.warning(
                "cache %s: registry shrank from %d to %d instances (below the protection "
                "threshold %.0f%%); keeping the previous view",
                self._root, len(old_view), len(new_view), self._protect * 100,
            )
            self._ready.set()
            return
        changes: list[CacheChange] = []
        for key, entry in old_view.items():
            new = new_view.get(key)
            if new is None or new.czxid != entry.czxid:
                changes.append(Removed(entry.instance))
        for key, entry in new_view.items():
            old = old_view.get(key)
            if old is None or old.czxid != entry.czxid:
                changes.append(Added(entry.instance))
            elif old.mzxid != entry.mzxid and old.instance != entry.instance:
                changes.append(Updated(old.instance, entry.instance))
        self._view = new_view
        self._from_snapshot = False
        self._broken = False
        if not stale:
            self._seen_resyncs = resyncs
        self.resyncs += 1
        changes.append(self._current())
        self._publish(changes)
        self._ready.set()
