"""ServiceCache: a view of a service's instances that never misses a change.

One persistent recursive watch on the service node (ZooKeeper >= 3.6) feeds the view;
each batch of events costs one pipelined read of the nodes that were created or changed
and none for removals. After every reconnect the server replays nothing for persistent
watches, so the cache re-reads everything and emits the difference plus ``Resynced``;
after a session expiry it re-subscribes on the new session and does the same. Changes
are told apart by czxid (a node deleted and re-created during a partition is a new
registration, even at version 0) and mzxid, never by version alone.

The last good view is kept through SUSPENDED and LOST (marked stale), and, with a
snapshot directory, written to disk after every change and served at start-up when
ZooKeeper cannot be reached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from .. import paths as _paths
from .._aio.client import AsyncClient
from .._aio.watch import PersistentWatchStream
from .._tasks import TaskOwner
from ..errors import (
    ClientClosedError,
    ConnectionLossError,
    NoNodeError,
    SessionExpiredError,
    ZooKeeperError,
)
from ..types import ClientState, ClientStateChange, EventType, Stat, WatchEvent
from .formats import RegistryFormat
from .instance import ServiceInstance
from .snapshot import read_snapshot, write_snapshot

__all__ = ("ServiceCache", "Added", "Removed", "Updated", "Resynced", "CacheChange")

log = logging.getLogger("zkwarden.discovery")

# Pause after an unexpected failure of the watch loop (a bug, or a format whose decode
# raises): doubled per failure in a row, capped, so a failure that repeats costs one
# log record per pause, not a busy loop.
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


class _Subscriber:
    def __init__(self) -> None:
        self.queue: deque[CacheChange] = deque()
        self.wakeup = asyncio.Event()
        self.error: ZooKeeperError | None = None


class ServiceCache:
    """A live view of one service (``name``), or of every service under the base path.

    Created and started by :meth:`ServiceDiscovery.cache`; use :meth:`instances` (always
    current), :meth:`changes` (a stream), and :meth:`close`.
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
        self._view: dict[_Key, _Entry] = {}
        self._subscribers: list[_Subscriber] = []
        self._stream: PersistentWatchStream | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks = TaskOwner(f"cache {self._root}", log)
        self._closed = False
        self._from_snapshot = False
        self._needs_resync = True
        self._ready = asyncio.Event()
        self.updated_at: float | None = None
        #: reads issued for instance data (to measure reads per change)
        self.reads = 0
        self.resyncs = 0

    # --- public ------------------------------------------------------------------------

    @property
    def stale(self) -> bool:
        """True when the view may be out of date: no session, served from a snapshot, or
        reconnected but not yet re-read (changes made meanwhile are not in it yet)."""
        return self._from_snapshot or self._needs_resync or not self._client.connected

    def instances(self, name: str | None = None) -> list[ServiceInstance]:
        """The current instances (of ``name``, for a whole-registry cache), sorted by id."""
        return sorted(
            (e.instance for (svc, _), e in self._view.items() if name is None or svc == name),
            key=lambda i: (i.name, i.id),
        )

    def names(self) -> list[str]:
        """The services in the view."""
        return sorted({svc for svc, _ in self._view})

    async def changes(self) -> AsyncIterator[CacheChange]:
        """The current view (``Resynced``) first, then every change in order.

        Ends with ClientClosedError when the cache or its client is closed.
        """
        sub = _Subscriber()
        sub.queue.append(Resynced(tuple(self.instances()), self.stale))
        self._subscribers.append(sub)
        try:
            while True:
                if sub.queue:
                    yield sub.queue.popleft()
                    continue
                if sub.error is not None:
                    raise sub.error
                sub.wakeup.clear()
                await sub.wakeup.wait()
        finally:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

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
        """
        self.start_soon()
        if wait:
            await self._ready.wait()
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
            self._client.add_listener(self._on_state)
            if self._snapshot_dir is not None and not self._client.connected:
                self._load_snapshot()
            self._task = self._tasks.spawn(self._run(), name="watch")

    async def close(self) -> None:
        """Stop watching; subscribers' streams end with ClientClosedError. Never raises."""
        if self._closed:
            return
        self._closed = True
        self._client.remove_listener(self._on_state)
        await self._tasks.aclose()
        await self._drop_stream()
        self._end_subscribers(ClientClosedError("cache closed"))
        if self._on_close is not None:
            self._on_close(self)

    # --- internals -----------------------------------------------------------------------

    async def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                await stream.aclose()
            except ZooKeeperError:
                pass

    def _end_subscribers(self, exc: ZooKeeperError) -> None:
        for sub in self._subscribers:
            sub.error = exc
            sub.wakeup.set()

    def _publish(self, changes: list[CacheChange]) -> None:
        if not changes:
            return
        self.updated_at = time.time()
        for sub in self._subscribers:
            sub.queue.extend(changes)
            sub.wakeup.set()
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

    def _on_state(self, change: ClientStateChange) -> None:
        if change.state in (ClientState.SUSPENDED, ClientState.LOST):
            self._needs_resync = True
            for sub in self._subscribers:
                sub.wakeup.set()

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

    def _decode(self, key: _Key, data: bytes) -> ServiceInstance | None:
        return self._format.decode(key[0], key[1], data)

    async def _run(self) -> None:
        client = self._client
        pause = _FAILURE_PAUSE
        while not self._closed:
            try:
                await self._client.wait_connected()
                stream = client.add_watch(self._root, recursive=True)
                self._stream = stream
                await stream.arm()
                async for event in stream:
                    batch = [event, *stream.take_pending()]
                    if any(e.type is EventType.NONE for e in batch):
                        await self._resync()  # armed or re-armed: re-read everything
                    else:
                        await self._apply(batch)
            except SessionExpiredError:
                log.info("cache %s: session expired; re-subscribing", self._root)
            except ConnectionLossError:
                await asyncio.sleep(0.05)
            except ClientClosedError as exc:
                self._end_subscribers(exc)
                return
            except Exception:
                # Not a ZooKeeper outcome (a bug, or a format's decode raising): say so
                # with the traceback, keep the view marked stale, and start over with a
                # full re-read after a growing pause; a cache that stopped silently would
                # serve a frozen view as live.
                log.exception("cache %s: watch loop failed; retrying in %.1fs",
                              self._root, pause)
                await self._drop_stream()  # its watch must not outlive this round
                self._needs_resync = True
                for sub in self._subscribers:
                    sub.wakeup.set()
                await asyncio.sleep(pause)
                pause = min(pause * 2, _FAILURE_PAUSE_MAX)
                continue
            finally:
                self._stream = None
            pause = _FAILURE_PAUSE

    async def _list(self) -> dict[_Key, str]:
        """Every instance node under the root: key → full path."""
        client = self._client
        found: dict[_Key, str] = {}
        services: list[tuple[str, str]]
        if self.name is not None:
            services = [(self.name, self._root)]
        else:
            try:
                nodes = await client.get_children(self._base)
            except NoNodeError:
                nodes = []
            services = []
            for node in nodes:
                svc = self._format.service_name(node)
                if svc is not None:
                    services.append((svc, self._format.service_path(self._base, svc)))
        listings = await asyncio.gather(
            *(client.get_children(path) for _, path in services), return_exceptions=True
        )
        for (svc, path), children in zip(services, listings, strict=True):
            if isinstance(children, NoNodeError):
                continue
            if isinstance(children, BaseException):
                raise children
            for child in children:
                found[(svc, child)] = _paths.join(path, child)
        return found

    async def _read(self, targets: dict[_Key, str]) -> dict[_Key, tuple[bytes, Stat] | None]:
        keys = list(targets)
        self.reads += len(keys)
        results = await self._client.get_many([targets[k] for k in keys])
        out: dict[_Key, tuple[bytes, Stat] | None] = {}
        for key, result in zip(keys, results, strict=True):
            out[key] = result if isinstance(result, tuple) else None
        return out

    async def _resync(self) -> None:
        listing = await self._list()
        fresh = await self._read(listing)
        new_view: dict[_Key, _Entry] = {}
        for key, result in fresh.items():
            if result is None:
                continue
            data, stat = result
            inst = self._decode(key, data)
            if inst is not None:
                new_view[key] = _Entry(inst, stat.czxid, stat.mzxid)
        old_view = self._view
        if (
            self._protect is not None
            and old_view
            and len(new_view) < self._protect * len(old_view)
        ):
            self._needs_resync = False  # re-read; the old view is kept on purpose
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
        self._needs_resync = False
        self.resyncs += 1
        changes.append(Resynced(tuple(self.instances()), False))
        self._publish(changes)
        self._ready.set()

    async def _apply(self, events: list[WatchEvent]) -> None:
        # Coalesce per node: what matters is the node's state now, read once.
        touched: dict[_Key, str] = {}
        deleted: set[_Key] = set()
        root_changed = False
        for event in events:
            if event.path == self._root or (self.name is None and self._locate(event.path) is None):
                if event.type in (EventType.NODE_DELETED, EventType.NODE_CREATED):
                    root_changed = root_changed or event.path == self._root
                continue
            key = self._locate(event.path)
            if key is None:
                continue
            if event.type is EventType.NODE_DELETED:
                deleted.add(key)
                touched.pop(key, None)
            elif event.type in (EventType.NODE_CREATED, EventType.NODE_DATA_CHANGED):
                deleted.discard(key)
                touched[key] = event.path
        changes: list[CacheChange] = []
        for key in deleted:
            entry = self._view.pop(key, None)
            if entry is not None:
                changes.append(Removed(entry.instance))
        if touched:
            fresh = await self._read(touched)
            for key, result in fresh.items():
                old = self._view.get(key)
                if result is None:  # gone again before we read it
                    if old is not None:
                        del self._view[key]
                        changes.append(Removed(old.instance))
                    continue
                data, stat = result
                if old is not None and old.czxid == stat.czxid and old.mzxid >= stat.mzxid:
                    continue  # nothing newer than what we hold
                inst = self._decode(key, data)
                if inst is None:
                    if old is not None:
                        del self._view[key]
                        changes.append(Removed(old.instance))
                    continue
                self._view[key] = _Entry(inst, stat.czxid, stat.mzxid)
                if old is None:
                    changes.append(Added(inst))
                elif old.czxid != stat.czxid:
                    changes.append(Removed(old.instance))
                    changes.append(Added(inst))
                elif old.instance != inst:
                    changes.append(Updated(old.instance, inst))
        if root_changed and not self._view:
            pass  # the service node came or went; its instances arrive as their own events
        self._publish(changes)
