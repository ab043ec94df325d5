"""The one-shot-watch side of a TreeCache, for servers without addWatch (ZooKeeper < 3.6).

Same guarantees as the persistent side, built on the client's public one-shot streams
(``zk.watch(path, "data")`` and ``zk.watch(path, "children")``), whose every read arms the
watch in the same request (getData/getChildren2 with watch=true; exists with watch=true
while the node is absent), so no change falls between a read and its watch:

* every node in scope has a data stream, and every node that may have children in scope
  (above ``max_depth``) a children stream; a node's data and Stat come only from its own
  stream, in order, so they never go backwards;
* the children are re-listed after every children event (that is what the children
  stream does); a name that appears gets its streams, a name that goes away loses them
  and leaves the view with everything below it. A listing older than a node (the
  parent's pzxid is below the node's czxid) does not remove it: the node was created
  after that listing, and the parent's re-armed watch brings the next one;
* deletion and re-creation are told apart by czxid (``NodeRemoved`` then ``NodeAdded``);
* SetWatches restores every one-shot watch after a reconnect and the server fires those
  whose node changed meanwhile, so nothing is missed while disconnected; on top of that,
  after every reconnect (and on a new session, whose streams all ended) every stream is
  started again: a full re-read, whose differences from the view are published, then
  ``Resynced``;
* memory: at most ``max_nodes`` watched nodes (the view stops growing beyond, degraded,
  as in persistent mode).

Cost, compared with one persistent recursive watch: the server holds one data watch per
node plus one child watch per node above ``max_depth`` (421 nodes, depth 2: 442 watches
instead of one; the watch manager keeps an entry per path and kind, some tens of bytes
each); the client holds a stream and a task per watch (about 5 KB per node with the view,
against 0.7 KB in persistent mode: tests/caches/test_oneshot.py); a deleted node costs one
read more (its stream re-reads and arms an exists watch, which stays on the server until
the path is created again or the session ends); a full re-read lists the children of every
node, not only of those that have some.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Literal

from .. import paths as _paths
from .._aio.watch import WatchStream
from ..errors import (
    ClientClosedError,
    ConnectionLossError,
    SessionExpiredError,
    ZooKeeperError,
)
from ..types import WatchEvent
from ._persistent import FAILURE_PAUSE, FAILURE_PAUSE_MAX

if TYPE_CHECKING:
    from ._core import CacheCore

__all__ = ("OneShotDriver",)

log = logging.getLogger("zkwarden.caches")

_Kind = Literal["data", "children"]


class _Run:
    """One run of one stream; ``primed`` once its first read is in the view."""

    __slots__ = ("primed",)

    def __init__(self) -> None:
        self.primed = False


class _NodeWatch:
    """The streams of one node, and the names of its children that have theirs."""

    __slots__ = ("path", "tasks", "kids")

    def __init__(self, path: str) -> None:
        self.path = path
        self.tasks: list[tuple[asyncio.Task[None], _Run]] = []
        self.kids: set[str] = set()


class OneShotDriver:
    """Feeds ``cache`` from one-shot watches until the cache closes (see the module doc)."""

    def __init__(self, cache: CacheCore) -> None:
        self._cache = cache
        self._watches: dict[str, _NodeWatch] = {}
        self._pending = 0  # first reads of the current re-read not in the view yet
        self._settled = asyncio.Event()
        self._kick = asyncio.Event()
        self._broken = False  # a stream ended with the session during this re-read
        self._truncated = False  # max_nodes left names out during this re-read
        self._ended = False
        self._fail_pause = FAILURE_PAUSE  # grows while streams keep failing (no spin)

    @property
    def watched(self) -> int:
        """Nodes that have streams (each holds one or two watches on the server)."""
        return len(self._watches)

    def kick(self) -> None:
        """Ask for a full re-read (a reconnect, a new session, room again)."""
        self._kick.set()

    async def close(self) -> None:
        """Stop every stream (never raises)."""
        self._ended = True
        tasks = [t for w in self._watches.values() for t, _ in w.tasks]
        self._watches.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def run(self) -> None:
        """Re-read whenever kicked, until the cache closes (ends it on ClientClosed)."""
        cache = self._cache
        pause = FAILURE_PAUSE
        while not cache._closed and not self._ended:
            try:
                await cache._client.wait_connected()
                await self._reread()
            except ClientClosedError as exc:
                cache._end(exc)
                return
            except (ConnectionLossError, SessionExpiredError):
                cache._mark_stale()
                await asyncio.sleep(0.05)
                continue
            except Exception:
                log.exception("cache %s: one-shot watch loop failed; retrying in %.1fs",
                              cache.path, pause)
                cache._mark_stale()
                await asyncio.sleep(pause)
                pause = min(pause * 2, FAILURE_PAUSE_MAX)
                continue
            pause = FAILURE_PAUSE
            await self._kick.wait()

    # --- the full re-read ------------------------------------------------------------

    async def _reread(self) -> None:
        """Start every stream again (each first read arms its watch), wait until all of
        them (and those of the names they list) are in the view, then ``Resynced``."""
        cache = self._cache
        self._kick.clear()
        self._broken = self._truncated = False
        await cache._sync_if_moved()
        if cache.path not in self._watches:
            self._watches[cache.path] = _NodeWatch(cache.path)
        for watch in list(self._watches.values()):
            self._start(watch)
        await self._settled.wait()
        if self._broken or self._ended:
            return  # the session ended meanwhile: its CONNECTED kicks the next re-read
        # Nodes nobody watches (served from a snapshot, say) are not in ZooKeeper's tree.
        orphans = [p for p in cache._nodes if p not in self._watches]
        changes = []
        for path in sorted(orphans, key=cache._depth, reverse=True):
            changes.extend(cache._drop(path))
        cache._publish(changes)
        cache._resynced(truncated=self._truncated)
        self._fail_pause = FAILURE_PAUSE

    def _stop(self, watch: _NodeWatch) -> None:
        for task, run in watch.tasks:
            task.cancel()
            # A task cancelled before it ran never reaches its finally: prime it here,
            # so a re-read does not wait for a stream that is gone.
            self._prime(run)
        watch.tasks = []

    def _start(self, watch: _NodeWatch) -> None:
        self._stop(watch)
        kinds: list[_Kind] = ["data"]
        max_depth = self._cache._max_depth
        if max_depth is None or self._cache._depth(watch.path) < max_depth:
            kinds.append("children")
        for kind in kinds:
            run = _Run()
            self._pending += 1
            self._settled.clear()
            task = self._cache._tasks.spawn(self._follow(watch, kind, run),
                                            name=f"{kind} {watch.path}")
            watch.tasks.append((task, run))

    def _prime(self, run: _Run) -> None:
        if not run.primed:
            run.primed = True
            self._pending -= 1
            if self._pending == 0:
                self._settled.set()

    # --- one stream --------------------------------------------------------------------

    async def _follow(self, watch: _NodeWatch, kind: _Kind, run: _Run) -> None:
        cache = self._cache
        stream: WatchStream | None = None
        try:
            stream = cache._client.watch(watch.path, kind)
            async for event in stream:
                if kind == "data":
                    self._on_data(watch.path, event)
                else:
                    self._on_children(watch, event)
                self._prime(run)
        except SessionExpiredError:
            self._broken = True  # every stream ends: the next session re-reads it all
            cache._mark_stale()
        except ClientClosedError as exc:
            cache._end(exc)
            self._ended = True
            self.kick()  # run() returns
        except ZooKeeperError as exc:
            # NoAuth and the like: the node cannot be read, so it is not in the view
            # (as a full read in persistent mode leaves it out).
            log.debug("cache %s: %s stream of %s ended: %s", cache.path, kind,
                      watch.path, exc)
            if kind == "data":
                cache._publish(cache._drop(watch.path))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("cache %s: %s stream of %s failed; re-reading everything in %.1fs",
                          cache.path, kind, watch.path, self._fail_pause)
            self._broken = True
            cache._mark_stale()
            asyncio.get_running_loop().call_later(self._fail_pause, self.kick)
            self._fail_pause = min(self._fail_pause * 2, FAILURE_PAUSE_MAX)
        finally:
            self._prime(run)
            if stream is not None:
                await stream.aclose()

    def _on_data(self, path: str, event: WatchEvent) -> None:
        cache = self._cache
        cache.reads += 1
        if event.stat is None or event.data is None:
            cache._publish(cache._drop(path))  # absent: its exists watch is armed
        else:
            cache._publish(cache._merge(path, (event.data, event.stat)))

    def _on_children(self, watch: _NodeWatch, event: WatchEvent) -> None:
        cache = self._cache
        names = set(event.children or ())
        pzxid = event.stat.pzxid if event.stat is not None and event.children is not None else None
        for name in sorted(watch.kids - names):
            child = _paths.join(watch.path, name)
            held = cache._nodes.get(child)
            if held is not None and pzxid is not None and held[1].czxid > pzxid:
                continue  # the listing predates this node: the next one will have it
            watch.kids.discard(name)
            self._close(child)
        for name in sorted(names - watch.kids):
            child = _paths.join(watch.path, name)
            if not cache._wanted(child):
                continue
            if len(self._watches) >= cache._max_nodes:
                self._truncated = True
                cache._set_degraded(f"the tree grew past max_nodes={cache._max_nodes} nodes")
                continue
            watch.kids.add(name)
            node = _NodeWatch(child)
            self._watches[child] = node
            self._start(node)

    def _close(self, path: str) -> None:
        """Stop watching ``path`` and everything below it; drop them from the view."""
        cache = self._cache
        stack = [path]
        while stack:
            watch = self._watches.pop(stack.pop(), None)
            if watch is None:
                continue
            self._stop(watch)
            stack.extend(_paths.join(watch.path, name) for name in watch.kids)
        cache._publish(cache._drop(path))
        if cache._degraded is not None and len(self._watches) < 0.9 * cache._max_nodes:
            self.kick()  # room again: list what was left out
