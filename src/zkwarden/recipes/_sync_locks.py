"""Blocking twins of the locks: :class:`Lock`, :class:`ReadWriteLock`, :class:`Semaphore`.

Each wraps the async recipe of the same name (built on the client's loop thread) and runs
its coroutines there while the calling thread waits. What changes for threads:

* Leases belong to **threads** (the async recipes key them by task): a thread holds at
  most one lease of a lock object; another thread of the same object queues with its own
  node. A thread asking again for a lock it holds gets :class:`LockReentryError`.
* ``release()`` gives back the calling thread's lease, or the object's only lease when the
  calling thread holds none (a lock handed from one thread to another).
* Lease states (``lost``, ``uncertain``, ``revoked``, ``released``) are
  ``threading.Event``-like views: ``lease.lost.is_set()``, ``lease.lost.wait(timeout)``.
* ``on_revoke(lease)`` runs on a thread of its own, never on the loop thread.
* Cancellation is Ctrl-C: a KeyboardInterrupt in a thread waiting in ``acquire()`` cancels
  the async acquire, which deletes its node (nothing is left in the queue). The thread
  gets the KeyboardInterrupt at once; the delete completes on the loop moments later.
  ``acquire(timeout=...)`` instead returns False only once the node is gone.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from ..errors import LeaseLostError, LockReentryError, RecipeError
from ..sync.client import Client
from ..types import ACL
from ._lease import GuardedTransaction as AsyncGuardedTransaction
from ._lease import Lease as AsyncLease
from ._queue import QueueLock
from ._sync_base import LoopEvent, SyncRecipe, build_on_loop, spawn_callback
from .lock import Lock as AsyncLock
from .rwlock import ReadWriteLock as AsyncReadWriteLock
from .semaphore import Semaphore as AsyncSemaphore

__all__ = ("Lease", "GuardedTransaction", "Lock", "ReadWriteLock", "ReadLock", "WriteLock",
           "Semaphore")


class Lease:
    """One hold of a lock or semaphore (the blocking view of the async ``Lease``).

    Attributes:
        node_path, fencing_token, session_id: as the async lease (the token is the lock
            node's czxid, strictly increasing across holders).
        lost, uncertain, revoked, released: ``threading.Event``-like (``is_set()``,
            ``wait(timeout)``); see the async ``Lease`` for what sets each.
    """

    def __init__(self, zk: Client, lease: AsyncLease) -> None:
        self._zk = zk
        self._lease = lease
        self.node_path = lease.node_path
        self.fencing_token = lease.fencing_token
        self.session_id = lease.session_id
        self.lost = LoopEvent(zk, lease.lost)
        self.uncertain = LoopEvent(zk, lease.uncertain)
        self.revoked = LoopEvent(zk, lease.revoked)
        self.released = LoopEvent(zk, lease.released)

    @property
    def lost_reason(self) -> str | None:
        """Why the hold was lost (None while it is not)."""
        return self._lease.lost_reason

    @property
    def held(self) -> bool:
        """True while the hold is believed valid (not lost, released or uncertain)."""
        return self._lease.held

    def release(self, timeout: float | None = None) -> None:
        """Give the hold up: the node is deleted, retried until confirmed. Idempotent.

        Raises:
            RequestTimeoutError: not confirmed within ``timeout`` (the delete goes on in
                the background; ``released`` is set once it is done).
            NoAuthError and other errors a retry cannot fix; ClientClosedError.
        """
        self._zk.run_coroutine(self._lease.release(), timeout=timeout)

    def transaction(self) -> GuardedTransaction:
        """A transaction that applies only while this lease's node exists (fencing).

        Raises:
            LeaseLostError: already lost or released.
        """
        return GuardedTransaction(self._zk, self._lease.transaction())

    #: ``with lease.guarded() as t: t.set(...)``: the same as :meth:`transaction`.
    guarded = transaction

    def __repr__(self) -> str:
        return repr(self._lease)


class GuardedTransaction:
    """A transaction whose first operation is ``check(lock node, -1)`` (blocking
    ``commit``); ``with`` commits on a clean exit."""

    def __init__(self, zk: Client, txn: AsyncGuardedTransaction) -> None:
        self._zk = zk
        self._txn = txn

    def create(self, path: str, data: bytes = b"", *, ephemeral: bool = False,
               sequence: bool = False, container: bool = False, ttl: float | None = None,
               acl: list[ACL] | None = None) -> GuardedTransaction:
        """Add a create (see ``Transaction.create``)."""
        self._txn.create(path, data, ephemeral=ephemeral, sequence=sequence,
                         container=container, ttl=ttl, acl=acl)
        return self

    def set(self, path: str, data: bytes, version: int = -1) -> GuardedTransaction:
        """Add a setData."""
        self._txn.set(path, data, version)
        return self

    def delete(self, path: str, version: int = -1) -> GuardedTransaction:
        """Add a delete."""
        self._txn.delete(path, version)
        return self

    def check(self, path: str, version: int) -> GuardedTransaction:
        """Add a version check."""
        self._txn.check(path, version)
        return self

    def commit(self, timeout: float | None = None) -> list[Any]:
        """Commit atomically; the results of the added operations (not the guard's).

        Raises:
            LeaseLostError: the lock node is gone (nothing was applied).
            TransactionError: another operation failed (nothing was applied).
            RequestTimeoutError: no answer within ``timeout`` (outcome unknown).
            ConnectionLossError, SessionExpiredError, ClientClosedError.
        """
        result: list[Any] = self._zk.run_coroutine(self._txn.commit(), timeout=timeout)
        return result

    def __enter__(self) -> GuardedTransaction:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None and not self._txn._txn.committed:
            self.commit()


class _SyncQueueLock(SyncRecipe):
    """The blocking side of a :class:`~zkwarden.recipes._queue.QueueLock` (leases per thread)."""

    _aio: QueueLock

    def __init__(self, zk: Client) -> None:
        self._zk = zk
        self._guard = threading.Lock()
        self._leases: dict[int, Lease] = {}
        self._by_async: dict[int, Lease] = {}  # id(async lease) -> ours (for on_revoke)

    @property
    def path(self) -> str:
        """The lock's path."""
        return self._aio.path

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} (blocking) leases={len(self._leases)}>"

    # --- state -------------------------------------------------------------------------

    @property
    def lease(self) -> Lease | None:
        """The calling thread's lease (or the only lease, when one thread holds one)."""
        with self._guard:
            lease = self._leases.get(threading.get_ident())
            if lease is None and len(self._leases) == 1:
                lease = next(iter(self._leases.values()))
            return lease

    @property
    def is_acquired(self) -> bool:
        """True when some thread holds a lease of this object (lost or not yet released)."""
        with self._guard:
            return bool(self._leases)

    def _thread_lease(self) -> Lease | None:
        with self._guard:
            return self._leases.get(threading.get_ident())

    def held_by_current_thread(self) -> bool:
        """True when the calling thread holds a lease of this lock."""
        with self._guard:
            return threading.get_ident() in self._leases

    # --- acquire / release -------------------------------------------------------------

    def _check_reentry(self) -> None:
        """Hook: refuse an acquire that would wait for the thread's own holds."""

    def _lent_lease(self) -> AsyncLease | None:
        """Hook (on the calling thread): a lease the acquiring task must be seen to hold."""
        return None

    async def _acquire_on_loop(
        self, timeout: float | None, lent: AsyncLease | None
    ) -> AsyncLease | None:
        if not await self._aio.acquire(timeout):
            return None
        lease = self._aio.lease  # the lease of this task (the one that acquired)
        assert lease is not None
        return lease

    def acquire(self, timeout: float | None = None) -> bool:
        """Queue for the lock; True once held (by the calling thread), False when
        ``timeout`` seconds passed first (nothing is left behind).

        Raises:
            LockReentryError: the calling thread already holds this lock (or, for the
                write lock, its read lock).
            ClientClosedError, NoAuthError, InvalidACLError.
        """
        me = threading.get_ident()
        with self._guard:
            held = self._leases.get(me)
        if held is not None:
            if not held.lost.is_set():
                raise LockReentryError(f"this thread already holds {self.path}")
            self._drop(held, release=True)  # lost: clear it, then queue afresh
        self._check_reentry()
        found = self._run(self._acquire_on_loop(timeout, self._lent_lease()))
        if found is None:
            return False
        lease = Lease(self._zk, found)
        with self._guard:
            self._leases[me] = lease
            self._by_async[id(found)] = lease
        return True

    def _drop(self, lease: Lease, *, release: bool, timeout: float | None = None) -> None:
        try:
            if release:
                lease.release(timeout)
        finally:
            if lease.released.is_set() or not release:
                with self._guard:
                    for tid, held in list(self._leases.items()):
                        if held is lease:
                            del self._leases[tid]
                    self._by_async.pop(id(lease._lease), None)

    def release(self, timeout: float | None = None) -> None:
        """Release the calling thread's lease (or the only lease); the node is deleted,
        retried until confirmed, and the lease counts as held until then. Does nothing when
        no lease is held.

        Raises:
            RequestTimeoutError: not confirmed within ``timeout`` (the delete goes on in
                the background).
            NoAuthError and other errors a retry cannot fix; ClientClosedError.
        """
        lease = self.lease
        if lease is not None:
            self._drop(lease, release=True, timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        """Release every lease of this object and end its background tasks. Idempotent.

        Raises:
            RequestTimeoutError: not done within ``timeout``.
            ClientClosedError: the client closed first.
        """
        self._run(self._aio.close(), timeout)
        with self._guard:
            self._leases.clear()
            self._by_async.clear()

    def __enter__(self) -> Lease:
        self.acquire()
        lease = self.lease
        assert lease is not None
        return lease

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    # --- introspection -----------------------------------------------------------------

    def participant_nodes(self, timeout: float | None = None) -> list[str]:
        """Every child of the lock path in Curator's order (full paths).

        Raises:
            RequestTimeoutError, ConnectionLossError, SessionExpiredError,
            ClientClosedError, NoAuthError.
        """
        return self._run(self._aio.participant_nodes(), timeout)

    def contenders(self, timeout: float | None = None) -> list[str]:
        """The identifiers in queue order, the holder first (node data as UTF-8).

        Raises:
            RequestTimeoutError, ConnectionLossError, SessionExpiredError,
            ClientClosedError, NoAuthError.
        """
        return self._run(self._aio.contenders(), timeout)

    def guarded_transaction(self) -> GuardedTransaction:
        """A transaction that applies only while the calling thread's lock node exists.

        Raises:
            LeaseLostError: the lease is lost or released.
            RecipeError: nothing is held.
        """
        lease = self.lease
        if lease is None:
            raise RecipeError(f"{self.path} is not held")
        if lease.lost.is_set() or lease.released.is_set():
            raise LeaseLostError(f"the lease on {lease.node_path} is lost or released")
        return lease.transaction()

    @staticmethod
    def revoke(zk: Client, node_path: str, timeout: float | None = None) -> None:
        """Ask the holder of ``node_path`` to release (``setData(node, b"__REVOKE__")``).

        Raises:
            RequestTimeoutError, ConnectionLossError, SessionExpiredError,
            ClientClosedError, NoAuthError.
        """
        zk.run_coroutine(QueueLock.revoke(zk.async_client, node_path), timeout=timeout)

    # --- revocation --------------------------------------------------------------------

    def _revoke_adapter(
        self, on_revoke: Callable[[Lease], object] | None
    ) -> Callable[[AsyncLease], object] | None:
        if on_revoke is None:
            return None

        def on_loop(async_lease: AsyncLease) -> None:
            with self._guard:
                lease = self._by_async.get(id(async_lease))
            spawn_callback(on_revoke, lease or Lease(self._zk, async_lease),
                           name=f"on_revoke {async_lease.node_path}")

        return on_loop


class Lock(_SyncQueueLock):
    """Blocking twin of :class:`zkwarden.recipes.lock.Lock` (Curator InterProcessMutex
    layout)::

        with Lock(zk, "/locks/orders", identifier="worker-1") as lease:
            ...   # lease.fencing_token; check lease.lost.is_set() in long work

    ``on_revoke(lease)`` runs on a thread of its own. ``acl``: as the async lock's.

    Raises:
        InvalidPathError: ``path`` is not a valid absolute path.
        ClientClosedError: the client is not started.
    """

    def __init__(self, zk: Client, path: str, identifier: str | None = None, *,
                 data: bytes | None = None,
                 on_revoke: Callable[[Lease], object] | None = None,
                 acl: Sequence[ACL] | None = None) -> None:
        super().__init__(zk)
        hook = self._revoke_adapter(on_revoke)
        self._aio = build_on_loop(zk, lambda: AsyncLock(
            zk.async_client, path, identifier, data=data, on_revoke=hook, acl=acl))
        self.identifier = identifier


class Semaphore(_SyncQueueLock):
    """Blocking twin of :class:`zkwarden.recipes.semaphore.Semaphore` (Curator
    InterProcessSemaphoreV2 layout): ``with sem as lease:``; a thread holds at most one
    lease of a semaphore object. ``acl``: as the async semaphore's.

    Raises:
        InvalidArgumentError: ``max_leases`` below 1.
        InvalidPathError: ``path`` is not a valid absolute path.
        ClientClosedError: the client is not started.
    """

    def __init__(self, zk: Client, path: str, max_leases: int,
                 identifier: str | None = None, *, data: bytes | None = None,
                 acl: Sequence[ACL] | None = None) -> None:
        super().__init__(zk)
        self._aio = build_on_loop(zk, lambda: AsyncSemaphore(
            zk.async_client, path, max_leases, identifier, data=data, acl=acl))
        self.max_leases = max_leases
        self.identifier = identifier


class WriteLock(_SyncQueueLock):
    """The exclusive half of a blocking :class:`ReadWriteLock` (``rw.write``)."""

    def __init__(self, rw: ReadWriteLock) -> None:
        super().__init__(rw._zk)
        self._rw = rw
        self._aio = rw._aio.write

    def _check_reentry(self) -> None:
        if self._rw.read.held_by_current_thread():
            raise LockReentryError(
                f"this thread holds the read lock of {self.path}: asking for the write "
                "lock would wait for itself (an upgrade; release the read lock first)"
            )


class ReadLock(_SyncQueueLock):
    """The shared half of a blocking :class:`ReadWriteLock` (``rw.read``). A thread that
    holds the write lock gets the read lock at once (a downgrade, as Curator)."""

    def __init__(self, rw: ReadWriteLock) -> None:
        super().__init__(rw._zk)
        self._rw = rw
        self._aio = rw._aio.read

    def _lent_lease(self) -> AsyncLease | None:
        write = self._rw.write._thread_lease()
        return None if write is None else write._lease

    async def _acquire_on_loop(
        self, timeout: float | None, lent: AsyncLease | None
    ) -> AsyncLease | None:
        # The async read predicate grants a downgrade to the *task* holding the write
        # lock; a thread's calls run in a new task each, so the acquiring task is lent the
        # thread's write lease for the duration of this acquire (the write half's lease
        # table is keyed by task; nothing else reads it meanwhile on this loop).
        if lent is None:
            return await super()._acquire_on_loop(timeout, None)
        task = asyncio.current_task()
        assert task is not None
        table = self._rw._aio.write._leases
        table[task] = lent
        try:
            return await super()._acquire_on_loop(timeout, None)
        finally:
            table.pop(task, None)


class ReadWriteLock(SyncRecipe):
    """Blocking twin of :class:`zkwarden.recipes.rwlock.ReadWriteLock` (Curator 5.4
    ``__READ__``/``__WRIT__`` layout): ``with rw.read as lease:`` / ``with rw.write:``.
    ``acl``: as the async lock's.

    Raises:
        InvalidPathError: ``path`` is not a valid absolute path.
        ClientClosedError: the client is not started.
    """

    def __init__(self, zk: Client, path: str, identifier: str | None = None, *,
                 data: bytes | None = None,
                 on_revoke: Callable[[Lease], object] | None = None,
                 acl: Sequence[ACL] | None = None) -> None:
        self._zk = zk
        self.path = path

        def hook(async_lease: AsyncLease) -> None:  # on the loop: find our lease, hand over
            assert on_revoke is not None
            lease = None
            for half in (self.read, self.write):
                with half._guard:
                    lease = lease or half._by_async.get(id(async_lease))
            spawn_callback(on_revoke, lease or Lease(zk, async_lease),
                           name=f"on_revoke {async_lease.node_path}")

        self._aio = build_on_loop(zk, lambda: AsyncReadWriteLock(
            zk.async_client, path, identifier, data=data,
            on_revoke=hook if on_revoke is not None else None, acl=acl))
        self.write = WriteLock(self)
        self.read = ReadLock(self)

    def __repr__(self) -> str:
        return f"<ReadWriteLock {self.path} (blocking)>"

    def participant_nodes(self, timeout: float | None = None) -> list[str]:
        """Every child of the lock path in Curator's order (full paths).

        Raises:
            RequestTimeoutError, ConnectionLossError, SessionExpiredError,
            ClientClosedError, NoAuthError.
        """
        return self._run(self._aio.participant_nodes(), timeout)

    def close(self, timeout: float | None = None) -> None:
        """Release both halves' leases and end their background tasks.

        Raises:
            RequestTimeoutError: not done within ``timeout``.
            ClientClosedError: the client closed first.
        """
        self._run(self._aio.close(), timeout)
        for half in (self.read, self.write):
            with half._guard:
                half._leases.clear()
                half._by_async.clear()

