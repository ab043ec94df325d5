"""The queue every lock shares: a protected sequential node, Curator's order, a predicate,
and a wait on the one node the predicate names (the immediate predecessor for a mutex).

The loop (Curator's ``LockInternals.internalLockLoop``, made session- and
cancellation-aware):

1. create ``<path>/_c_<uuid>-<marker><seq>`` (protected: a lost reply is found again);
2. read the children, sort them with Curator's comparator (stray names by whole name);
3. if our node is missing, or belongs to a session that has ended, queue again with a new
   node (the old one is deleted, or went with its session);
4. ask the predicate: granted, or which node to watch; watch it with getData (a NoNode
   means "look again"), and look again when it changes or goes;
5. any exit but a grant (timeout, cancellation, error) deletes our node, retried until the
   server confirms it, in a task the recipe owns, and waits a bounded while for that to be
   done so that ``acquire`` returning means "nothing of ours is left".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from .. import paths as _paths
from .._aio.client import AsyncClient
from .._tasks import TaskOwner
from ..errors import (
    ConnectionLossError,
    LockReentryError,
    NoNodeError,
    RecipeError,
    SessionExpiredError,
    ZooKeeperError,
)
from ..types import ACL, WatcherType
from ._curator import REVOKE, sort_key
from ._lease import GuardedTransaction, Lease
from ._nodes import OwnNode, delete_until_gone, protected_create

__all__ = ("Predicate", "QueueLock", "Requeue", "mutex_predicate", "wait_turn",
           "wait_node_change", "pause_until_connected")

log = logging.getLogger("zkwarden.recipes")

#: (children in Curator's order, our node's name) -> (granted, name of the node to watch)
Predicate = Callable[[list[str], str], tuple[bool, str | None]]

#: how long an abandoned acquire waits for its node to be deleted before it lets the
#: background task finish the job (the bound wins: a cancelled call must end)
_SETTLE_BOUND = 5.0


class Requeue(Exception):
    """Our node is gone or belongs to a session that ended: queue again with a new one."""


def mutex_predicate(max_leases: int = 1) -> Predicate:
    """Curator's standard predicate: granted among the first ``max_leases``; otherwise
    watch the node ``max_leases`` places before ours (the immediate predecessor for 1)."""

    def predicate(children: list[str], ours: str) -> tuple[bool, str | None]:
        index = children.index(ours)
        if index < max_leases:
            return True, None
        return False, children[index - max_leases]

    return predicate


async def pause_until_connected(zk: AsyncClient) -> None:
    """Wait (bounded by one session timeout) for the connection to come back.

    Raises:
        ClientClosedError, AuthFailedError.
    """
    try:
        await zk.wait_connected(timeout=zk.negotiated_timeout or 10.0)
    except ConnectionLossError:  # still disconnected (RequestTimeoutError): go round again
        await asyncio.sleep(0.05)


async def _forget_watch(zk: AsyncClient, path: str) -> None:
    """A watch stream re-arms as an exists watch when its node is gone; our nodes' names
    are never reused, so that watch would stay on the server for the session's life
    (CURATOR-107): remove it, best effort."""
    with contextlib.suppress(ZooKeeperError, TimeoutError):
        async with asyncio.timeout(1.0):
            await zk.remove_watches(path, WatcherType.DATA)


async def wait_node_change(zk: AsyncClient, path: str) -> None:
    """Return once ``path`` changed or is gone (or was already gone).

    Raises:
        Requeue: the session ended (our own node went with it).
        ClientClosedError, NoAuthError.
    """
    stream = zk.watch(path, "data")
    gone = False
    try:
        event = await anext(stream)
        if event.stat is not None:
            event = await anext(stream)
        gone = event.stat is None
    except SessionExpiredError:
        raise Requeue("session expired while waiting") from None
    except StopAsyncIteration:
        pass
    finally:
        await stream.aclose()
    if gone:
        await _forget_watch(zk, path)


async def wait_turn(
    zk: AsyncClient, node: OwnNode, parent: str, order: Callable[[str], str],
    predicate: Predicate,
) -> None:
    """Wait until ``predicate`` grants ``node``.

    Raises:
        Requeue: our node is missing or its session ended.
        ClientClosedError, NoAuthError.
    """
    name = node.name
    while True:
        if zk.session_id is not None and zk.session_id != node.session_id:
            raise Requeue("the session that owned our node ended")
        try:
            children: list[str] = await zk.get_children(parent)
        except NoNodeError:
            children = []
        except SessionExpiredError:
            raise Requeue("session expired while waiting") from None
        except ConnectionLossError:
            await pause_until_connected(zk)
            continue
        if name not in children:
            raise Requeue(f"our node {node.path} is gone")
        ordered = sorted(children, key=order)
        granted, watch = predicate(ordered, name)
        if granted:
            return
        assert watch is not None
        await wait_node_change(zk, _paths.join(parent, watch))


class QueueLock:
    """The lock machinery shared by :class:`Lock`, the read-write lock's halves and the
    semaphore's mutex: one lease per task, never re-entrant.

    A lock object may be shared by several tasks of one client: each queues with its own
    node and gets its own :class:`Lease`.
    """

    def __init__(
        self,
        zk: AsyncClient,
        path: str,
        *,
        marker: str,
        order: Callable[[str], str] | None = None,
        predicate: Predicate | None = None,
        identifier: str | None = None,
        data: bytes | None = None,
        on_revoke: Callable[[Lease], object] | None = None,
        acl: Sequence[ACL] | None = None,
    ) -> None:
        _paths.validate(path)
        self._zk = zk
        #: the ACL of the nodes this lock creates (and of missing parents); None: the client's
        self.acl = tuple(acl) if acl is not None else None
        self.path = path
        #: where the nodes are queued (a semaphore queues its leases below its path)
        self._parent = path
        self.identifier = identifier
        self._marker = marker
        self._order = order or (lambda child: sort_key(child, marker))
        self._predicate = predicate or mutex_predicate(1)
        self._data = identifier.encode("utf-8") if identifier is not None else (data or b"")
        self._on_revoke = on_revoke
        self._leases: dict[asyncio.Task[Any], Lease] = {}
        self._releasing: dict[Lease, asyncio.Task[None]] = {}
        self._janitor = TaskOwner(f"lock {path}", log)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} leases={len(self._leases)}>"

    # --- state ----------------------------------------------------------------------------

    @property
    def lease(self) -> Lease | None:
        """The current task's lease (or the only lease, when just one task holds one)."""
        task = asyncio.current_task()
        lease = self._leases.get(task) if task is not None else None
        if lease is None and len(self._leases) == 1:
            lease = next(iter(self._leases.values()))
        return lease

    @property
    def is_acquired(self) -> bool:
        """True when some task of this object holds the lock (lost or not yet released)."""
        return bool(self._leases)

    def held_by_current_task(self) -> bool:
        """True when the running task holds a lease of this lock."""
        task = asyncio.current_task()
        return task is not None and task in self._leases

    # --- acquire ---------------------------------------------------------------------------

    def _check_reentry(self, task: asyncio.Task[Any] | None) -> None:
        """Hook: refuse an acquire that would deadlock against the task's own holds."""

    async def acquire(self, timeout: float | None = None) -> bool:
        """Queue for the lock; True once held, False when ``timeout`` (seconds) passed first.

        On False, on cancellation and on any error, our node is deleted (waited for, up to
        a bound, and finished in the background beyond it): nothing is left in the queue.

        Raises:
            LockReentryError: the current task already holds this lock.
            ClientClosedError, NoAuthError, InvalidACLError; CancelledError.
        """
        task = asyncio.current_task()
        held = self._leases.get(task) if task is not None else None
        if held is not None:
            if not held.lost.is_set():
                raise LockReentryError(f"this task already holds {self.path}")
            await self._release_lease(held)  # lost: clear it, then queue afresh
        self._check_reentry(task)
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        node = await self._queue(deadline)
        if node is None:
            return False
        lease = Lease(self._zk, node, self._release_lease, self._on_revoke)
        if task is not None:
            self._leases[task] = lease
        lease._start()
        return True

    async def _queue(self, deadline: float | None) -> OwnNode | None:
        node: OwnNode | None = None
        timer = asyncio.timeout_at(deadline)
        try:
            async with timer:
                while True:
                    node = await protected_create(
                        self._zk, self._parent, self._marker, self._data, self._janitor,
                        acl=self.acl)
                    try:
                        await self._wait(node)
                        return node
                    except Requeue as why:
                        log.info("queueing again on %s: %s", self.path, why)
                    await delete_until_gone(self._zk, node)  # (gone with its session, mostly)
                    node = None
        except BaseException as exc:
            self._abandon(node)
            await self._settle()
            if isinstance(exc, TimeoutError) and timer.expired():
                return None
            raise

    async def _wait(self, node: OwnNode) -> None:
        """Hook: return once ``node`` is granted; raise :class:`Requeue` to start over."""
        await wait_turn(self._zk, node, self._parent, self._order, self._predicate)

    def _abandon(self, node: OwnNode | None) -> None:
        if node is None:
            return
        if self._janitor.closed:
            log.warning("lock %s is closed: leaving %s to its session", self.path, node.path)
            return
        self._janitor.spawn(delete_until_gone(self._zk, node), name=f"delete {node.path}")

    async def _settle(self) -> None:
        """Wait, bounded, for the cleanups under way (so a cancelled or timed-out acquire
        returns with its node gone in the usual case)."""
        pending = [t for t in self._janitor.tasks() if t not in self._releasing.values()]
        if pending:
            bound = min(_SETTLE_BOUND, self._zk.negotiated_timeout or _SETTLE_BOUND)
            await asyncio.shield(asyncio.wait(pending, timeout=bound))

    # --- release -------------------------------------------------------------------------

    async def release(self) -> None:
        """Release the current task's lease (or the only lease held through this object).

        The node is deleted, retried until the server confirms it (or its session ended);
        the lease counts as held until then. Does nothing when no lease is held.

        Raises:
            NoAuthError and other errors a retry cannot fix; CancelledError (the delete
            goes on in the background).
        """
        lease = self.lease
        if lease is not None:
            await self._release_lease(lease)

    async def _release_lease(self, lease: Lease) -> None:
        if lease.released.is_set():
            return
        task = self._releasing.get(lease)
        if task is None:
            if self._janitor.closed:
                await self._finish_release(lease)
                return
            task = self._janitor.spawn(self._finish_release(lease), name=f"release {lease}")
            self._releasing[lease] = task
            task.add_done_callback(lambda _t: self._releasing.pop(lease, None))
        await asyncio.shield(task)

    async def _finish_release(self, lease: Lease) -> None:
        await lease._stop()
        await delete_until_gone(self._zk, lease.node)
        lease.released.set()
        for task, held in list(self._leases.items()):
            if held is lease:
                del self._leases[task]

    async def close(self) -> None:
        """Release every lease of this object and end its background tasks. Idempotent.

        Raises:
            CancelledError only.
        """
        for lease in list(self._leases.values()):
            with contextlib.suppress(ZooKeeperError):
                await self._release_lease(lease)
        await self._settle()
        await self._janitor.aclose()

    # --- context manager -----------------------------------------------------------------

    async def __aenter__(self) -> Lease:
        await self.acquire()
        lease = self.lease
        assert lease is not None
        return lease

    async def __aexit__(self, *exc_info: object) -> None:
        await self.release()

    # --- introspection -------------------------------------------------------------------

    async def participant_nodes(self) -> list[str]:
        """Every child of the lock path, in Curator's order (full paths).

        Raises:
            ConnectionLossError, SessionExpiredError, ClientClosedError, NoAuthError.
        """
        try:
            children: list[str] = await self._zk.get_children(self._parent)
        except NoNodeError:
            return []
        return [_paths.join(self._parent, c) for c in sorted(children, key=self._order)]

    async def contenders(self) -> list[str]:
        """The identifiers of every node in the queue, first (the holder) first, read from
        the nodes' data as UTF-8 (what Curator writes for an id; its default data is the
        host's IP address).

        Raises:
            ConnectionLossError, SessionExpiredError, ClientClosedError, NoAuthError.
        """
        nodes = await self.participant_nodes()
        ids: list[str] = []
        for result in await self._zk.get_many(nodes):
            if isinstance(result, NoNodeError):
                continue  # left the queue meanwhile
            if isinstance(result, ZooKeeperError):
                raise result
            ids.append(result[0].decode("utf-8", "replace"))
        return ids

    def guarded_transaction(self) -> GuardedTransaction:
        """A transaction that applies only while the current task's lock node exists.

        Raises:
            LeaseLostError: the lease is lost or released.
            RecipeError (as LockReentryError's parent): nothing is held.
        """
        lease = self.lease
        if lease is None:
            raise RecipeError(f"{self.path} is not held")
        return lease.transaction()

    @staticmethod
    async def revoke(zk: AsyncClient, node_path: str) -> None:
        """Ask the holder of ``node_path`` to release (Curator's ``Revoker.attemptRevoke``:
        ``setData(node, b"__REVOKE__")``). A node already gone is ignored.

        Raises:
            ConnectionLossError, SessionExpiredError, ClientClosedError, NoAuthError.
        """
        with contextlib.suppress(NoNodeError):
            await zk.set(node_path, REVOKE)

