"""Callback watches: what the loop reads, delivered on the dispatcher.

A one-shot watch (``Client.watch``) is a :class:`~zkwarden._aio.callback_watch.CallbackWatch`
whose sink is the handle: the engine's event dispatch starts the re-read, and its reply
is posted straight to the handle's dispatcher channel (no task, stream or coroutine per
watch: 10,000 idle watches are 10,000 small objects). Other streams (persistent watches,
cache changes) are pumped by a task (``subscribe`` and ``_pump``) that moves their items
into the channel. Either way the re-arming, reconnects and the single ending exception
are the AsyncClient's, and the user's callback never runs on the loop thread.

While a callback is busy its events wait in the channel, bounded (DESIGN rule 8): a
one-shot watch's events each carry the whole state read when re-arming, so only the newest
is kept; a persistent watch keeps up to ``max_queued`` and beyond that delivers one event
of type NONE instead of all of them (re-read, as after a reconnect).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from .._aio.callback_watch import CallbackWatch
from .._aio.subscriptions import Subscriptions
from .._aio.watch import PersistentWatchStream, WatchStream
from ..errors import ZooKeeperError
from ..types import EventType, KeeperState, WatchEvent
from ._dispatch import Channel, Dispatcher

__all__ = ("WatchHandle", "DEFAULT_MAX_QUEUED")

#: Default bound of the calls queued for one persistent watch handle whose callback is busy.
DEFAULT_MAX_QUEUED = 10_000

log = logging.getLogger("zkwarden.sync")

Stream = WatchStream | PersistentWatchStream


class WatchOwner(Protocol):
    """What a WatchHandle needs of the client it belongs to (the blocking Client):
    described here so this module need not import the client, which imports it."""

    def _check_fork(self) -> None: ...

    def _portal_call_soon(self, fn: Callable[[], object]) -> None: ...

    def _track(self, task: asyncio.Task[None]) -> None: ...


class WatchHandle:
    """A running callback watch, returned by ``Client.watch`` and ``Client.add_watch``.

    ``cancel()`` stops it. When the stream ends by itself (session expired, client
    closed) the ``on_error`` callback gets the exception, once; ``error`` holds it.

    While the callback is busy, events wait for it, bounded: a one-shot watch
    (``watch()``) keeps only the newest (it carries the latest state, which supersedes the
    others); a persistent one (``add_watch()``) keeps up to ``max_queued_events`` (a
    Client option), and when more arrive it drops them all and calls back once with an
    event of type ``EventType.NONE``: re-read what you keep, as after a reconnect.
    """

    # One per watch: slotted (subclasses that add attributes get a __dict__ of their own).
    __slots__ = ("_client", "_dispatcher", "path", "kind", "_callback", "_on_error",
                 "_channel", "_cancelled", "error", "_stream", "_task", "_watcher")

    def __init__(
        self,
        client: WatchOwner,
        dispatcher: Dispatcher,
        path: str,
        kind: str,
        callback: Callable[[WatchEvent], object],
        on_error: Callable[[Exception], object] | None,
        max_queued: int = DEFAULT_MAX_QUEUED,
    ) -> None:
        self._client = client
        self._dispatcher = dispatcher
        self.path = path
        #: "data", "exists", "children", "persistent" or "persistent_recursive"
        self.kind = kind
        self._callback = callback
        self._on_error = on_error
        # The channel is named by the handle (its repr), not a string of its own per watch.
        if kind in ("data", "exists", "children"):
            self._channel = Channel(self, coalesce=True)
        elif kind in ("persistent", "persistent_recursive"):
            self._channel = Channel(self, limit=max_queued, overflow=self._overflow)
        else:
            # Another stream pumped through a handle (the blocking discovery cache's
            # changes): its items are not WatchEvents, so no WatchEvent may replace them;
            # bounding it needs that stream's own "re-read" item.
            self._channel = Channel(self)
        self._cancelled = False
        #: The exception that ended the stream (None while it runs or after cancel()).
        self.error: Exception | None = None
        # Loop-thread only.
        self._stream: Stream | None = None
        self._task: asyncio.Task[None] | None = None
        self._watcher: CallbackWatch | None = None

    @property
    def cancelled(self) -> bool:
        """True after :meth:`cancel`."""
        return self._cancelled

    @property
    def active(self) -> bool:
        """True until the watch is cancelled or its stream has ended."""
        return not self._cancelled and self.error is None

    @property
    def pending(self) -> int:
        """Calls queued for the callback and not started yet (a snapshot; for metrics)."""
        return self._channel.pending

    @property
    def overflows(self) -> int:
        """How many times a persistent watch's queue hit its bound and was replaced by one
        event of type NONE (always 0 for one-shot watches, which coalesce instead)."""
        return self._channel.overflows

    def cancel(self) -> None:
        """Stop the watch: its callbacks are not called any more once this returns
        (except one already running on another thread). Idempotent, callable from any
        thread and from inside its own callback; does not block on the server (the watch is
        removed from the server in the background).

        Raises:
            ForkedClientError: called in a child process after fork().
        """
        self._client._check_fork()
        if self._cancelled:
            return
        self._cancelled = True
        self._dispatcher.cancel(self._channel)
        self._client._portal_call_soon(self._stop_on_loop)

    def __repr__(self) -> str:
        state = "cancelled" if self._cancelled else ("ended" if self.error else "active")
        return f"<WatchHandle {self.kind} {self.path!r} {state}>"

    # --- loop side -----------------------------------------------------------------------

    async def subscribe_one_shot(self, subscriptions: Subscriptions) -> None:
        """On the loop: arm a one-shot watch of ``self.kind`` on ``self.path`` whose events
        (the first one included) go to the dispatcher from the engine's dispatch.

        Raises:
            InvalidPathError, InvalidArgumentError, and whatever arming raises (nothing
            stays subscribed then).
        """
        watcher = CallbackWatch(subscriptions, self.path, self.kind, self)
        self._watcher = watcher
        await watcher.start()
        if self._cancelled:  # cancel() raced the first read
            watcher.close()

    # WatchSink: called by the CallbackWatch on the loop thread.
    def watch_event(self, event: WatchEvent) -> None:
        self._dispatcher.post(self._channel, self._callback, event, droppable=True)

    def watch_ended(self, exc: ZooKeeperError) -> None:
        self.error = exc  # rule 1: the one ending exception goes to the user
        self._dispatcher.post(self._channel, self._deliver_end, exc)

    async def subscribe(self, stream: Stream) -> None:
        """On the loop: arm the stream, deliver its first event, start pumping the rest.

        Raises:
            whatever arming raises (the stream is closed then).
        """
        self._stream = stream
        try:
            first = await stream.__anext__()
        except BaseException:
            await stream.aclose()
            raise
        self._post_event(first)
        if self._cancelled:  # cancel() raced the first read
            await stream.aclose()
            return
        self._task = asyncio.get_running_loop().create_task(
            self._pump(stream), name=f"zkwarden-watch {self.path}"
        )
        self._client._track(self._task)

    async def _pump(self, stream: Stream) -> None:
        try:
            while True:
                try:
                    event = await stream.__anext__()
                except StopAsyncIteration:
                    return
                self._post_event(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # rule 1: the one ending exception goes to the user
            self.error = exc
            self._dispatcher.post(self._channel, self._deliver_end, exc)
        finally:
            await stream.aclose()

    def _stop_on_loop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._watcher is not None:
            self._watcher.close()
        # A handle cancelled before its pump started (or its watch armed) is closed by
        # subscribe() (subscribe_one_shot()).

    def _post_event(self, event: WatchEvent) -> None:
        self._dispatcher.post(self._channel, self._callback, event, droppable=True)

    def _overflow(self) -> tuple[Callable[[WatchEvent], object], tuple[WatchEvent]]:
        # Under the dispatcher lock: the one call that replaces a queue past its bound.
        log.warning("%s watch on %s: callback fell behind; queued events dropped, "
                    "delivering one NONE event (re-read)", self.kind, self.path)
        return self._callback, (WatchEvent(EventType.NONE, KeeperState.SYNC_CONNECTED,
                                           self.path),)

    # --- dispatcher side -----------------------------------------------------------------

    def _deliver_end(self, exc: Exception) -> None:
        if self._on_error is not None:
            self._on_error(exc)
        else:
            log.info("%s watch on %s ended: %s: %s", self.kind, self.path,
                     type(exc).__name__, exc)
