"""``AsyncFacade``: the AsyncClient API on top of a blocking ``Client``, for tests.

It lets the AsyncClient test-suite run unchanged through the sync facade: every coroutine
method calls the blocking ``Client`` method in a worker thread (``asyncio.to_thread``),
``transaction()`` is an async context manager, and ``watch()`` / ``add_watch()`` turn the
Client's callbacks back into async iterators with the same ending rules (one exception,
then ``StopAsyncIteration``).

    from _sync_adapter import AsyncFacade        # tests/ is on sys.path (tests/conftest.py)

    zk = AsyncFacade(Client(zk_hosts, session_timeout=4.0))
    await zk.start()
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Generator
from types import TracebackType
from typing import Any

from zkwarden import Client, ClientStateChange, WatchEvent, errors
from zkwarden import paths as _paths
from zkwarden.sync import WatchHandle
from zkwarden.sync.transaction import Transaction

__all__ = ("AsyncFacade", "FacadeStream", "FacadeTransaction")

# Client methods that block: wrapped as coroutines running in a worker thread.
_BLOCKING = frozenset({
    "create", "get", "set", "delete", "exists", "get_children", "get_many", "multi_read",
    "ensure_path", "sync", "get_acl", "set_acl", "get_ephemerals", "get_all_children_number",
    "whoami", "add_auth", "check_watches", "remove_watches",
})


class AsyncFacade:
    """Coroutine methods of AsyncClient, each running the blocking Client method."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if name not in _BLOCKING:
            return attr  # properties (state, session_id …), add_listener, …

        @functools.wraps(attr)
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(attr, *args, **kwargs)

        return call

    async def start(self, timeout: float | None = None, *, wait: bool = True) -> None:
        await asyncio.to_thread(self.client.start, timeout, wait=wait)

    async def close(self) -> None:
        await asyncio.to_thread(self.client.close)

    async def __aenter__(self) -> AsyncFacade:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def transaction(self) -> FacadeTransaction:
        return FacadeTransaction(self.client.transaction())

    def watch(self, path: str, kind: str = "data") -> FacadeStream:
        # AsyncClient.watch validates at once; so does this.
        if kind not in ("data", "exists", "children"):
            raise errors.InvalidArgumentError(f"bad watch kind {kind!r}")
        _paths.validate(path)
        return FacadeStream(
            path, lambda cb, on_error: self.client.watch(path, kind, cb,  # type: ignore[arg-type]
                                                         on_error=on_error)
        )

    def add_watch(self, path: str, *, recursive: bool = True) -> FacadeStream:
        _paths.validate(path)
        return FacadeStream(
            path, lambda cb, on_error: self.client.add_watch(path, cb, recursive=recursive,
                                                             on_error=on_error)
        )

    async def state_changes(self) -> AsyncIterator[ClientStateChange]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[ClientStateChange] = asyncio.Queue()

        def listener(change: ClientStateChange) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, change)

        self.client.add_listener(listener)
        try:
            while True:
                change = await queue.get()
                yield change
                if change.state.value == "CLOSED":
                    return
        finally:
            self.client.remove_listener(listener)


class FacadeTransaction:
    """``async with zk.transaction() as t`` over the blocking Transaction."""

    def __init__(self, inner: Transaction) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)  # create/set/delete/check, results, committed

    async def commit(self) -> list[Any]:
        return await asyncio.to_thread(self._inner.commit)

    async def __aenter__(self) -> FacadeTransaction:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and not self._inner.committed:
            await self.commit()


class _End:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc


class FacadeStream:
    """An async iterator fed by a Client watch callback (armed on first use or await)."""

    def __init__(
        self,
        path: str,
        start: Callable[[Callable[[WatchEvent], None], Callable[[Exception], None]], WatchHandle],
    ) -> None:
        self.path = path
        self._start = start
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[WatchEvent | _End] = asyncio.Queue()
        self.handle: WatchHandle | None = None
        self._error: Exception | None = None
        self._finished = False

    def _put(self, item: WatchEvent | _End) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the test's loop is gone
            pass

    def _on_event(self, event: WatchEvent) -> None:
        self._put(event)

    def _on_error(self, exc: Exception) -> None:
        self._put(_End(exc))

    async def arm(self) -> FacadeStream:
        if self.handle is None and not self._finished:
            try:
                self.handle = await asyncio.to_thread(self._start, self._on_event,
                                                      self._on_error)
            except (errors.SessionExpiredError, errors.ClientClosedError) as exc:
                self._error = exc
        return self

    def __await__(self) -> Generator[Any, None, FacadeStream]:
        return self.arm().__await__()

    def __aiter__(self) -> FacadeStream:
        return self

    async def __anext__(self) -> WatchEvent:
        if self._finished:
            raise StopAsyncIteration
        await self.arm()
        if self._error is None:
            item = await self._queue.get()
            if isinstance(item, WatchEvent):
                return item
            self._error = item.exc
        self._finished = True
        raise self._error

    @property
    def ended(self) -> bool:
        return self._finished or self._error is not None

    async def aclose(self) -> None:
        self._finished = True
        if self.handle is not None:
            self.handle.cancel()

