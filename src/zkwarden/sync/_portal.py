"""One asyncio event loop on one daemon thread, and blocking calls into it.

Every ``Client`` method is ``portal.run(coroutine, timeout)``: the coroutine runs on the
loop thread, the caller's thread blocks on a ``concurrent.futures.Future``. The loop
thread never runs user code, so a blocking caller can never deadlock it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import ClientClosedError, ClientError, RequestTimeoutError

__all__ = ("Portal",)

log = logging.getLogger("zkwarden.sync")

T = TypeVar("T")

# How long the loop thread waits, once stopped, for leftover tasks to obey cancellation
# and for the default executor (getaddrinfo, the blocking CloseSession fallback) to finish.
_DRAIN_TIMEOUT = 2.0


class Portal:
    """An event loop running on its own daemon thread (started by :meth:`start`)."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        # Held while submitting and while stopping, so nothing is submitted to a loop that
        # will never run it (the caller would wait forever).
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def stopped(self) -> bool:
        return self._stopped

    def start(self) -> None:
        # Calls submitted before run_forever() begins just wait in the loop's ready queue.
        self._thread.start()

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                self._drain(loop)
            except Exception:
                log.exception("error while shutting down the client's event loop")
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    @staticmethod
    def _drain(loop: asyncio.AbstractEventLoop) -> None:
        # Cancel whatever is left (calls racing close(), watch pumps) so every blocked
        # caller gets its answer, then stop the executor threads asyncio started for us.
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.wait(tasks, timeout=_DRAIN_TIMEOUT))
        loop.run_until_complete(loop.shutdown_asyncgens())
        shutdown = loop.create_task(loop.shutdown_default_executor())
        loop.run_until_complete(asyncio.wait([shutdown], timeout=_DRAIN_TIMEOUT))

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop.

        Raises:
            ClientClosedError: the loop was stopped (the coroutine is discarded).
            ClientError: called from the loop thread itself, where blocking would deadlock.
        """
        if self.in_loop_thread():
            coro.close()
            raise ClientError(
                "blocking Client call on the client's own event-loop thread; use the "
                "AsyncClient from coroutines running there"
            )
        with self._lock:
            if self._stopped:
                coro.close()
                raise ClientClosedError("client is closed")
            return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None, what: str) -> T:
        """Run ``coro`` on the loop and wait for its result.

        Raises:
            RequestTimeoutError: not done within ``timeout`` seconds (it is cancelled).
            ClientClosedError: the loop stopped before the coroutine finished.
            whatever the coroutine raises.
        """
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.CancelledError:
            raise ClientClosedError(f"{what}: client closed") from None
        except TimeoutError:
            # builtin TimeoutError is also what the coroutine itself may have raised
            # (RequestTimeoutError subclasses it): only a pending future is our timeout.
            if future.done() or not future.cancel():
                return self._settled(future, what)
            raise RequestTimeoutError(
                f"{what} did not finish within {timeout}s (outcome unknown)"
            ) from None
        except BaseException:
            # KeyboardInterrupt in the waiting thread: do not leave the call running.
            future.cancel()
            raise

    @staticmethod
    def _settled(future: concurrent.futures.Future[T], what: str) -> T:
        try:
            return future.result(0)
        except concurrent.futures.CancelledError:
            raise ClientClosedError(f"{what}: client closed") from None

    def call_soon(self, fn: Callable[[], object]) -> bool:
        """Run ``fn()`` on the loop thread soon; False when the loop is stopped."""
        with self._lock:
            if self._stopped:
                return False
            self._loop.call_soon_threadsafe(fn)
            return True

    def stop(self, join_timeout: float) -> bool:
        """Stop the loop (it cancels what is left, then closes) and join its thread for up
        to ``join_timeout`` seconds (not when called on the loop thread). Idempotent.

        Returns False when the thread was still alive at the deadline.
        """
        with self._lock:
            if not self._stopped:
                self._stopped = True
                if self._thread.ident is None:  # never started: nothing runs the loop
                    self._loop.close()
                    return True
                try:
                    self._loop.call_soon_threadsafe(self._loop.stop)
                except RuntimeError:  # the loop already closed (its thread is gone)
                    return True
        if self.in_loop_thread() or self._thread.ident is None:
            return True
        self._thread.join(max(0.0, join_timeout))
        return not self._thread.is_alive()
