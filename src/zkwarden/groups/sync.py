"""The blocking :class:`Party`, for code that uses :class:`zkwarden.Client`.

It runs the asyncio :class:`zkwarden.groups.Party` on the client's loop thread (one
implementation, not two).

    from zkwarden.groups.sync import Party
    with Party(client, "/groups/workers", "worker-1", b"data") as party:
        print(party.members())
        with party.changes() as changes:
            for change in changes:       # or changes.next(timeout=...)
                ...
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

from .._tasks import TaskOwner
from ..errors import ClientClosedError, RequestTimeoutError, ZooKeeperError
from ..sync.client import Client
from . import party as _party
from .party import MemberJoined, MemberLeft, PartyChange

__all__ = ("Party", "PartyChanges", "MemberJoined", "MemberLeft")

_END = object()


async def _build(client: Client, path: str, identifier: str, data: bytes) -> _party.Party:
    return _party.Party(client.async_client, path, identifier, data)


class Party:
    """Blocking :class:`zkwarden.groups.Party` (same layout and rules). Every method takes
    ``timeout`` (seconds; None: the client's own bounds).

    Raises (constructor):
        InvalidPathError, InvalidArgumentError, ClientClosedError.
    """

    def __init__(self, client: Client, path: str, identifier: str, data: bytes = b"") -> None:
        self._client = client
        self._party = client.run_coroutine(_build(client, path, identifier, data))
        self.path = path
        self.identifier = identifier

    @property
    def node(self) -> str:
        return self._party.node

    @property
    def joined(self) -> bool:
        return self._party.joined

    def __enter__(self) -> Party:
        self.join()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.leave()

    def join(self, *, timeout: float | None = None) -> None:
        """Join and stay joined. Raises as the asyncio form, plus RequestTimeoutError."""
        self._client.run_coroutine(self._party.join(), timeout=timeout)

    def leave(self, *, timeout: float | None = None) -> None:
        """Leave (delete the node). Raises as the asyncio form, plus RequestTimeoutError;
        a closed client has nothing left to delete (no error)."""
        if self._client.closed:
            return
        self._client.run_coroutine(self._party.leave(), timeout=timeout)

    def update(self, data: bytes, *, timeout: float | None = None) -> None:
        """Change this member's data. Raises as the asyncio form, plus RequestTimeoutError."""
        self._client.run_coroutine(self._party.update(data), timeout=timeout)

    def members(self, *, timeout: float | None = None) -> dict[str, bytes]:
        """Every member and its data. Raises as the asyncio form, plus RequestTimeoutError."""
        return self._client.run_coroutine(self._party.members(), timeout=timeout)

    def changes(self) -> PartyChanges:
        """A blocking iterator of MemberJoined/MemberLeft (current members first); close it
        (or use ``with``) when done.

        Raises:
            ClientClosedError: the client is closed.
        """
        return PartyChanges(self._client, self._party)


class PartyChanges:
    """Changes of a party, pumped on the loop into a queue this thread reads."""

    def __init__(self, client: Client, party: _party.Party) -> None:
        self._client = client
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._owner = TaskOwner(f"party changes {party.path}")
        self._error: ZooKeeperError | None = None
        self._done = False

        async def start() -> None:
            self._owner.spawn(self._pump(party), name="pump")

        client.run_coroutine(start())

    async def _pump(self, party: _party.Party) -> None:
        changes = party.changes()
        try:
            async for change in changes:
                self._queue.put(change)
        except ZooKeeperError as exc:
            self._queue.put(exc)
        finally:
            await changes.aclose()
            self._queue.put(_END)

    def next(self, timeout: float | None = None) -> PartyChange:
        """The next change, waiting at most ``timeout`` seconds (None: forever).

        Raises:
            RequestTimeoutError: none within ``timeout``.
            StopIteration: closed.
            ClientClosedError: the client closed (then StopIteration).
        """
        if self._done:
            raise StopIteration
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise RequestTimeoutError(f"no party change within {timeout}s") from None
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, ZooKeeperError):
            raise item
        change: PartyChange = item
        return change

    def __iter__(self) -> Iterator[PartyChange]:
        while True:
            try:
                yield self.next()
            except StopIteration:
                return

    def close(self) -> None:
        """Stop the pump. Never raises."""
        if self._done:
            return
        self._done = True
        try:
            self._client.run_coroutine(self._owner.aclose())
        except ClientClosedError:
            pass

    def __enter__(self) -> PartyChanges:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
