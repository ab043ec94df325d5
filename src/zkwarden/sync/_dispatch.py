"""The callback dispatcher: user callbacks run here, never on the event-loop thread.

Each watch handle and each state listener owns a :class:`Channel`, a FIFO of pending
calls. A channel runs on at most one worker at a time, so the callbacks of one watch run
one after the other, in order. Different channels may run on different workers: a callback
that blocks (a slow HTTP call on a config change, a blocking ``Client`` call) delays only
its own watch, never another watch or the state listeners that tell a lock holder it has
lost its session.

Workers start lazily (a client without callbacks starts none), and a second worker starts
only when a channel becomes ready while every worker is busy. Workers beyond the first exit
after a while idle. Everything here is safe to call from any thread, including the loop
thread, and never blocks on user code.

Memory stays bounded while a callback blocks (DESIGN rule 8). Calls posted as
``droppable`` (watch events, as opposed to the single end-of-stream call) are queued by the
channel's policy: a *coalescing* channel (one-shot watches, whose events carry the state
read when re-arming) keeps at most one, the newest, because it supersedes every older one;
a *bounded* channel (persistent watches, whose events are each a change) keeps at most
``limit``, and when it would exceed that it drops them all and queues one overflow call
instead (an event of type NONE, the "re-read" signal a stream gives after a reconnect).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ("Channel", "Dispatcher")

log = logging.getLogger("zkwarden.sync")

# Extra workers (beyond the first) that saw no work for this long exit.
_IDLE_EXIT = 5.0


class Channel:
    """One ordered stream of calls (one watch handle or one state listener).

    ``coalesce``: keep only the newest pending droppable call. ``limit``: at most this
    many pending droppable calls; past it they are all replaced by ``overflow()``.
    """

    __slots__ = ("name", "_items", "_active", "cancelled", "coalesce", "limit", "overflow",
                 "_droppable", "overflows")

    def __init__(
        self,
        name: object,
        *,
        coalesce: bool = False,
        limit: int | None = None,
        overflow: Callable[[], tuple[Callable[..., object], tuple[Any, ...]]] | None = None,
    ) -> None:
        if limit is not None and overflow is None:
            raise ValueError("a bounded channel needs an overflow call")
        #: what the channel serves, for logs (its str(); a watch passes its handle)
        self.name = name
        # (fn, args, droppable). Made on the first call and dropped once drained: an empty
        # deque still holds a 64-slot block (~600 bytes), and most channels (idle watches)
        # have nothing queued nearly all the time.
        self._items: deque[tuple[Callable[..., object], tuple[Any, ...], bool]] | None = None
        # True while the channel sits in the ready queue or a worker is running it.
        self._active = False
        self.cancelled = False
        self.coalesce = coalesce
        self.limit = limit
        self.overflow = overflow
        # How many of _items are droppable (so the bound check costs no scan).
        self._droppable = 0
        #: How many times the bound was hit (each time the queue was replaced by overflow).
        self.overflows = 0

    @property
    def pending(self) -> int:
        """Calls queued and not started yet (a racy snapshot, for metrics and tests)."""
        items = self._items
        return len(items) if items is not None else 0

    def _drop_droppable(self) -> None:
        """Under the dispatcher lock: forget every queued droppable call."""
        if self._droppable and self._items is not None:
            self._items = deque(item for item in self._items if not item[2])
            self._droppable = 0

    def _append(self, fn: Callable[..., object], args: tuple[Any, ...], droppable: bool) -> None:
        """Under the dispatcher lock: queue a call by the channel's policy."""
        if droppable:
            if self.coalesce:
                # The newest state supersedes the queued one: one pending call at most.
                self._drop_droppable()
            elif self.limit is not None and self._droppable >= self.limit:
                # Fallen behind: what is queued is no use any more, only a re-read is.
                # The event that hit the bound goes too; the re-read covers it.
                assert self.overflow is not None
                self._drop_droppable()
                self.overflows += 1
                fn, args = self.overflow()
            self._droppable += 1
        if self._items is None:
            self._items = deque()
        self._items.append((fn, args, droppable))

    def _pop(self) -> tuple[Callable[..., object], tuple[Any, ...]]:
        """Under the dispatcher lock: the next call (only called when one is queued)."""
        assert self._items is not None
        fn, args, droppable = self._items.popleft()
        if droppable:
            self._droppable -= 1
        return fn, args


