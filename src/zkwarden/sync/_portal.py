"""One asyncio event loop on one daemon thread, and blocking calls into it.

Every ``Client`` method is ``portal.run(coroutine, timeout)``: the coroutine runs as a task
on the loop thread while the caller's thread blocks on a lock that the task releases as
its last step. The loop thread never runs user code, so a blocking caller can
never deadlock it.
"""

from __future__ import annotations

import asyncio
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
        # Loop-thread only: calls whose task has not finished yet.
        self._pending: set[_Call] = set()

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
                # A task that ignored cancellation, or was cancelled before it started:
                # its caller must not wait forever.
                for call in list(self._pending):
                    if not call.started and call.coro is not None:
                        call.coro.close()
                    call.finish(None, ClientClosedError("client closed"))
                self._pending.clear()
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

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None, what: str) -> T:
        """Run ``coro`` on the loop and wait for its result.

        Raises:
            RequestTimeoutError: not done within ``timeout`` seconds (it is cancelled).
            ClientClosedError: the loop stopped before the coroutine finished.
            ClientError: called from the loop thread itself, where blocking would deadlock.
            whatever the coroutine raises.
        """
        if self.in_loop_thread():
            coro.close()
            raise ClientError(
                "blocking Client call on the client's own event-loop thread; use the "
                "AsyncClient from coroutines running there"
            )
        call = _Call(coro)
        with self._lock:
            if self._stopped:
                coro.close()
                raise ClientClosedError("client is closed")
            self._loop.call_soon_threadsafe(self._start, call)
        return self._wait(call, timeout, what)  # type: ignore[no-any-return]

    def _wait(self, call: _Call, timeout: float | None, what: str) -> Any:
        try:
            if not call.released.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
                # Lost the race by a hair? Then the result is there: return it.
                if not call.released.acquire(blocking=False):
                    self._cancel_soon(call)
                    raise RequestTimeoutError(
                        f"{what} did not finish within {timeout}s (outcome unknown)"
                    )
        except BaseException:
            # KeyboardInterrupt in the waiting thread: do not leave the call running.
            if not call.finished:
                self._cancel_soon(call)
            raise
        if call.error is not None:
            if isinstance(call.error, asyncio.CancelledError):
                raise ClientClosedError(f"{what}: client closed") from None
            raise call.error
        return call.result

    def run_direct(
        self,
        send: Callable[[_Call], bool],
        fallback: Callable[[], Coroutine[Any, Any, T]],
        timeout: float | None,
        what: str,
    ) -> T:
        """Like :meth:`run` for one request that needs no coroutine: on the loop thread,
        ``send(call)`` sends it with the call as its reply sink, answered synchronously
        when the reply is decoded (no task, no future, one loop turn less); when it cannot
        send (not connected), ``fallback()`` makes the coroutine that runs as in :meth:`run`.

        Raises:
            the same as :meth:`run`.
        """
        if self.in_loop_thread():
            raise ClientError(
                "blocking Client call on the client's own event-loop thread; use the "
                "AsyncClient from coroutines running there"
            )
        call = _Call(None)
        call.pending = self._pending
        with self._lock:
            if self._stopped:
                raise ClientClosedError("client is closed")
            self._loop.call_soon_threadsafe(self._start_direct, call, send, fallback)
        return self._wait(call, timeout, what)  # type: ignore[no-any-return]

    def _start_direct(
        self, call: _Call, send: Callable[[_Call], bool],
        fallback: Callable[[], Coroutine[Any, Any, Any]],
    ) -> None:
        if call.cancelled:
            call.finish(None, asyncio.CancelledError())
            return
        self._pending.add(call)
        call.started = True
        try:
            if send(call):
                return
        except BaseException as exc:  # a bug below must reach the caller, not the loop
            call.finish(None, exc)
            return
        call.started = False
        call.coro = fallback()
        call.task = self._loop.create_task(self._drive(call))

    # Why not asyncio.run_coroutine_threadsafe: its concurrent.futures.Future, chained
    # through callbacks, costs about a third of the facade's per-call overhead; a task
    # plus a lock is all a blocking call needs. The task releases the lock itself, as its
    # last step (_drive), rather than from a done-callback: that callback would run one
    # loop iteration later, a turn of the loop (and a poll of the selector) per call.

    def _start(self, call: _Call) -> None:
        if call.cancelled:
            if call.coro is not None:
                call.coro.close()
            call.finish(None, asyncio.CancelledError())
            return
        call.task = self._loop.create_task(self._drive(call))
        self._pending.add(call)

    async def _drive(self, call: _Call) -> None:
        # Not reached when the task is cancelled before its first step: _Call.cancel and
        # the shutdown in _run answer the caller and close the coroutine then.
        call.started = True
        assert call.coro is not None  # set before the task is made
        try:
            result = await call.coro
        except BaseException as exc:
            call.finish(None, exc)
            if not isinstance(exc, Exception):  # cancelled, or the loop must stop
                raise
        else:
            call.finish(result, None)
        finally:
            self._pending.discard(call)

    def _cancel_soon(self, call: _Call) -> None:
        with self._lock:
            if self._stopped:
                return  # the loop cancels and answers every pending call when it stops
            self._loop.call_soon_threadsafe(self._cancel, call)

    def _cancel(self, call: _Call) -> None:  # on the loop thread
        call.cancelled = True
        if call.task is None:
            if call.started:  # a direct call in flight: its late reply finds it done
                call.finish(None, asyncio.CancelledError())
            return  # or not started yet: _start sees ``cancelled``
        call.task.cancel()
        if not call.started:
            # Its first step will throw into _drive before its body runs: answer now.
            if call.coro is not None:
                call.coro.close()
            call.finish(None, asyncio.CancelledError())
            self._pending.discard(call)

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


class _Call:
    """One blocking call: the caller waits on ``released``, released when the task
    finishes, or (a direct call) when the engine answers it as a reply sink
    (``done``/``set_result``/``set_exception``, on the loop thread)."""

    __slots__ = ("coro", "released", "result", "error", "task", "cancelled", "started",
                 "finished", "pending")

    def __init__(self, coro: Coroutine[Any, Any, Any] | None) -> None:
        self.coro = coro
        self.released = threading.Lock()
        self.released.acquire()
        self.result: Any = None
        self.error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None
        self.cancelled = False
        self.started = False
        self.finished = False
        # Direct calls: the portal's set of unfinished calls, left when answered.
        self.pending: set[_Call] | None = None

    def finish(self, result: Any, error: BaseException | None) -> None:
        if self.finished:
            return
        self.result, self.error, self.finished = result, error, True
        if self.pending is not None:
            self.pending.discard(self)
        self.released.release()

    # The engine's ReplySink (zkwarden._aio.engine): a direct call's request outcome.

    def done(self) -> bool:
        return self.finished

    def set_result(self, result: Any, /) -> None:
        self.finish(result, None)

    def set_exception(self, exception: BaseException, /) -> None:
        self.finish(None, exception)

