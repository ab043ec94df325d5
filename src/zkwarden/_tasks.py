"""TaskOwner: the one place a background task is created, watched and ended.

Every background task in zkwarden has an owner (a registry, a cache, an agent, a view)
that keeps it here. The owner guarantees three things ``loop.create_task`` alone does not:

* the task is referenced until it ends (the event loop keeps only a weak reference, so
  an unreferenced task can vanish mid-flight);
* a task that dies of an unexpected exception has it logged, with its traceback, the
  moment it dies, instead of at garbage collection ("exception was never retrieved") or
  never (when a ``gather(..., return_exceptions=True)`` on close swallows it);
* ``aclose()`` cancels every task and awaits them, within a bound, so nothing outlives
  its owner.

Exceptions that a task's owner reads and handles itself belong inside the task's own
``try``; what escapes the coroutine is a bug or an outcome nobody else reads, and is
logged here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from .errors import ClientClosedError

__all__ = ("TaskOwner",)

T = TypeVar("T")

log = logging.getLogger("zkwarden.tasks")


class TaskOwner:
    """Creates named tasks, logs their unexpected exceptions, and ends them on close.

    ``name`` prefixes every task name (``"registry /services: register /services/web/1"``),
    so a task listing from ``asyncio.all_tasks()`` says who owns what. ``logger`` gets
    the error records (default: ``zkwarden.tasks``).
    """

    def __init__(self, name: str, logger: logging.Logger | None = None) -> None:
        self.name = name
        self._log = logger or log
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` has started: no new task is accepted."""
        return self._closed

    def __len__(self) -> int:
        """How many tasks are still running."""
        return len(self._tasks)

    def tasks(self) -> list[asyncio.Task[Any]]:
        """The tasks still running (a copy)."""
        return list(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        """Run ``coro`` as a task owned here; it must be called from the owner's loop.

        The returned task may be cancelled or awaited by the caller as usual; if it ends
        with an exception other than cancellation, that exception is logged at ERROR.

        Raises:
            ClientClosedError: the owner is closed (``coro`` is closed, never run).
            RuntimeError (builtin): no running event loop (a programming error).
        """
        if self._closed:
            coro.close()
            raise ClientClosedError(f"{self.name} is closed")
        label = f"{self.name}: {name}" if name else self.name
        task = asyncio.get_running_loop().create_task(coro, name=label)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # reading it also marks it retrieved
        if exc is not None:
            self._log.error(
                "background task %r failed: %r", task.get_name(), exc,
                exc_info=(type(exc), exc, exc.__traceback__),
            )

    async def aclose(self, timeout: float = 5.0) -> None:
        """Cancel every task and wait for them to end, at most ``timeout`` seconds.

        Idempotent. Tasks spawned by a task being cancelled are cancelled too. A task
        that ignores cancellation longer than the bound is logged and left (the bound
        wins over completeness: close must end). Never raises, except CancelledError
        when the caller itself is cancelled.
        """
        self._closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        current = asyncio.current_task()
        while True:
            pending = [t for t in self._tasks if t is not current and not t.done()]
            if not pending:
                return
            for task in pending:
                task.cancel()
            left = deadline - loop.time()
            if left <= 0:
                break
            await asyncio.wait(pending, timeout=left)
        stuck = [t.get_name() for t in self._tasks if t is not current and not t.done()]
        if stuck:
            self._log.warning(
                "%s: %d task(s) still running %.1fs after cancel: %s",
                self.name, len(stuck), timeout, ", ".join(stuck),
            )
