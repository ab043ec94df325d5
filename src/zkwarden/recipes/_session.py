"""What recipes need to know of the session: each state change, as something to await.

DESIGN section 4 for holders: SUSPENDED pauses (the hold is uncertain, nothing is
deleted), LOST revokes (ephemerals are gone; waiters queue again on the new session).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .._aio.client import AsyncClient
from ..types import ClientState, ClientStateChange

__all__ = ("SessionEvents",)


class SessionEvents:
    """Follows one client's state changes; :meth:`changed` is awaitable until the next one.

    ``on_change`` callbacks run on the event loop, synchronously, in the order added.
    """

    def __init__(self, zk: AsyncClient) -> None:
        self._zk = zk
        self._next: asyncio.Event = asyncio.Event()
        self.last: ClientStateChange | None = None
        self._callbacks: list[Callable[[ClientStateChange], object]] = []
        zk.add_listener(self._on_change)

    @property
    def state(self) -> ClientState:
        return self._zk.state

    def on_change(self, fn: Callable[[ClientStateChange], object]) -> None:
        self._callbacks.append(fn)

    def _on_change(self, change: ClientStateChange) -> None:
        self.last = change
        event, self._next = self._next, asyncio.Event()
        event.set()
        for fn in list(self._callbacks):
            fn(change)

    def changed(self) -> asyncio.Event:
        """An event set at the next state change (take it before awaiting anything else)."""
        return self._next

    def close(self) -> None:
        self._zk.remove_listener(self._on_change)
        self._callbacks.clear()
