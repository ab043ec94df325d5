"""``state_changes()``: a bounded stream of state changes, registered when created."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Self

from ..metrics import ClientMetrics
from ..types import ClientState, ClientStateChange

__all__ = ("StateChangeStream",)


class StateChangeStream:
    """``async for change in zk.state_changes()``: every change from its creation on.

    Registered the moment it is created (not at the first ``__anext__``), so a change
    that happens before the consumer starts iterating is not missed. It ends after CLOSED.
    At most ``maxlen`` changes wait for a consumer; beyond that the oldest are dropped
    (the latest state is always kept).
    """

    def __init__(self, maxlen: int, *, ended: bool = False,
                 metrics: ClientMetrics | None = None) -> None:
        self._queue: deque[ClientStateChange] = deque(maxlen=maxlen)
        self._wakeup = asyncio.Event()
        self._ended = ended
        self._metrics = metrics

    def put(self, change: ClientStateChange) -> None:
        if self._ended:
            return
        queue = self._queue
        if self._metrics is not None:
            if len(queue) == queue.maxlen:
                self._metrics.queue_overflow("state")
            self._metrics.queue_depth("state", min(len(queue) + 1, queue.maxlen or 0))
        queue.append(change)
        if change.state is ClientState.CLOSED:
            self._ended = True
        self._wakeup.set()

    def end(self) -> None:
        self._ended = True
        self._wakeup.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ClientStateChange:
        while not self._queue:
            if self._ended:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._queue.popleft()

    async def aclose(self) -> None:
        """Stop the stream; later iteration raises StopAsyncIteration."""
        self._queue.clear()
        self.end()
