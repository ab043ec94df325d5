"""TreeCache: a live view of a subtree that never misses a change.

The cache rules (DESIGN rules 1, 2 and 8), in one place for every cache of zkwarden (the
discovery ServiceCache is built on this one):

* one persistent recursive watch on the root (ZooKeeper >= 3.6; non-recursive when
  ``max_depth=0``), armed before the first read, so no change falls between them;
  or, with ``watch_mode="one-shot"`` (and by default when the server refuses addWatch),
  one-shot watches armed by every read in the same request: see :mod:`._oneshot`;
* per batch of events, one pipelined read of each node created or changed, none for a
  removal;
* after every (re)arm of the watch (start, reconnect, new session after an expiry) and
  after the watch stream overflowed (an event of type NONE), a full re-read, a diff
  against the view and ``Resynced``: persistent watches get no catch-up events;
* nodes are told apart by czxid (deleted and re-created is ``NodeRemoved`` then
  ``NodeAdded``, even at the same version and data) and mzxid (``NodeUpdated``), never by
  version alone; a re-read also refreshes a node's Stat when only pzxid (its children)
  moved, without an event (the children have their own);
* the last view is kept through SUSPENDED and LOST and marked ``stale``; with a
  ``snapshot_dir`` it is written to disk after every change and served (stale) at start
  when ZooKeeper cannot be reached;
* memory is bounded: each subscriber's queue holds at most ``max_queued_changes``
  (beyond, it gets one ``Resynced`` instead), and the view at most ``max_nodes`` nodes;
  the cache's own persistent watch queues up to ``2 * max_nodes`` events (at least the
  client's ``max_queued_events``) before a burst costs a full re-read.

When the subtree holds more than ``max_nodes`` nodes (in scope of ``max_depth`` and
``accept``), the view stops growing: new nodes are not added (changes and removals of
nodes in the view still are), the cache is ``degraded`` (so ``stale``), and it logs one
warning. It recovers by itself: once removals bring the view under 90% of the limit it
re-reads everything, and every full re-read that fits clears ``degraded``.

``watch_mode``: "auto" (the default) uses a persistent watch and falls back to one-shot
watches when the server answers addWatch with UnimplementedError (ZooKeeper < 3.6);
"persistent" never falls back (``start()`` raises UnimplementedError there); "one-shot"
never tries addWatch. :attr:`TreeCache.watch_mode_in_use` says which one runs.

``sync_on_reconnect``: before the full re-read that follows a reconnect to a different
member, ``sync(root)`` makes that member catch up with the leader, so the re-read never
shows an older state than the previous member did (linearizable where it matters). It
costs one round trip through the leader per such reconnect (``syncs`` and
``sync_seconds`` count them), nothing otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from types import MappingProxyType
from typing import Literal

from .. import paths as _paths
from .._aio.client import AsyncClient
from .._tasks import TaskOwner
from ..errors import (
    ClientClosedError,
    ConfigurationError,
    ConnectionLossError,
    NoNodeError,
    SessionExpiredError,
    UnimplementedError,
    ZooKeeperError,
)
from ..hosts import HostPort
from ..types import ClientState, ClientStateChange, EventType, Stat, WatchEvent
from ._feed import DEFAULT_MAX_QUEUED_CHANGES, ChangeFeed
from ._oneshot import OneShotDriver
from ._persistent import PersistentDriver
from ._snapshot import read_tree_snapshot, write_tree_snapshot
from .events import NodeAdded, NodeRemoved, NodeUpdated, Resynced, TreeChange

__all__ = ("TreeCache", "DEFAULT_MAX_NODES", "WatchMode")

log = logging.getLogger("zkwarden.caches")

_NODE_EVENTS = frozenset((EventType.NODE_CREATED, EventType.NODE_DATA_CHANGED,
                           EventType.NODE_DELETED))

#: Default bound of the nodes a TreeCache holds.
DEFAULT_MAX_NODES = 100_000

#: How a cache watches: see the module doc.
WatchMode = Literal["persistent", "one-shot", "auto"]
_WATCH_MODES = ("persistent", "one-shot", "auto")

_Node = tuple[bytes, Stat]


class TreeCache:
    """A live view of the subtree at ``path`` (the node itself and its descendants).

    ``max_depth``: how deep below ``path`` to cache (0: the node alone, 1: its children,
    None: everything). ``max_nodes``: the most nodes held (see the module doc for what
    happens beyond). ``accept(path)``: False leaves a node, and everything below it, out
    of the view (neither read nor watched for); it must not block. ``snapshot_dir``: keep
    the view on disk there. ``max_queued_changes``: per-subscriber queue bound.
    ``watch_mode`` ("auto", "persistent", "one-shot") and ``sync_on_reconnect``: see the
    module doc.

    Raises:
        InvalidPathError: ``path`` is not a valid absolute path.
        ConfigurationError: a limit is not a positive integer (``max_depth`` >= 0), or
            an unknown ``watch_mode``.
    """

    def __init__(
        self,
        client: AsyncClient,
        path: str,
        *,
        max_depth: int | None = None,
        max_nodes: int = DEFAULT_MAX_NODES,
        accept: Callable[[str], bool] | None = None,
        snapshot_dir: str | None = None,
        max_queued_changes: int = DEFAULT_MAX_QUEUED_CHANGES,
        watch_mode: WatchMode = "auto",
        sync_on_reconnect: bool = False,
    ) -> None:
        _paths.validate(path)
        if watch_mode not in _WATCH_MODES:
            raise ConfigurationError(
                f"watch_mode must be one of {', '.join(_WATCH_MODES)}, not {watch_mode!r}")
        if max_depth is not None and (type(max_depth) is not int or max_depth < 0):
            raise ConfigurationError(f"max_depth must be None or an int >= 0, not {max_depth!r}")
        for name, value in (("max_nodes", max_nodes), ("max_queued_changes", max_queued_changes)):
            if type(value) is not int or value < 1:
                raise ConfigurationError(f"{name} must be an int >= 1, not {value!r}")
        self._client = client
        self._path = path
        self._prefix = path if path.endswith("/") else path + "/"
        self._max_depth = max_depth
        self._max_nodes = max_nodes
        self._accept = accept
        self._snapshot_dir = snapshot_dir
        self._nodes: dict[str, _Node] = {}
        self._kids: dict[str, set[str]] = {}
        self._feed: ChangeFeed[TreeChange] = ChangeFeed(
            f"cache {path}", self._current, limit=max_queued_changes, logger=log
        )
        self._tasks = TaskOwner(f"cache {path}", log)
        self._task: asyncio.Task[None] | None = None
        self._watch_mode: WatchMode = watch_mode
        self._persistent: PersistentDriver | None = None
        self._oneshot: OneShotDriver | None = None
        self._sync_on_reconnect = sync_on_reconnect
        self._read_host: HostPort | None = None
        self._closed = False
        self._ended: ZooKeeperError | None = None
        self._needs_resync = True
        self._want_full = False
        self._from_snapshot = False
        self._ready = asyncio.Event()
        self._degraded: str | None = None
        self._snapshot_failing = False
        #: when the view last changed (seconds since the epoch), None before any data
        self.updated_at: float | None = None
        #: node reads issued (data reads; a full re-read also lists children)
        self.reads = 0
        #: completed full re-reads
        self.resyncs = 0
        #: sync() calls made before a re-read on another member (sync_on_reconnect)
        self.syncs = 0
        #: seconds spent waiting for those sync() calls, in total
        self.sync_seconds = 0.0

    # --- the view --------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The root of the cached subtree."""
        return self._path

    @property
    def stale(self) -> bool:
        """True when the view may be out of date: not loaded yet, no session, reconnected
        but not re-read yet, served from a snapshot, or degraded by ``max_nodes``."""
        return (self._from_snapshot or self._needs_resync or self._degraded is not None
                or not self._client.connected)

    @property
    def loaded(self) -> bool:
        """True once the view holds data read from ZooKeeper (or from the snapshot)."""
        return self._ready.is_set() and self._ended is None

    @property
    def watch_mode(self) -> WatchMode:
        """The watch mode asked for ("auto", "persistent" or "one-shot")."""
        return self._watch_mode

    @property
    def watch_mode_in_use(self) -> Literal["persistent", "one-shot"] | None:
        """The watches the cache runs on now; None before it started watching."""
        if self._oneshot is not None:
            return "one-shot"
        return "persistent" if self._persistent is not None else None

    @property
    def degraded(self) -> str | None:
        """Why the view is incomplete (``max_nodes`` reached), or None."""
        return self._degraded

    def get(self, path: str) -> tuple[bytes, Stat] | None:
        """``(data, Stat)`` of ``path`` as the view holds it, or None if not in the view.

        The Stat is the one read with the data (or at the last full re-read): its child
        counts may lag; :meth:`children` is current.
        """
        return self._nodes.get(path)

    def children(self, path: str) -> list[str]:
        """The names of ``path``'s children in the view, sorted ([] if none or absent)."""
        return sorted(self._kids.get(path, ()))

    def nodes(self) -> dict[str, tuple[bytes, Stat]]:
        """A copy of the whole view: path → (data, Stat)."""
        return dict(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, path: object) -> bool:
        return path in self._nodes

    def changes(self) -> AsyncIterator[TreeChange]:
        """``Resynced`` (the view now) first, then every change in order.

        A subscriber more than ``max_queued_changes`` behind gets one ``Resynced`` (the
        view when it reads it) instead of what it missed. Any number of subscribers.

        Raises (from iteration):
            ClientClosedError: the cache or its client is closed.
            UnimplementedError: the server has no persistent watches (< 3.6) and
                ``watch_mode="persistent"``.
        """
        return self._feed.subscribe(lambda: self._ended)

    # --- life cycle -----------------------------------------------------------------------

    async def start(self, *, wait: bool = True, timeout: float | None = None) -> TreeCache:
        """Arm the watch and read the tree (or load the snapshot if ZooKeeper is down).

        With ``wait=False`` return at once; the view fills in the background.

        Raises:
            ClientClosedError: the cache or the client is closed.
            UnimplementedError: the server has no persistent watches (< 3.6) and
                ``watch_mode="persistent"``.
            TimeoutError (builtin): not loaded within ``timeout``.
        """
        self.start_soon()
        if wait:
            await self.wait_ready(timeout)
        return self

    def start_soon(self) -> None:
        """Start the watch loop without waiting (idempotent; for synchronous callers).

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

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the view holds live (or snapshot) data.

        Raises:
            TimeoutError (builtin): not ready within ``timeout``.
            ClientClosedError, UnimplementedError: the cache ended before it was ready.
        """
        async with asyncio.timeout(timeout):
            await self._ready.wait()
        if self._ended is not None:
            raise self._ended

    async def close(self) -> None:
        """Stop watching; subscribers' streams end with ClientClosedError. Never raises."""
        if self._closed:
            return
        self._closed = True
        self._client.remove_listener(self._on_state)
        if self._oneshot is not None:
            await self._oneshot.close()
        await self._tasks.aclose()
        if self._persistent is not None:
            await self._persistent.close()
        self._end(ClientClosedError("cache closed"))

    async def __aenter__(self) -> TreeCache:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return (f"<TreeCache {self._path!r} nodes={len(self._nodes)} "
                f"{'stale' if self.stale else 'live'}>")

    # --- scope ---------------------------------------------------------------------------

    def _depth(self, path: str) -> int:
        return 0 if path == self._path else path[len(self._prefix):].count("/") + 1

    def _wanted(self, path: str) -> bool:
        """In the subtree, within max_depth, and accepted (with all its ancestors)."""
        if path == self._path:
            return True
        if not path.startswith(self._prefix):
            return False
        depth = self._depth(path)
        if self._max_depth is not None and depth > self._max_depth:
            return False
        if self._accept is None:
            return True
        probe = path
        for _ in range(depth):
            if not self._accept(probe):
                return False
            probe = _paths.parent(probe)
        return True

    # --- state ---------------------------------------------------------------------------

    def _current(self) -> Resynced:
        return Resynced(MappingProxyType(dict(self._nodes)), self.stale)

    def _end(self, exc: ZooKeeperError) -> None:
        if self._ended is None:
            self._ended = exc
        self._feed.end(exc)
        self._ready.set()  # wake start(): it raises the ending

    def _mark_stale(self) -> None:
        self._needs_resync = True
        self._feed.wake()

    def _on_state(self, change: ClientStateChange) -> None:
        if change.state in (ClientState.SUSPENDED, ClientState.LOST):
            self._mark_stale()
        elif (self._oneshot is not None
              and change.state in (ClientState.CONNECTED, ClientState.READ_ONLY)
              and change.previous in (ClientState.SUSPENDED, ClientState.LOST)):
            self._oneshot.kick()  # one-shot streams do not see a reconnect: re-read

    def _put(self, path: str, node: _Node) -> None:
        if path not in self._nodes and path != self._path:
            parent, name = _paths.split(path)
            self._kids.setdefault(parent, set()).add(name)
        self._nodes[path] = node

    def _drop(self, path: str, *, below_czxid: int | None = None) -> list[TreeChange]:
        """Remove ``path`` and what the view holds below it (deepest first). With
        ``below_czxid``, only descendants created before it (an old incarnation's), at
        every depth: an old child may hold a new grandchild, read before the child's own
        re-creation was."""
        out: list[TreeChange] = []
        for name in list(self._kids.get(path, ())):
            child = _paths.join(path, name)
            node = self._nodes.get(child)
            if node is not None and (below_czxid is None or node[1].czxid < below_czxid):
                out.extend(self._drop(child, below_czxid=below_czxid))
        node = self._nodes.pop(path, None)
        if node is not None:
            if path != self._path:
                parent, name = _paths.split(path)
                siblings = self._kids.get(parent)
                if siblings is not None:
                    siblings.discard(name)
                    if not siblings:
                        del self._kids[parent]
            out.append(NodeRemoved(path, node[0], node[1]))
        return out

    def _set_degraded(self, reason: str) -> None:
        if self._degraded is None:
            self._degraded = reason
            log.warning("cache %s: %s; the view stops growing (degraded, stale) until "
                        "the tree shrinks", self._path, reason)

    def _publish(self, changes: list[TreeChange]) -> None:
        if not changes:
            return
        self.updated_at = time.time()
        self._feed.publish(changes)
        if self._snapshot_dir is not None:
            try:
                write_tree_snapshot(self._snapshot_dir, self._path, self._nodes)
                self._snapshot_failing = False
            except OSError as exc:
                if not self._snapshot_failing:  # once per failing streak, not per change
                    self._snapshot_failing = True
                    log.warning("cache %s: could not write the snapshot: %s", self._path, exc)

    def _load_snapshot(self) -> None:
        assert self._snapshot_dir is not None
        snap = read_tree_snapshot(self._snapshot_dir, self._path)
        if snap is None:
            return
        for path, node in snap.nodes.items():
            if self._wanted(path) and len(self._nodes) < self._max_nodes:
                self._put(path, node)
        self._from_snapshot = True
        self.updated_at = snap.written_at
        log.info("cache %s: serving %d nodes from the snapshot written %.0fs ago (stale)",
                 self._path, len(self._nodes), time.time() - snap.written_at)
        self._ready.set()

    # --- the watch loop ------------------------------------------------------------------

    async def _run(self) -> None:
        if self._watch_mode != "one-shot":
            self._persistent = PersistentDriver(self, fallback=self._watch_mode == "auto")
            try:
                await self._persistent.run()
                return
            except UnimplementedError as exc:
                log.warning("cache %s: the server has no persistent watches (%s); falling "
                            "back to one-shot watches (one server watch per node)",
                            self._path, exc)
                self._persistent = None
        self._oneshot = OneShotDriver(self)
        await self._oneshot.run()

    async def _sync_if_moved(self) -> None:
        """sync(root) before a re-read on another member than the last one read from.

        Raises:
            ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        host = self._client.current_host
        if self._sync_on_reconnect and self._read_host is not None and host != self._read_host:
            started = time.perf_counter()
            await self._client.sync(self._path)
            self.syncs += 1
            self.sync_seconds += time.perf_counter() - started
            log.debug("cache %s: synced %s with the leader in %.1f ms before re-reading",
                      self._path, host, (time.perf_counter() - started) * 1000)
        self._read_host = host

    def _resynced(self, *, truncated: bool) -> None:
        """A full re-read is in the view: clear the flags, publish ``Resynced``."""
        self._want_full = False
        self._needs_resync = False
        self._from_snapshot = False
        if truncated:
            self._set_degraded(f"the tree holds more than max_nodes={self._max_nodes} nodes")
        else:
            self._degraded = None
        self.resyncs += 1
        self._ready.set()
        self._publish([self._current()])

    # --- reading -------------------------------------------------------------------------

    async def _read_all(self) -> tuple[dict[str, _Node], bool]:
        """The whole subtree, level by level (data reads pipelined per level; a node's
        children listed only if its Stat says it has some). Returns (nodes, truncated)."""
        client = self._client
        found: dict[str, _Node] = {}
        level = [self._path]
        depth = 0
        while level:
            results = await client.get_many(level)
            self.reads += len(level)
            parents: list[str] = []
            for path, result in zip(level, results, strict=True):
                if not isinstance(result, tuple):
                    continue  # gone (NoNode), or unreadable (NoAuth): not in the view
                if len(found) >= self._max_nodes:
                    return found, True
                found[path] = result
                if result[1].num_children > 0 and (
                    self._max_depth is None or depth < self._max_depth
                ):
                    parents.append(path)
            listings = await asyncio.gather(
                *(client.get_children(p) for p in parents), return_exceptions=True
            )
            level = []
            for parent, listing in zip(parents, listings, strict=True):
                if isinstance(listing, (ConnectionLossError, SessionExpiredError,
                                        ClientClosedError)):
                    raise listing
                if isinstance(listing, ZooKeeperError):
                    continue  # gone meanwhile, or unreadable
                if isinstance(listing, BaseException):
                    raise listing
                for name in sorted(listing):
                    child = _paths.join(parent, name)
                    if self._wanted(child):
                        level.append(child)
            if len(found) + len(level) > self._max_nodes:
                del level[self._max_nodes - len(found) + 1:]  # one more marks truncation
            depth += 1
        return found, False

    async def _resync(self) -> None:
        await self._sync_if_moved()
        fresh, truncated = await self._read_all()
        old = self._nodes
        changes: list[TreeChange] = []
        gone = [p for p, (_, st) in old.items()
                if p not in fresh or fresh[p][1].czxid != st.czxid]
        for path in sorted(gone, key=self._depth, reverse=True):
            data, stat = old[path]
            changes.append(NodeRemoved(path, data, stat))
        for path, (data, stat) in fresh.items():
            before = old.get(path)
            if before is None or before[1].czxid != stat.czxid:
                changes.append(NodeAdded(path, data, stat))
            elif before[1].mzxid != stat.mzxid:
                changes.append(NodeUpdated(path, data, stat, before[0], before[1]))
        self._nodes = {}
        self._kids = {}
        for path, node in fresh.items():
            self._put(path, node)
        if len(changes) < self._feed.limit:
            self._publish(changes)
        # else: every subscriber would overflow on them and get the whole view instead,
        # which the Resynced below is (a first load of a big tree: no warning, no copies)
        self._resynced(truncated=truncated)

    async def _apply(self, events: list[WatchEvent]) -> None:
        # Coalesce per node: what matters is its state now, read once, all in one
        # pipelined round before the view changes (a read that fails changes nothing).
        # The view then changes node by node in the order of each node's last event, as
        # the server made them, and the changes are published in that same order: a
        # subscriber's replay equals the view even where one node's change touches
        # another's (a re-created parent drops the old incarnation of its children).
        last: dict[str, bool] = {}  # path -> deleted; in the order of the last events
        for event in events:
            path = event.path
            if event.type in _NODE_EVENTS and self._wanted(path):
                last.pop(path, None)
                last[path] = event.type is EventType.NODE_DELETED
        targets = [path for path, deleted in last.items() if not deleted]
        results: dict[str, tuple[bytes, Stat] | ZooKeeperError] = {}
        if targets:
            results = dict(zip(targets, await self._client.get_many(targets), strict=True))
            self.reads += len(targets)
        changes: list[TreeChange] = []
        for path, deleted in last.items():
            changes.extend(self._drop(path) if deleted else self._merge(path, results[path]))
        if self._degraded is not None and len(self._nodes) < 0.9 * self._max_nodes:
            self._want_full = True  # room again: pick up what was left out
        self._publish(changes)

    def _merge(self, path: str, result: tuple[bytes, Stat] | ZooKeeperError) -> list[TreeChange]:
        """Fold one fresh read of ``path`` into the view; the changes it makes."""
        old = self._nodes.get(path)
        if not isinstance(result, tuple):
            if isinstance(result, NoNodeError) and old is not None:
                return self._drop(path)  # gone again before we read it
            return []
        data, stat = result
        if old is not None and old[1].czxid > stat.czxid:
            return []  # a read of an earlier incarnation than the one we hold
        if old is not None and old[1].czxid == stat.czxid:
            if old[1].mzxid > stat.mzxid:
                return []  # an older read than what we hold
            self._nodes[path] = result  # newer Stat (pzxid) even if no new data
            if old[1].mzxid == stat.mzxid:
                return []
            return [NodeUpdated(path, data, stat, old[0], old[1])]
        changes: list[TreeChange] = []
        if old is not None:  # deleted and re-created: a new node
            changes.extend(self._drop(path, below_czxid=stat.czxid))
        elif len(self._nodes) >= self._max_nodes:
            self._set_degraded(f"the tree grew past max_nodes={self._max_nodes} nodes")
            return []
        self._put(path, result)
        changes.append(NodeAdded(path, data, stat))
        return changes

