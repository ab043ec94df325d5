"""The watch side of a client: who is subscribed, and what happens to them on session
events (the engine's hooks), on close, and when a stream is abandoned.

Streams (:mod:`zkwarden._aio.watch`) talk to this object, never to the client, so the
import arrows run one way: engine <- subscriptions <- watch <- client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any

from .. import paths as _paths
from ..errors import NoNodeError, ZooKeeperError
from ..protocol import ops
from ..protocol.ops import WatchKind
from ..types import Stat, WatcherType
from .engine import SessionEngine
from .subscriber import Subscriber

__all__ = ("Subscriptions",)

log = logging.getLogger("zkwarden.watch")


class Subscriptions:
    """Every live watch subscriber of one client (implements the engine's hooks)."""

    def __init__(self, engine: SessionEngine) -> None:
        self.engine = engine
        # Every live subscriber, by client path: "does anyone else watch this path?" is
        # asked per closed stream, and a scan of all would make closing N of them O(N²).
        # A path's one subscriber is the value itself (a set per path cost 240 bytes a
        # watch; 10,000 watches are a normal load).
        self._by_path: dict[str, Subscriber | list[Subscriber]] = {}
        # Removals of abandoned streams' watches: owned here, cancelled by aclose().
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def subscribers(self) -> set[Subscriber]:
        """Every live subscriber (a new set: for checks and tests, not the hot path)."""
        out: set[Subscriber] = set()
        for same_path in self._by_path.values():
            if isinstance(same_path, list):
                out.update(same_path)
            else:
                out.add(same_path)
        return out

    @property
    def max_queued_events(self) -> int:
        return self.engine.max_queued_events

    # --- engine hooks --------------------------------------------------------------------

    def session_lost(self, exc: ZooKeeperError) -> None:
        """LOST was reported: every subscriber of the lost session ends with ``exc``.
        (Streams created from now on belong to the next session.)"""
        subscribers = list(self.subscribers)
        self._by_path.clear()
        for sub in subscribers:
            sub.end(exc)

    def reconnected(self) -> None:
        for sub in list(self.subscribers):
            sub.reconnected()

    def closed(self, exc: ZooKeeperError) -> None:
        self.session_lost(exc)

    async def aclose(self) -> None:
        """Cancel and await the background removals (bounded)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            try:
                async with asyncio.timeout(1.0):
                    await asyncio.gather(*tasks, return_exceptions=True)
            except TimeoutError:
                log.warning("watch removals did not stop within 1s")

    # --- for streams ---------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` in a task owned here (cancelled and awaited by :meth:`aclose`)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def server_path(self, path: str) -> str:
        # /zookeeper/config stays outside the chroot (the mapping lives in ensemble)
        return _paths.watch_server_path(self.engine.chroot, path)

    def call(self, request: ops.Request, path: str, sub: Subscriber | None = None
             ) -> Awaitable[Any]:
        return self.engine.call(request, path, sub)

    async def wait_connected(self) -> None:
        """Wait for a live connection, at most the default wait.

        Raises:
            RequestTimeoutError, ClientClosedError, AuthFailedError.
        """
        await self.engine.wait_live(self.engine.default_wait())

    async def exists_watched(self, path: str, sub: Subscriber) -> Stat | None:
        """exists with a watch for ``sub`` (armed even when the node is absent).

        Raises:
            ConnectionLossError, SessionExpiredError, ClientClosedError, NoAuthError.
        """
        try:
            stat: Stat = await self.engine.call(ops.Exists(self.server_path(path), True),
                                                path, sub)
        except NoNodeError:
            return None
        return stat

    def register(self, sub: Subscriber) -> None:
        """Raises:
        ClientClosedError, ForkedClientError."""
        self.engine.check_usable()
        same_path = self._by_path.get(sub.path)
        if same_path is sub or (isinstance(same_path, list) and sub in same_path):
            return
        if same_path is None:
            self._by_path[sub.path] = sub
        elif isinstance(same_path, list):
            same_path.append(sub)
        else:
            self._by_path[sub.path] = [same_path, sub]

    def _forget(self, sub: Subscriber) -> None:
        same_path = self._by_path.get(sub.path)
        if same_path is sub:
            del self._by_path[sub.path]
        elif isinstance(same_path, list) and sub in same_path:
            same_path.remove(sub)
            if len(same_path) == 1:
                self._by_path[sub.path] = same_path[0]

    def unregister(self, sub: Subscriber, kinds: Sequence[WatchKind]) -> bool:
        """Forget a subscriber; True when it was the last persistent one of its kind/path."""
        self._forget(sub)
        server_path = self.server_path(sub.path)
        last = False
        for kind in kinds:
            if self.engine.watches.remove(kind, server_path, sub) and kind in (
                WatchKind.PERSISTENT, WatchKind.PERSISTENT_RECURSIVE
            ):
                last = True
        if self.engine.metrics is not None:
            self.engine.metrics.watches(self.engine.watches.count())
        return last

    def unregister_one_shot(self, sub: Subscriber) -> list[WatchKind]:
        """Forget a one-shot subscriber; the kinds of watch it had armed on the server."""
        self._forget(sub)
        server_path = self.server_path(sub.path)
        armed = []
        for kind in (WatchKind.DATA, WatchKind.EXIST, WatchKind.CHILD):
            if self.engine.watches.holds(kind, server_path, sub):
                self.engine.watches.remove(kind, server_path, sub)
                armed.append(kind)
        if armed and self.engine.metrics is not None:  # the gauge follows the table
            self.engine.metrics.watches(self.engine.watches.count())
        return armed

    async def remove_one_shot_watches(self, path: str, kinds: Sequence[WatchKind]) -> None:
        """Remove this session's one-shot watches of ``kinds`` on ``path`` from the server.
        Never raises (a watch that already fired is simply gone)."""
        if not self.engine.machine.can_send:
            return
        types = {WatcherType.CHILDREN if k is WatchKind.CHILD else WatcherType.DATA for k in kinds}
        # One request, sent now: a second one sent after the first's reply would go out
        # behind the read of a stream that started on this path meanwhile, and strip the
        # watch that read armed.
        watcher_type = types.pop() if len(types) == 1 else WatcherType.ANY
        try:
            await self.engine.call(
                ops.RemoveWatches(self.server_path(path), int(watcher_type)), path
            )
        except ZooKeeperError as exc:  # NoWatcher: it fired meanwhile
            log.debug("one-shot watch on %s not removed: %s", path, exc)

    def abandon(self, sub: Subscriber, persistent: WatchKind | None) -> None:
        """A stream was garbage-collected without being closed (``break`` out of ``async
        for``). Runs from a weakref finalizer, on whatever thread the collector runs and
        possibly in the middle of a table update: so it only schedules the work on the
        loop, which then updates the tables."""
        loop = self.engine.loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._abandon_on_loop, sub, persistent)
        except RuntimeError:  # the loop closed meanwhile
            pass

    def _abandon_on_loop(self, sub: Subscriber, persistent: WatchKind | None) -> None:
        last = self.unregister(sub, [persistent] if persistent else list(WatchKind))
        if persistent is None or not sub.armed or not last or self.engine.closing:
            return
        self.spawn(self.remove_persistent_watch(sub.path, persistent))

    async def remove_persistent_watch(self, path: str, kind: WatchKind) -> None:
        """Remove the session's persistent watch on ``path`` from the server. Never raises."""
        if not self.engine.machine.can_send:
            return  # not restored on reconnect any more either: it is out of the registry
        watcher_type = (WatcherType.PERSISTENT_RECURSIVE
                        if kind is WatchKind.PERSISTENT_RECURSIVE else WatcherType.PERSISTENT)
        server_path = self.server_path(path)
        try:
            await self.engine.call(ops.RemoveWatches(server_path, int(watcher_type)), path)
        except ZooKeeperError as exc:
            # ZooKeeper < 3.9 knows only Children/Data/Any; Any would also drop the
            # watches of other streams on this path, so use it only when there are none.
            if self.has_other_watchers(path):
                log.debug("persistent watch on %s left to the session: %s", path, exc)
                return
            try:
                await self.engine.call(
                    ops.RemoveWatches(server_path, int(WatcherType.ANY)), path
                )
            except ZooKeeperError as exc2:
                log.debug("could not remove watch on %s: %s", path, exc2)

    def has_other_watchers(self, path: str) -> bool:
        # Any live stream on the path counts, armed or not: one whose re-arming read is in
        # flight is not in the registry yet, and RemoveWatches(ANY) sent behind that read
        # would strip the watch it is about to get.
        same_path = self._by_path.get(path)
        if isinstance(same_path, list):
            if any(not s.ended for s in same_path):
                return True
        elif same_path is not None and not same_path.ended:
            return True
        server_path = self.server_path(path)
        return any(self.engine.watches.has(k, server_path) for k in WatchKind)
