"""The persistent-watch side of a TreeCache (ZooKeeper >= 3.6).

One persistent recursive watch (non-recursive for ``max_depth=0``) on the root, armed
before the first read; per batch of events one pipelined read of each node created or
changed; a full re-read + diff + ``Resynced`` after every (re)arm and after an overflow
of the stream (an event of type NONE). Kept apart from :mod:`.tree` so the view and its
two watch modes stay readable; the one-shot side is :mod:`._oneshot`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .._aio.watch import PersistentWatchStream
from ..errors import (
    ClientClosedError,
    ConnectionLossError,
    SessionExpiredError,
    UnimplementedError,
    ZooKeeperError,
)
from ..types import EventType

if TYPE_CHECKING:
    from ._core import CacheCore

__all__ = ("PersistentDriver", "FAILURE_PAUSE", "FAILURE_PAUSE_MAX")

log = logging.getLogger("zkwarden.caches")

# Pause after an unexpected failure of a watch loop: doubled per failure in a row,
# capped, so a failure that repeats costs one log record per pause, not a busy loop.
FAILURE_PAUSE = 0.1
FAILURE_PAUSE_MAX = 10.0


class PersistentDriver:
    """Feeds ``cache`` from one persistent watch until the cache closes.

    :meth:`run` returns normally when the cache closed or ended; it raises
    UnimplementedError (the server has no addWatch) only when told it may fall back
    (``fallback=True``), else it ends the cache with it.
    """

    def __init__(self, cache: CacheCore, *, fallback: bool) -> None:
        self._cache = cache
        self._fallback = fallback
        self._stream: PersistentWatchStream | None = None

    async def close(self) -> None:
        """Remove the watch from the server (never raises)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            await _close_stream(stream)

    async def run(self) -> None:
        """The watch loop (see the class doc for what it raises)."""
        cache = self._cache
        client = cache._client
        pause = FAILURE_PAUSE
        while not cache._closed:
            stream: PersistentWatchStream | None = None
            try:
                await client.wait_connected()
                stream = client.add_watch(
                    cache.path, recursive=cache._max_depth is None or cache._max_depth > 0
                )
                # A burst of changes (a rolling restart of every node) may outrun the
                # reads; falling behind costs a full re-read of the tree, so the queue may
                # hold two events per node the view may hold (each far smaller than it).
                if isinstance(stream, PersistentWatchStream):  # not a test's stand-in
                    stream.queue_limit = max(stream.queue_limit, 2 * cache._max_nodes)
                self._stream = stream
                await stream.arm()  # queues a NONE event: the first full read
                await self._follow(stream)
            except SessionExpiredError:
                log.info("cache %s: session expired; re-subscribing", cache.path)
                cache._mark_stale()
            except ConnectionLossError:
                await asyncio.sleep(0.05)  # arming failed while disconnected
            except ClientClosedError as exc:
                cache._end(exc)
                return
            except UnimplementedError as exc:
                await self._drop_stream(stream)
                if self._fallback:
                    raise
                log.error("cache %s: the server has no persistent watches (ZooKeeper < 3.6) "
                          "and watch_mode='persistent': %s", cache.path, exc)
                cache._end(exc)
                return
            except Exception:
                # A bug, an accept() that raised, or an error ZooKeeper keeps returning
                # (NoAuth on the root...): say so with the traceback, keep the view marked
                # stale, start over with a full re-read after a growing pause; a cache
                # that stopped silently would serve a frozen view as live.
                log.exception("cache %s: watch loop failed; retrying in %.1fs",
                              cache.path, pause)
                cache._mark_stale()
                await self._drop_stream(stream)
                await asyncio.sleep(pause)
                pause = min(pause * 2, FAILURE_PAUSE_MAX)
                continue
            await self._drop_stream(stream)
            pause = FAILURE_PAUSE

    async def _drop_stream(self, stream: PersistentWatchStream | None) -> None:
        if stream is not None and self._stream is stream:
            self._stream = None
            await _close_stream(stream)

    async def _follow(self, stream: PersistentWatchStream) -> None:
        """Apply the stream's events until it ends (SessionExpired/ClientClosed raise)."""
        cache = self._cache
        while True:
            if cache._want_full:
                if stream.ended:
                    return  # a new session: re-arm on it first (its arm re-reads anyway)
                try:
                    await cache._resync()
                except ConnectionLossError:
                    cache._mark_stale()
                    await cache._client.wait_connected()
                continue
            try:
                event = await stream.__anext__()
            except StopAsyncIteration:
                return
            batch = [event, *stream.take_pending()]
            if any(e.type is EventType.NONE for e in batch):
                cache._want_full = True  # (re-)armed or overflowed: re-read everything
                continue
            try:
                await cache._apply(batch)
            except ConnectionLossError:
                # The batch is consumed but not applied: only a full re-read is exact now.
                cache._want_full = True
                cache._mark_stale()
                await cache._client.wait_connected()


async def _close_stream(stream: PersistentWatchStream) -> None:
    try:
        await stream.aclose()
    except ZooKeeperError:
        pass  # the client is gone or disconnected: the server drops the watch with it
