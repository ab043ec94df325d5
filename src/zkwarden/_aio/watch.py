"""Watch streams: async iterators over watch events that never end silently (rule 1).

``WatchStream`` wraps one-shot watches: the first item is the current state, and every
later item comes from a read that re-arms the watch in the same request (rule 2), so a
burst of changes may be coalesced but the stream always ends on the latest value.
``PersistentWatchStream`` wraps addWatch. Both end with exactly one exception
(SessionExpiredError or ClientClosedError), then StopAsyncIteration forever.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Generator
from typing import Any, Self

from ..errors import (
    ClientClosedError,
    ConnectionLossError,
    NoNodeError,
    RequestTimeoutError,
    SessionExpiredError,
    ZooKeeperError,
)
from ..protocol import ops
from ..protocol.ops import WatchKind
from ..types import EventType, KeeperState, WatchEvent
from .subscriber import Subscriber
from .subscriptions import Subscriptions

__all__ = ("Subscriber", "WatchStream", "PersistentWatchStream")

log = logging.getLogger("zkwarden.watch")


def _collected(delivery: _Delivery) -> None:
    """A stream was garbage-collected without being closed: unregister it (the weak
    reference's callback; it runs wherever the collector runs, see Subscriptions.abandon)."""
    if not delivery.closed:
        delivery.subs.abandon(delivery, delivery.persistent)


class _Delivery(weakref.ref["_StreamBase"]):
    """What the client's tables hold for a stream: a weak reference to it.

    ``async for ... : break`` does not close a plain async iterator, so a stream left that
    way must not live on in the client (a persistent one would queue events forever).
    Held weakly, it is collected, and this reference's callback unregisters it (see
    :meth:`Subscriptions.abandon`). Being the weak reference itself (rather than holding
    one, plus a ``weakref.finalize``) makes it one object per stream instead of four.
    """

    __slots__ = ("path", "one_shot", "armed", "subs", "persistent", "closed")

    # Identity, as for any subscriber: a weak reference would compare and hash its
    # referent (and fail to hash once the referent is gone).
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __new__(cls, stream: _StreamBase, one_shot: bool,
                persistent: WatchKind | None) -> _Delivery:
        return super().__new__(cls, stream, _collected)

    def __init__(self, stream: _StreamBase, one_shot: bool,
                 persistent: WatchKind | None) -> None:
        # (weakref.ref.__new__ did the referencing; its __init__ would only re-check args)
        self.path = stream.path
        self.one_shot = one_shot
        #: a persistent watch registered on the server (to remove if abandoned)
        self.armed = False
        self.subs = stream._subs
        #: the persistent kind to remove from the server when abandoned (None: one-shot)
        self.persistent = persistent
        #: the stream closed itself: nothing to do when it is collected
        self.closed = False

    def deliver(self, event: WatchEvent) -> None:
        stream = self()
        if stream is not None:
            stream.deliver(event)

    def end(self, exc: ZooKeeperError) -> None:
        stream = self()
        if stream is not None:
            stream.end(exc)

    def reconnected(self) -> None:
        stream = self()
        if stream is not None:
            stream.reconnected()

    @property
    def ended(self) -> bool:
        stream = self()
        return stream is None or stream.ended


class _StreamBase:
    # Slotted: one stream per watched path, and 10,000 of them are a normal load.
    __slots__ = ("_subs", "path", "_waiter", "_error", "_finished", "_registered",
                 "_delivery", "__weakref__")

    def __init__(self, subscriptions: Subscriptions, path: str,
                 persistent: WatchKind | None) -> None:
        self._subs = subscriptions
        self.path = path
        # Made only while a consumer waits (an asyncio.Event per stream would hold a
        # deque of ~600 bytes for its whole life).
        self._waiter: asyncio.Future[None] | None = None
        self._error: ZooKeeperError | None = None
        self._finished = False
        self._registered = False
        self._delivery = _Delivery(self, persistent is None, persistent)

    def _register(self) -> None:
        if not self._registered:
            self._subs.register(self._delivery)
            self._registered = True

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _new_waiter(self) -> asyncio.Future[None]:
        """The future the consumer awaits next (set by :meth:`_wake`)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        return waiter

    def deliver(self, event: WatchEvent) -> None:
        raise NotImplementedError

    def reconnected(self) -> None:
        raise NotImplementedError

    def end(self, exc: ZooKeeperError) -> None:
        if self._error is None and not self._finished:
            self._error = exc
        self._wake()

    def _raise_end(self) -> None:
        """Raise the ending exception once, then StopAsyncIteration forever."""
        if self._finished:
            raise StopAsyncIteration
        if self._error is not None:
            self._finished = True
            self._unregister()
            raise self._error

    def _unregister(self) -> None:
        self._delivery.closed = True
        self._subs.unregister(self._delivery, list(WatchKind))

    def __aiter__(self) -> Self:
        return self

    @property
    def ended(self) -> bool:
        return self._finished or self._error is not None


class WatchStream(_StreamBase):
    """``async for event in zk.watch(path, kind)``; see :meth:`AsyncClient.watch`."""

    __slots__ = ("kind", "_started", "_fired")

    def __init__(self, subscriptions: Subscriptions, path: str, kind: str) -> None:
        super().__init__(subscriptions, path, None)
        self.kind = kind
        self._started = False
        self._fired: WatchEvent | None = None

    # Subscriber
    def deliver(self, event: WatchEvent) -> None:
        self._fired = event
        self._wake()

    def reconnected(self) -> None:
        # SetWatches restores the server-side watch and replays what changed; nothing to do.
        pass

    async def __anext__(self) -> WatchEvent:
        self._raise_end()
        if not self._started:
            self._started = True
            self._register()
            return await self._read(EventType.NONE, KeeperState.SYNC_CONNECTED, -1)
        while self._fired is None:
            self._raise_end()
            try:
                await self._new_waiter()
            finally:
                self._waiter = None
        fired, self._fired = self._fired, None
        return await self._read(fired.type, fired.state, fired.zxid)

    async def _read(self, etype: EventType, state: KeeperState, zxid: int) -> WatchEvent:
        subs = self._subs
        server_path = subs.server_path(self.path)
        while True:
            self._raise_end()
            try:
                if self.kind == "exists":
                    stat = await subs.exists_watched(self.path, self._delivery)
                    return WatchEvent(etype, state, self.path, zxid, stat=stat)
                if self.kind == "data":
                    data, stat = await subs.call(
                        ops.GetData(server_path, True), self.path, self._delivery
                    )
                    return WatchEvent(etype, state, self.path, zxid, data=data, stat=stat)
                children, stat = await subs.call(
                    ops.GetChildren2(server_path, True), self.path, self._delivery
                )
                return WatchEvent(etype, state, self.path, zxid, children=tuple(children),
                                  stat=stat)
            except NoNodeError:
                # Absent node: arm an exists watch instead, so creation wakes us. If it
                # appeared in between, read it again.
                try:
                    stat = await subs.exists_watched(self.path, self._delivery)
                except (ConnectionLossError, SessionExpiredError, ClientClosedError) as exc:
                    await self._on_read_error(exc)
                    continue
                except ZooKeeperError as exc:
                    self._fail(exc)
                if stat is None:
                    return WatchEvent(etype, state, self.path, zxid)
            except (ConnectionLossError, SessionExpiredError, ClientClosedError) as exc:
                await self._on_read_error(exc)
            except ZooKeeperError as exc:
                self._fail(exc)

    def _fail(self, exc: ZooKeeperError) -> None:
        """Any other error (NoAuth, ...) ends the stream with it: no watch is armed, and
        waiting on would wait forever."""
        self.end(exc)
        self._raise_end()

    async def _on_read_error(self, exc: ZooKeeperError) -> None:
        if isinstance(exc, (SessionExpiredError, ClientClosedError)):
            self._fail(exc)
        # Connection loss: the watch was not armed; wait for the session to come back and
        # read again (waiting raises if the session ends or the client closes).
        try:
            await self._subs.wait_connected()
        except (ConnectionLossError, RequestTimeoutError):
            pass
        except ZooKeeperError as end_exc:
            self._fail(end_exc)

    async def aclose(self) -> None:
        """Stop the stream; later iteration raises StopAsyncIteration.

        The one-shot watch it had armed is removed from the server too when no other
        stream of this client watches the path (otherwise a watch on a node that never
        comes back would stay on the server for the whole session).
        """
        if self._finished:
            return
        self._finished = True
        self._wake()
        self._delivery.closed = True
        armed = self._subs.unregister_one_shot(self._delivery)
        if armed and not self._subs.has_other_watchers(self.path):
            await self._subs.remove_one_shot_watches(self.path, armed)


class PersistentWatchStream(_StreamBase):
    """``async for event in zk.add_watch(path)``; see :meth:`AsyncClient.add_watch`."""

    __slots__ = ("recursive", "kind", "queue_limit", "_queue", "_armed", "_overflow_warned")

    def __init__(self, subscriptions: Subscriptions, path: str, recursive: bool) -> None:
        kind = WatchKind.PERSISTENT_RECURSIVE if recursive else WatchKind.PERSISTENT
        super().__init__(subscriptions, path, kind)
        self.recursive = recursive
        self.kind = kind
        #: events queued before the consumer is told it fell behind (the client's
        #: ``max_queued_events``; a cache raises it to what its view holds anyway)
        self.queue_limit = subscriptions.max_queued_events
        self._queue: deque[WatchEvent] = deque()
        self._armed = False
        self._overflow_warned = False

    def deliver(self, event: WatchEvent) -> None:
        queue = self._queue
        if len(queue) >= self.queue_limit:
            # The consumer fell behind (rule 8): what it missed is gone; one event of the
            # kind a reconnect yields tells it to re-read, and memory stays bounded.
            queue.clear()
            queue.append(WatchEvent(EventType.NONE, KeeperState.SYNC_CONNECTED, self.path))
            if not self._overflow_warned:
                self._overflow_warned = True
                log.warning("watch stream on %s fell %d events behind; events dropped",
                            self.path, self.queue_limit)
            if self._subs.engine.metrics is not None:
                self._subs.engine.metrics.queue_overflow("watch")
        queue.append(event)
        if self._subs.engine.metrics is not None:
            self._subs.engine.metrics.queue_depth("watch", len(queue))
        self._wake()

    def reconnected(self) -> None:
        # The server re-registers persistent watches without replaying missed changes.
        self._queue.append(WatchEvent(EventType.NONE, KeeperState.SYNC_CONNECTED, self.path))
        self._wake()

    async def arm(self) -> PersistentWatchStream:
        """Register the watch on the server (idempotent).

        Raises:
            ConnectionLossError, SessionExpiredError, ClientClosedError, NoAuthError.
        """
        if self._armed:
            return self
        self._register()
        subs = self._subs
        await subs.call(
            ops.AddWatch(subs.server_path(self.path), 1 if self.recursive else 0),
            self.path, self._delivery,
        )
        self._armed = self._delivery.armed = True
        if self._finished:
            # aclose() ran while AddWatch was in flight: the server has the watch now, so
            # take it off again unless another stream still needs it.
            if not subs.has_other_watchers(self.path):
                await subs.remove_persistent_watch(self.path, self.kind)
            return self
        self._queue.appendleft(WatchEvent(EventType.NONE, KeeperState.SYNC_CONNECTED, self.path))
        return self

    def __await__(self) -> Generator[Any, None, PersistentWatchStream]:
        return self.arm().__await__()

    async def __anext__(self) -> WatchEvent:
        if not self._armed and not self.ended:
            while True:
                try:
                    await self.arm()
                    break
                except ConnectionLossError:
                    try:
                        await self._subs.wait_connected()
                    except (ConnectionLossError, RequestTimeoutError):
                        continue
                    except ZooKeeperError as exc:
                        self.end(exc)
                        break
                except ZooKeeperError as exc:
                    # NoAuth and the like end the stream too: nothing is armed.
                    self.end(exc)
                    break
        while True:
            if self._finished:
                raise StopAsyncIteration
            if self._queue:
                return self._queue.popleft()
            self._raise_end()
            try:
                await self._new_waiter()
            finally:
                self._waiter = None

    def take_pending(self) -> list[WatchEvent]:
        """Every event already queued, without waiting (lets a consumer batch its reads)."""
        events = list(self._queue)
        self._queue.clear()
        return events

    async def aclose(self) -> None:
        """Stop the stream and remove the watch from the server when it was the last one."""
        if self._finished:
            return
        self._finished = True
        self._wake()
        self._delivery.closed = True
        last = self._subs.unregister(self._delivery, [self.kind])
        if last and self._armed:
            await self._subs.remove_persistent_watch(self.path, self.kind)
