"""ChangeFeed: the subscriber side of a cache (rules 1, 3 and 8).

Every subscriber gets its own bounded queue. The first item a subscriber reads is the
cache's current view (built when it is read, so it is exact); after that, every change in
order. A subscriber that falls more than ``limit`` changes behind loses its queue and
reads one "current view" item instead, built when it reads it (so no change is lost and
none is repeated), and memory stays bounded whatever a slow consumer does. Used by
TreeCache, NodeCache and the discovery ServiceCache, so they share one implementation.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Generic, TypeVar

from ..errors import ZooKeeperError

__all__ = ("ChangeFeed", "DEFAULT_MAX_QUEUED_CHANGES")

#: Default bound of the changes queued for one subscriber.
DEFAULT_MAX_QUEUED_CHANGES = 10_000

C = TypeVar("C")


class _Subscriber(Generic[C]):
    __slots__ = ("queue", "wakeup", "error", "resync")

    def __init__(self) -> None:
        self.queue: deque[C] = deque()
        self.wakeup = asyncio.Event()
        self.error: ZooKeeperError | None = None
        # True: the next item is the view as it is when read (first item, and after an
        # overflow); changes published meanwhile are already in it, so none are queued.
        self.resync = True


class ChangeFeed(Generic[C]):
    """Fan-out of a cache's changes to any number of subscribers, each bounded.

    ``current()`` builds the "whole view" item (a ``Resynced``); it is called on the loop,
    when a subscriber reads it.
    """

    def __init__(
        self, name: str, current: Callable[[], C], *, limit: int, logger: logging.Logger
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._name = name
        self._current = current
        self._limit = limit
        self._log = logger
        self._subscribers: list[_Subscriber[C]] = []
        self._warned = False
        #: how many times a subscriber's queue overflowed (each replaced by one view item)
        self.overflows = 0

    def __len__(self) -> int:
        return len(self._subscribers)

    @property
    def limit(self) -> int:
        """Changes a subscriber may have queued before it gets the whole view instead."""
        return self._limit

    def publish(self, changes: Iterable[C]) -> None:
        """Queue ``changes`` for every subscriber (never blocks, never raises)."""
        items = list(changes)
        if not items:
            return
        for sub in self._subscribers:
            if not sub.resync:
                if len(sub.queue) + len(items) > self._limit:
                    sub.queue.clear()
                    sub.resync = True
                    self.overflows += 1
                    if not self._warned:
                        self._warned = True
                        self._log.warning(
                            "%s: a subscriber fell %d changes behind; it gets the whole "
                            "view again instead", self._name, self._limit,
                        )
                else:
                    sub.queue.extend(items)
            sub.wakeup.set()

    def wake(self) -> None:
        """Wake every subscriber (nothing to read; lets them notice an ending)."""
        for sub in self._subscribers:
            sub.wakeup.set()

    def end(self, exc: ZooKeeperError) -> None:
        """End every subscriber's stream with ``exc`` once it has read what is queued."""
        for sub in self._subscribers:
            if sub.error is None:
                sub.error = exc
            sub.wakeup.set()

    async def subscribe(self, closed: Callable[[], ZooKeeperError | None]) -> AsyncIterator[C]:
        """The view first, then every change; ends with the feed's ending exception.

        ``closed()`` returns the exception to end with at once (the cache is already
        closed), or None.

        Raises:
            ZooKeeperError: the one the feed was ended with (ClientClosedError, ...).
        """
        sub: _Subscriber[C] = _Subscriber()
        sub.error = closed()
        self._subscribers.append(sub)
        try:
            while True:
                if sub.error is not None and not sub.queue:
                    raise sub.error
                if sub.resync:
                    sub.resync = False
                    sub.queue.clear()
                    yield self._current()
                    continue
                if sub.queue:
                    yield sub.queue.popleft()
                    continue
                sub.wakeup.clear()
                await sub.wakeup.wait()
        finally:
            if sub in self._subscribers:
                self._subscribers.remove(sub)
