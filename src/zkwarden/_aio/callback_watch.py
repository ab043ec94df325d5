"""Callback watches: a one-shot watch re-armed after every event, each state it reads
handed to a sink on the loop thread (the blocking ``Client.watch``), with no task, no
coroutine and no stream per watch. Same rules as :mod:`zkwarden._aio.watch`: the re-arm
is the read (rule 2), and the watch ends with exactly one error (rule 1).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from .. import paths as _paths
from ..errors import (
    ClientClosedError,
    ConnectionLossError,
    InvalidArgumentError,
    NoNodeError,
    RequestTimeoutError,
    ZooKeeperError,
)
from ..protocol import ops
from ..protocol.ops import WatchKind
from ..types import EventType, KeeperState, WatchEvent
from .subscriptions import Subscriptions

__all__ = ("CallbackWatch", "WatchSink")

log = logging.getLogger("zkwarden.watch")


class WatchSink(Protocol):
    """Where a :class:`CallbackWatch` hands what it reads (on the loop thread)."""

    def watch_event(self, event: WatchEvent) -> None: ...

    def watch_ended(self, exc: ZooKeeperError) -> None: ...


# CallbackWatch states
_STARTING, _IDLE, _READING, _ENDED = 0, 1, 2, 3


class CallbackWatch:
    """A one-shot watch re-armed after every event, handing each state it reads to a sink:
    the blocking ``Client.watch`` callback, without a task, a coroutine or a stream per
    watch.

    The same reads as :class:`WatchStream` (each re-arms the watch in the same request,
    rule 2) but eager: an event starts the re-read at once from the engine's dispatch, and
    the reply's done-callback hands the result over. Only while a read has to wait (no
    connection) or falls back to an exists watch (absent node) does one task run, for that
    watch, until the read is done. An event fired while a read is in flight is re-read
    once that read is in, so the sink sees states in order and always the latest last.
    The sink hears of the end once (``watch_ended``), never after :meth:`close`.
    """

    # Per watch: nine slots, no __dict__, no Event, no weak reference.
    __slots__ = ("_subs", "path", "kind", "_sink", "_state", "_cause", "_fired", "_task",
                 "_error")

    one_shot = True
    #: only persistent watches are registered as armed (for removal when abandoned)
    armed = False

    def __init__(self, subscriptions: Subscriptions, path: str, kind: str,
                 sink: WatchSink) -> None:
        """Raises:
        InvalidPathError, InvalidArgumentError (unknown kind)."""
        if kind not in ("data", "exists", "children"):
            raise InvalidArgumentError(
                f"kind must be 'data', 'exists' or 'children', not {kind!r}")
        _paths.validate(path)
        self._subs = subscriptions
        self.path = path
        self.kind = kind
        self._sink = sink
        self._state = _IDLE
        # The event whose re-read is in flight, and one fired meanwhile (re-read next).
        self._cause: WatchEvent | None = None
        self._fired: WatchEvent | None = None
        self._task: asyncio.Task[None] | None = None
        # What ended the watch while start() was arming it (start raises it).
        self._error: ZooKeeperError | None = None

    @property
    def ended(self) -> bool:
        return self._state == _ENDED

    async def start(self) -> None:
        """Subscribe, read the current state arming the watch, and hand it to the sink.

        Raises:
            NoAuthError (and any error that stops arming), SessionExpiredError,
            ClientClosedError, ForkedClientError; nothing stays subscribed then.
        """
        self._subs.register(self)
        self._state = _STARTING
        try:
            event = await self._read(EventType.NONE, KeeperState.SYNC_CONNECTED, -1, False)
        except BaseException:
            self.close()
            raise
        if event is None:  # ended while arming (session lost): a failed arming
            exc, self._error = self._error, None
            raise exc if exc is not None else ClientClosedError("watch closed while arming")
        self._state = _READING
        self._publish(event)

    # --- Subscriber (the engine's side) --------------------------------------------------

    def deliver(self, event: WatchEvent) -> None:
        if self._state == _IDLE:
            self._reread(event)
        elif self._state != _ENDED:
            self._fired = event  # coalesced: the read after this one returns the latest

    def reconnected(self) -> None:
        # SetWatches restores the server-side watch and replays what changed.
        pass

    def end(self, exc: ZooKeeperError) -> None:
        """The watch is over (session lost, client closed, or an error re-arming it)."""
        if self._state == _ENDED:
            return
        starting = self._state == _STARTING
        self._stop()
        self._subs.unregister(self, list(WatchKind))
        if starting:
            self._error = exc  # start() raises it: the caller gets no watch
        else:
            self._sink.watch_ended(exc)

    def close(self) -> None:
        """Stop quietly (the sink hears nothing more); the watch armed on the server is
        removed in the background unless another watcher of this client needs it."""
        if self._state == _ENDED:
            return
        self._stop()
        subs = self._subs
        armed = subs.unregister_one_shot(self)
        if armed and not subs.has_other_watchers(self.path):
            subs.spawn(subs.remove_one_shot_watches(self.path, armed))

    def _stop(self) -> None:
        self._state = _ENDED
        self._fired = self._cause = None
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    # --- reading -------------------------------------------------------------------------

    def _request(self) -> ops.Request:
        server_path = self._subs.server_path(self.path)
        if self.kind == "data":
            return ops.GetData(server_path, True)
        if self.kind == "children":
            return ops.GetChildren2(server_path, True)
        return ops.Exists(server_path, True)

    def _event(self, cause: WatchEvent, result: Any) -> WatchEvent:
        if self.kind == "data":
            return WatchEvent(cause.type, cause.state, self.path, cause.zxid,
                              data=result[0], stat=result[1])
        if self.kind == "children":
            return WatchEvent(cause.type, cause.state, self.path, cause.zxid,
                              children=tuple(result[0]), stat=result[1])
        return WatchEvent(cause.type, cause.state, self.path, cause.zxid, stat=result)

    def _reread(self, cause: WatchEvent) -> None:
        self._state = _READING
        self._cause = cause
        pending = self._subs.call(self._request(), self.path, self)
        if isinstance(pending, asyncio.Future):
            # Connected: the reply's future itself; no task, no coroutine.
            pending.add_done_callback(self._read_done)
            return
        if asyncio.iscoroutine(pending):
            pending.close()  # not started: nothing was sent
        self._recover(cause, False)

    def _read_done(self, fut: asyncio.Future[Any]) -> None:
        exc = None if fut.cancelled() else fut.exception()  # (retrieved, also when ended)
        cause = self._cause
        if self._state != _READING or cause is None:
            return
        if exc is None and not fut.cancelled():
            self._publish(self._event(cause, fut.result()))
        elif isinstance(exc, NoNodeError):
            if self.kind == "exists":  # armed on the absent node: that is the state
                self._publish(WatchEvent(cause.type, cause.state, self.path, cause.zxid))
            else:
                self._recover(cause, True)
        else:
            self._recover(cause, False)

    def _recover(self, cause: WatchEvent, absent: bool) -> None:
        """The read needs to wait (connection) or a second request (absent node): one task
        for it, until it is done."""
        self._task = self._subs.spawn(self._read_then_publish(cause, absent))

    async def _read_then_publish(self, cause: WatchEvent, absent: bool) -> None:
        try:
            event = await self._read(cause.type, cause.state, cause.zxid, absent)
        except ZooKeeperError as exc:
            self.end(exc)
            return
        self._task = None
        if event is not None:
            self._publish(event)

    def _publish(self, event: WatchEvent) -> None:
        if self._state != _READING:
            return
        self._state = _IDLE
        self._cause = None
        self._sink.watch_event(event)
        fired, self._fired = self._fired, None
        if fired is not None and self._state == _IDLE:
            self._reread(fired)

    async def _read(self, etype: EventType, state: KeeperState, zxid: int,
                    absent: bool) -> WatchEvent | None:
        """The node's state, read with the watch armed in the same request, through
        connection loss; None when the watch ended meanwhile.

        Raises:
            SessionExpiredError, ClientClosedError, AuthFailedError, and any other
            error that stops arming (NoAuthError, ...).
        """
        subs = self._subs
        while self._state != _ENDED:
            try:
                if self.kind == "exists" or absent:
                    # Absent node: an exists watch, so that creation wakes us. If it
                    # appeared in between, read it again.
                    absent = False
                    stat = await subs.exists_watched(self.path, self)
                    if stat is None or self.kind == "exists":
                        return WatchEvent(etype, state, self.path, zxid, stat=stat)
                    continue
                result = await subs.call(self._request(), self.path, self)
                return self._event(WatchEvent(etype, state, self.path, zxid), result)
            except NoNodeError:
                absent = True
            except ConnectionLossError:
                # Not armed: wait for the session to come back and read again (waiting
                # raises if the session ends or the client closes).
                try:
                    await subs.wait_connected()
                except (ConnectionLossError, RequestTimeoutError):
                    pass
        return None
