"""What every blocking recipe twin shares: the async recipe built and driven on the
:class:`~zkwarden.Client`'s loop thread, and thread-side views of its loop-side events.

The rule (DESIGN section 2): one implementation. A blocking recipe holds the async recipe
and runs each of its coroutines with ``Client.run_coroutine`` while the calling thread
waits; it never re-implements an algorithm. The async object is constructed on the loop
thread (its events, locks and task owners belong to that loop).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..sync.client import Client

__all__ = ("LoopEvent", "SyncRecipe", "build_on_loop", "spawn_callback")

T = TypeVar("T")


async def _construct(factory: Callable[[], T]) -> T:
    return factory()


def build_on_loop(zk: Client, factory: Callable[[], T]) -> T:
    """Call ``factory()`` on ``zk``'s loop thread (where the async recipe must live).

    Raises:
        ClientClosedError: the client is not started, or closed.
        whatever ``factory`` raises (InvalidPathError, InvalidArgumentError).
    """
    return zk.run_coroutine(_construct(factory))


async def _wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


class LoopEvent:
    """A read-only, :class:`threading.Event`-like view of an ``asyncio.Event`` that lives on
    the client's loop: ``is_set()`` reads it at once, ``wait(timeout)`` blocks the calling
    thread (not the loop) until it is set.
    """

    __slots__ = ("_zk", "_event")

    def __init__(self, zk: Client, event: asyncio.Event) -> None:
        self._zk = zk
        self._event = event

    def is_set(self) -> bool:
        """True once the event is set."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the event is set (True) or ``timeout`` seconds passed (False).

        Raises:
            ClientClosedError: the client closed while waiting (and the event is not set).
        """
        if self._event.is_set():
            return True
        return self._zk.run_coroutine(_wait_event(self._event, timeout))

    def __bool__(self) -> bool:
        return self._event.is_set()

    def __repr__(self) -> str:
        return f"<LoopEvent {'set' if self._event.is_set() else 'unset'}>"


def spawn_callback(fn: Callable[..., object], *args: Any, name: str) -> None:
    """Run a user callback on a thread of its own (never on the loop thread: it may block
    or call the client). Exceptions are left to ``threading.excepthook``."""
    threading.Thread(target=fn, args=args, name=name, daemon=True).start()


class SyncRecipe:
    """Base of the blocking twins: ``self._zk`` (the Client) and :meth:`_run`."""

    _zk: Client

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop, the calling thread waiting (at most ``timeout``).

        Raises:
            RequestTimeoutError: not done within ``timeout`` (it was cancelled).
            ClientClosedError, and whatever the coroutine raises.
        """
        return self._zk.run_coroutine(coro, timeout=timeout)
