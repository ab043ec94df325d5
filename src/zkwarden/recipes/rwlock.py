"""ReadWriteLock: Curator's ``InterProcessReadWriteLock`` (5.4, Debian's jar) on the wire.

Both halves queue under one path: ``_c_<uuid>-__READ__<seq10>`` and
``_c_<uuid>-__WRIT__<seq10>``, EPHEMERAL_SEQUENTIAL, data = the identifier (UTF-8) or
``b""``, parents as containers. Children are sorted by the text after the last
``__READ__``, then after the last ``__WRIT__`` (a stray child by its whole name).

* A writer holds when it is first among all children (readers and writers); it watches
  its immediate predecessor, whatever kind.
* A reader holds when no writer is before it (``ourIndex < firstWriteIndex``, the first
  child whose name contains ``__WRIT__``); it watches that lowest writer (Curator's
  choice, not kazoo's nearest writer). So a writer that queued is not starved: readers
  that come after it wait for it.
* Downgrade: a task holding the write lock gets the read lock at once (Curator's
  predicate); as in 5.4 the read node takes a fresh sequence number, so it queues after
  any writer already waiting, and that writer is granted as soon as the write lock is
  released, while the downgraded read lock is still held (CURATOR-621). 5.5+ gives the
  read node the writer's number (EPHEMERAL, not sequential) to close that gap; not copied,
  so that both sides order nodes as Debian's Curator 5.4 does. Do not rely on a downgraded
  read lock to keep writers out.
* Upgrade (read held, write asked) deadlocks in Curator; here it raises
  :class:`LockReentryError`.

Use::

    rw = ReadWriteLock(zk, "/locks/catalog")
    async with rw.read as lease: ...
    async with rw.write as lease: ...
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from .._aio.client import AsyncClient
from ..errors import LockReentryError
from ..types import ACL
from ._curator import READ_MARKER, WRITE_MARKER, sort_key
from ._lease import Lease
from ._queue import QueueLock, mutex_predicate

__all__ = ("ReadWriteLock", "ReadLock", "WriteLock", "rw_order")


def rw_order(child: str) -> str:
    """Curator's ``SortingLockInternalsDriver``: fix for ``__READ__``, then ``__WRIT__``."""
    return sort_key(sort_key(child, READ_MARKER), WRITE_MARKER)


class WriteLock(QueueLock):
    """The exclusive half of a :class:`ReadWriteLock` (obtain it as ``rw.write``)."""

    def __init__(self, rw: ReadWriteLock, **options: Any) -> None:
        super().__init__(rw._zk, rw.path, marker=WRITE_MARKER, order=rw_order,
                         predicate=mutex_predicate(1), **options)
        self._rw = rw

    def _check_reentry(self, task: asyncio.Task[Any] | None) -> None:
        if self._rw.read.held_by_current_task():
            raise LockReentryError(
                f"this task holds the read lock of {self.path}: asking for the write lock "
                "would wait for itself (an upgrade; release the read lock first)"
            )


class ReadLock(QueueLock):
    """The shared half of a :class:`ReadWriteLock` (obtain it as ``rw.read``)."""

    def __init__(self, rw: ReadWriteLock, **options: Any) -> None:
        super().__init__(rw._zk, rw.path, marker=READ_MARKER, order=rw_order,
                         predicate=self._read_predicate, **options)
        self._rw = rw

    def _read_predicate(self, children: list[str], ours: str) -> tuple[bool, str | None]:
        # Curator's readLockPredicate: the write lock's holder reads at once (downgrade);
        # otherwise granted unless a writer is before us, and then that lowest writer is
        # the one watched.
        if self._rw.write.held_by_current_task():
            return True, None
        first_write: int | None = None
        for index, child in enumerate(children):
            if WRITE_MARKER in child:
                first_write = index if first_write is None else first_write
            elif child == ours:
                break
        else:  # pragma: no cover - wait_turn checked that our node is present
            raise AssertionError(f"{ours} not among the children")
        if first_write is None:
            return True, None
        return False, children[first_write]


class ReadWriteLock:
    """Curator-compatible read-write lock: ``rw.read`` and ``rw.write`` are lock objects
    (``async with``, ``acquire(timeout)``, ``release()``, ``contenders()``). ``acl`` is the
    ACL of both halves' nodes and of the parents they create (default: the client's).

    Raises:
        InvalidPathError: ``path`` is not a valid absolute path.
    """

    def __init__(
        self,
        zk: AsyncClient,
        path: str,
        identifier: str | None = None,
        *,
        data: bytes | None = None,
        on_revoke: Callable[[Lease], object] | None = None,
        acl: Sequence[ACL] | None = None,
    ) -> None:
        self._zk = zk
        self.path = path
        options: dict[str, Any] = {"identifier": identifier, "data": data,
                                   "on_revoke": on_revoke, "acl": acl}
        self.write = WriteLock(self, **options)
        self.read = ReadLock(self, **options)

    def __repr__(self) -> str:
        return f"<ReadWriteLock {self.path}>"

    async def participant_nodes(self) -> list[str]:
        """Every child of the lock path in Curator's order (full paths).

        Raises:
            ConnectionLossError, SessionExpiredError, ClientClosedError, NoAuthError.
        """
        return await self.write.participant_nodes()

    async def close(self) -> None:
        """Release both halves' leases and end their background tasks.

        Raises:
            CancelledError only.
        """
        await self.read.close()
        await self.write.close()
