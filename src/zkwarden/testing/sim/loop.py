"""An asyncio event loop on virtual time.

The loop's clock only moves when the loop would otherwise wait: instead of sleeping until
the next timer, the selector returns at once and advances the clock by the wait. A run
that waits 30 "seconds" for a session to expire takes milliseconds, and every run of the
same program sees the same times.

Threads would make a run depend on the real scheduler, so ``run_in_executor`` (and with
it ``asyncio.to_thread``) runs the function inline, on the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import itertools
import random
import selectors
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ("VirtualTimeLoop", "SimDeadlockError", "run_virtual", "seeded_randomness")

T = TypeVar("T")


class SimDeadlockError(RuntimeError):
    """The loop has nothing to run and no timer to wait for: the program is stuck."""


class _VirtualSelector(selectors.DefaultSelector):
    """A real selector (the loop's self-pipe lives in it) that never blocks."""

    #: loop iterations at one instant of virtual time that count as a busy loop
    SPIN_LIMIT = 200_000

    def __init__(self) -> None:
        super().__init__()
        self.clock = 0.0
        self._spins = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if ready or timeout == 0:
            # Time stands still while handles are ready: a program that keeps rescheduling
            # itself at the same instant would spin a real CPU forever.
            self._spins += 1
            if self._spins > self.SPIN_LIMIT:
                raise SimDeadlockError(
                    f"busy loop: {self.SPIN_LIMIT} loop iterations at t={self.clock:.3f} "
                    "without time advancing"
                )
            return ready
        self._spins = 0
        if timeout is None:
            # No handle ready and no timer: nothing can ever happen again.
            raise SimDeadlockError("virtual-time loop is idle with no timer scheduled")
        self.clock += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` is virtual (starts at 0.0)."""

    def __init__(self) -> None:
        self._vselector = _VirtualSelector()
        super().__init__(self._vselector)
        # Timers due within this much of "now" run in the same iteration; with a clock
        # that jumps exactly to the next deadline, no slack is needed.
        self._clock_resolution = 1e-9

    def time(self) -> float:
        return self._vselector.clock

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (a "clock jump": timers become due)."""
        if seconds > 0:
            self._vselector.clock += seconds

    def run_in_executor(  # type: ignore[override]
        self, executor: concurrent.futures.Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        fut: asyncio.Future[T] = self.create_future()
        ctx = contextvars.copy_context()
        try:
            fut.set_result(ctx.run(func, *args))
        except BaseException as exc:  # handed to the awaiting caller, as an executor would
            fut.set_exception(exc)
        return fut


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualTimeLoop`, then close it.

    Tasks still running when ``main`` returns are cancelled and awaited (bounded).

    Raises:
        SimDeadlockError: the program waited with nothing left that could wake it.
        BaseException: whatever ``main`` raised.
    """
    loop = VirtualTimeLoop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_all(loop: VirtualTimeLoop) -> None:
    for _ in range(5):
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        if not tasks:
            return
        for task in tasks:
            task.cancel()

        loop.run_until_complete(asyncio.wait(tasks, timeout=5.0))
    for task in asyncio.all_tasks(loop):
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" noise at collection


@contextlib.contextmanager
def seeded_randomness(seed: int) -> Iterator[None]:
    """Make ``random.Random()`` without a seed (and the ``random`` module's functions)
    deterministic for the block: the client jitters its backoff with its own
    ``random.Random()`` and shuffles hosts with ``random.shuffle``."""
    counter = itertools.count()
    original = random.Random
    state = random.getstate()

    class _Seeded(original):  # type: ignore[valid-type,misc]
        def __init__(self, x: Any = None) -> None:
            super().__init__(x if x is not None else (seed, next(counter)).__hash__())

    random.seed(seed)
    random.Random = _Seeded  # type: ignore[misc]
    try:
        yield
    finally:
        random.Random = original  # type: ignore[misc]
        random.setstate(state)