class Dispatcher:
    """A small pool of daemon threads that runs channels' calls, one channel at a time."""

    def __init__(self, name: str, max_workers: int) -> None:
        self._name = name
        self._max_workers = max(1, max_workers)
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._ready: deque[Channel] = deque()
        self._workers: set[threading.Thread] = set()
        self._idle = 0
        self._stopping = False
        self._serial = 0

    def in_worker(self) -> bool:
        """True when called from one of this dispatcher's worker threads."""
        return threading.current_thread() in self._workers

    def post(self, channel: Channel, fn: Callable[..., object], *args: Any,
             droppable: bool = False) -> None:
        """Queue ``fn(*args)`` on ``channel``; dropped once stopping or if the channel is
        cancelled. A ``droppable`` call may be coalesced or replaced by the channel's
        overflow call (see :class:`Channel`); others always run."""
        thread: threading.Thread | None = None
        with self._lock:
            if self._stopping or channel.cancelled:
                return
            channel._append(fn, args, droppable)
            if channel._active:
                return
            channel._active = True
            self._ready.append(channel)
            if self._idle:
                self._wakeup.notify()
            if self._idle < len(self._ready) and len(self._workers) < self._max_workers:
                self._serial += 1
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{self._serial}", daemon=True
                )
                # Registered before it starts, so stop() joins it and in_worker() holds
                # from its first instruction.
                self._workers.add(thread)
        if thread is not None:
            thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        try:
            while True:
                with self._lock:
                    channel = self._next_channel()
                    if channel is None:
                        return
                    fn, args = channel._pop()
                if not channel.cancelled:
                    try:
                        fn(*args)
                    except BaseException:  # noqa: B036 - a callback must not kill the worker
                        log.exception("callback %r (%s) raised", fn, channel.name)
                with self._lock:
                    if channel._items and not channel.cancelled:
                        self._ready.append(channel)  # behind the others: fairness
                    else:
                        channel._items = None
                        channel._droppable = 0
                        channel._active = False
        finally:
            with self._lock:
                self._workers.discard(me)

    def _next_channel(self) -> Channel | None:
        """Under the lock: the next ready channel, or None when this worker should exit."""
        idle_since = time.monotonic()
        while not self._ready:
            if self._stopping:
                return None
            if len(self._workers) > 1 and time.monotonic() - idle_since >= _IDLE_EXIT:
                self._workers.discard(threading.current_thread())
                return None
            self._idle += 1
            try:
                self._wakeup.wait(_IDLE_EXIT)
            finally:
                self._idle -= 1
        return self._ready.popleft()

    def cancel(self, channel: Channel) -> None:
        """Drop the channel's pending calls and every later one (the running one finishes)."""
        with self._lock:
            # Only workers pop items: a channel in the ready queue keeps its items until a
            # worker takes it and sees the flag.
            channel.cancelled = True

    def stop(self, join_timeout: float) -> bool:
        """Let the workers finish what is queued, then exit.

        Joins them for up to ``join_timeout`` seconds, except the calling thread when it is
        a worker (a callback that closes its client must not wait for itself). Returns
        False when some worker was still running at the deadline.
        """
        with self._lock:
            self._stopping = True
            self._wakeup.notify_all()
            me = threading.current_thread()
            others = [t for t in self._workers if t is not me]
        deadline = time.monotonic() + max(0.0, join_timeout)
        for thread in others:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in others)
