"""Semaphore: Curator's ``InterProcessSemaphoreV2`` on the wire (at most N leases).

Layout: ``<path>/locks`` holds a Curator mutex (``_c_<uuid>-lock-<seq10>``) and
``<path>/leases`` the leases, ``_c_<uuid>-lease-<seq10>``, EPHEMERAL_SEQUENTIAL, data =
the identifier (UTF-8) or ``b""``; ``<path>``, ``locks`` and ``leases`` are containers.

Algorithm (Curator's, credited there to kazoo's author): take the mutex, create our lease
node, then, still holding the mutex, wait until ``leases`` has at most ``max_leases``
children (a children watch, held by the mutex holder alone: no herd); release the mutex.
While a waiter holds the mutex its lease node already counts, so nobody can pass it.
``max_leases`` is a convention every participant must share; it is not stored.

A task holds at most one lease of a semaphore object (not re-entrant); several tasks may
share one object, each with its own lease.

Use::

    sem = Semaphore(zk, "/limits/exports", max_leases=3)
    async with sem as lease:
        ...
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .. import paths as _paths
from .._aio.client import AsyncClient
from ..errors import InvalidArgumentError, SessionExpiredError
from ..types import ACL
from ._curator import LEASE_MARKER
from ._nodes import OwnNode
from ._queue import QueueLock, Requeue
from .lock import Lock

__all__ = ("Semaphore",)


class Semaphore(QueueLock):
    """A Curator-compatible counting semaphore (see the module docstring).

    ``acquire(timeout)`` returns True once a lease is held (``sem.lease``), False on
    timeout with nothing left behind; ``release()`` gives the current task's lease back.
    ``acl`` is the ACL of its lease and mutex nodes and of the parents it creates (default:
    the client's).

    Raises:
        InvalidArgumentError: ``max_leases`` below 1.
        InvalidPathError: ``path`` is not a valid absolute path.
    """

    def __init__(
        self,
        zk: AsyncClient,
        path: str,
        max_leases: int,
        identifier: str | None = None,
        *,
        data: bytes | None = None,
        acl: Sequence[ACL] | None = None,
    ) -> None:
        if not isinstance(max_leases, int) or max_leases < 1:
            raise InvalidArgumentError(f"max_leases must be an int >= 1, got {max_leases!r}")
        super().__init__(zk, path, marker=LEASE_MARKER, identifier=identifier, data=data,
                         acl=acl)
        self.max_leases = max_leases
        self._parent = _paths.join(path, "leases")
        self._mutex = Lock(zk, _paths.join(path, "locks"), acl=acl)

    async def _queue(self, deadline: float | None) -> OwnNode | None:
        remaining = None
        if deadline is not None:
            remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        if not await self._mutex.acquire(timeout=remaining):
            return None
        try:
            return await super()._queue(deadline)
        finally:
            await self._mutex.release()

    async def _wait(self, node: OwnNode) -> None:
        stream = self._zk.watch(self._parent, "children")
        try:
            async for event in stream:
                if self._zk.session_id is not None and self._zk.session_id != node.session_id:
                    raise Requeue("the session that owned our lease node ended")
                leases = event.children or ()
                if node.name not in leases:
                    raise Requeue(f"our lease node {node.path} is gone")
                if len(leases) <= self.max_leases:
                    return
        except SessionExpiredError:
            raise Requeue("session expired while waiting") from None
        finally:
            await stream.aclose()
        raise Requeue("the watch on the leases ended")  # pragma: no cover - streams end raising

    async def close(self) -> None:
        """Release every lease of this object and end its background tasks.

        Raises:
            CancelledError only.
        """
        await super().close()
        await self._mutex.close()
