"""The callback watches of :class:`~zkwarden.Client`: ``watch()`` and ``add_watch()``.

Each arms a watch of the AsyncClient on the loop thread (a one-shot callback watch, or
a persistent watch stream) and returns a :class:`WatchHandle` whose callbacks run on the
dispatcher. Arming is a blocking call like any other: with the
default ``timeout`` its wait for a connection is bounded (the stream itself would re-arm
through connection loss without end, right for a subscription, wrong for a call).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal, TypeVar

from .._aio.client import AsyncClient
from .._aio.options import forked_since
from ..errors import ConnectionLossError, InvalidArgumentError
from ..types import WatchEvent
from ._dispatch import Dispatcher
from ._watch import WatchHandle

__all__ = ("Watches",)

T = TypeVar("T")


class Watches:
    """Mixin of :class:`~zkwarden.Client`: callback watches, blocking until armed."""

    _aio: AsyncClient
    _dispatcher: Dispatcher
    _max_queued: int
    _session_timeout: float
    _pid: int

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None, what: str) -> T:
        raise NotImplementedError  # provided by Client

    def _wait_for_connection(self, timeout: float | None, what: str) -> None:
        raise NotImplementedError  # provided by Client

    def _connection_wait(self) -> float:
        raise NotImplementedError  # provided by Client

    # What a WatchHandle needs of its client (the WatchOwner protocol).
    def _check_fork(self) -> None:
        raise NotImplementedError  # provided by Client

    def _portal_call_soon(self, fn: Callable[[], object]) -> None:
        raise NotImplementedError  # provided by Client

    def _track(self, task: asyncio.Task[None]) -> None:
        raise NotImplementedError  # provided by Client

    def watch(
        self,
        path: str,
        kind: Literal["data", "exists", "children"] = "data",
        callback: Callable[[WatchEvent], object] | None = None,
        *,
        on_error: Callable[[Exception], object] | None = None,
        timeout: float | None = None,
    ) -> WatchHandle:
        """Call ``callback(event)`` for the state of ``path`` now and after every change.

        The stream of :meth:`AsyncClient.watch` (one-shot watches re-armed in the same
        read): the first event (type NONE) holds the current state (``data``/``stat``/
        ``children``, or ``stat`` None while the node is absent), each later one the state
        read when re-arming. Returns once the watch is armed, so any change made after it
        returns is seen. Callbacks run on a dispatcher thread, one at a time and in order
        for this watch; while one runs, later events coalesce into the newest (at most one
        call waits, and it carries the latest state). When the stream ends
        (SessionExpiredError, ClientClosedError, or an error re-arming it)
        ``on_error(exc)`` is called once, or the end is logged at info level; after a
        session expiry, call watch() again for the new session.

        With the default ``timeout`` it waits for a connection at most the connection wait
        (see the class doc), and then for the watch to be armed at most one more
        connection wait plus the read timeout; ``timeout=FOREVER`` waits for a connection
        as long as it takes. Whenever it raises, nothing stays subscribed.

        Raises:
            InvalidPathError, InvalidArgumentError (unknown kind, no callback),
            NoAuthError, ConnectionLossError (no connection to arm it within the default
            wait), RequestTimeoutError (not armed within ``timeout``),
            SessionExpiredError, ClientClosedError, ForkedClientError.
        """
        if callback is None or not callable(callback):
            raise InvalidArgumentError("watch() needs a callback(event)")
        handle = WatchHandle(self, self._dispatcher, path, kind, callback, on_error,
                             self._max_queued)
        # The AsyncClient's watch subscriptions, without a stream: see CallbackWatch.
        subscriptions = self._aio._subs
        self._arm(handle, lambda: handle.subscribe_one_shot(subscriptions), timeout)
        return handle

    def add_watch(
        self,
        path: str,
        callback: Callable[[WatchEvent], object],
        *,
        recursive: bool = True,
        on_error: Callable[[Exception], object] | None = None,
        timeout: float | None = None,
    ) -> WatchHandle:
        """A persistent (``recursive=False``) or persistent recursive watch (ZK >= 3.6)
        calling ``callback(event)`` for every change.

        The stream of :meth:`AsyncClient.add_watch`: an event of type NONE marks each time
        the watch was (re-)armed (first at once; then after each reconnect, when changes
        made meanwhile are not replayed: re-read what you keep). Returns once armed, within
        the same bounds as :meth:`watch`. Callbacks and ``on_error`` run as for
        :meth:`watch`, except that events are not coalesced: up to ``max_queued_events``
        wait while the callback is busy, and past that bound they are dropped and one
        event of type NONE is delivered instead (re-read, as after a reconnect).

        Raises:
            InvalidPathError, InvalidArgumentError (no callback), NoAuthError,
            UnimplementedError (server < 3.6), ConnectionLossError (no connection to arm
            it within the default wait), RequestTimeoutError (not armed within
            ``timeout``), SessionExpiredError, ClientClosedError, ForkedClientError.
        """
        if not callable(callback):
            raise InvalidArgumentError("add_watch() needs a callback(event)")
        kind = "persistent_recursive" if recursive else "persistent"
        handle = WatchHandle(self, self._dispatcher, path, kind, callback, on_error,
                             self._max_queued)
        self._arm(handle, lambda: handle.subscribe(
            self._aio.add_watch(path, recursive=recursive)), timeout)
        return handle

    def _arm(self, handle: WatchHandle, subscribe: Callable[[], Awaitable[None]],
             timeout: float | None) -> None:
        what = f"{handle.kind} watch on {handle.path!r}"
        # Connected first (so a stream is made for the session it will be armed on), then
        # armed. The stream re-arms through connection loss without end (right for a
        # subscription, wrong for a call), so the default also bounds the arming itself:
        # one more connection wait plus a read timeout (2/3 of the session timeout).
        bound = None
        if timeout is None:
            session = self._aio.negotiated_timeout or self._session_timeout
            bound = self._connection_wait() + session * 2 / 3
        try:
            self._wait_for_connection(timeout, what)
            self._run(self._subscribe(subscribe, bound, what), timeout, what)
        except BaseException:
            # A timeout may cancel our wait just after the loop finished arming: the caller
            # gets no handle, so nothing may stay subscribed.
            if not (forked_since(self._pid)):
                handle.cancel()
            raise

    async def _subscribe(self, subscribe: Callable[[], Awaitable[None]],
                         bound: float | None, what: str) -> None:
        deadline = asyncio.timeout(bound)
        try:
            async with deadline:
                await subscribe()
        except TimeoutError:
            if not deadline.expired():
                raise  # not ours
            raise ConnectionLossError(
                f"{what} not armed within {bound:.1f}s (state {self._aio.state.value})"
            ) from None
