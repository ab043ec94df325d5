"""Blocking twins of the coordination recipes, on a :class:`zkwarden.Client`.

Same class names and methods as :mod:`zkwarden.recipes`, blocking::

    from zkwarden import Client
    from zkwarden.recipes.sync import Lock, LeaderLatch, SharedCount

    with Client("127.0.0.1:2181") as zk:
        with Lock(zk, "/locks/orders", identifier="worker-1") as lease:
            ...                                  # lease.fencing_token, lease.lost.is_set()
        latch = LeaderLatch(zk, "/service/leader", identifier="worker-1")
        latch.start()
        with latch.leadership() as term:         # term.lost is a threading.Event
            while not term.lost.is_set():
                term.lost.wait(0.5)

One implementation (DESIGN section 2): each object holds the async recipe, built on the
client's loop thread, and runs its coroutines there (``Client.run_coroutine``) while the
calling thread waits. Nothing of the algorithms is repeated here; what differs is what
threads need, and it is listed in ``tests/recipes/test_sync_parity.py`` with the reasons:

* locks and semaphores give leases to **threads** (see :mod:`._sync_locks`);
* a blocking leader body cannot be cancelled: it is told through ``term.lost``, a
  ``threading.Event`` (see :mod:`._sync_leaders`);
* every method that talks to ZooKeeper takes ``timeout=`` (seconds); past it the call
  raises :class:`~zkwarden.errors.RequestTimeoutError` and is cancelled (an acquire then
  leaves no node). Where the async method has a ``timeout`` of its own (``acquire``,
  ``wait_leader``, ``enter``...), that one keeps its meaning (False on expiry);
* callbacks (``on_revoke``) run on threads of their own, never on the loop thread;
* only :mod:`zkwarden.errors` escape (and what a user's ``lead`` raises).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..sync.client import Client
from ..types import ACL
from ._sync_base import LoopEvent, SyncRecipe, build_on_loop
from ._sync_leaders import LeaderElection, LeaderLatch, LeadershipTerm
from ._sync_locks import (
    GuardedTransaction,
    Lease,
    Lock,
    ReadLock,
    ReadWriteLock,
    Semaphore,
    WriteLock,
)
from .barrier import Barrier as AsyncBarrier
from .barrier import DoubleBarrier as AsyncDoubleBarrier
from .counters import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_RETRIES,
    AtomicValue,
    CounterOutcomeUnknownError,
    VersionedValue,
)
from .counters import AtomicCounter as AsyncAtomicCounter
from .counters import SharedCount as AsyncSharedCount

__all__ = (
    "Lock", "Lease", "GuardedTransaction", "ReadWriteLock", "ReadLock", "WriteLock",
    "Semaphore", "LeaderLatch", "LeaderElection", "LeadershipTerm", "Barrier",
    "DoubleBarrier", "SharedCount", "AtomicCounter", "AtomicValue", "VersionedValue",
    "CounterOutcomeUnknownError", "LoopEvent",
)


class Barrier(SyncRecipe):
    """Blocking twin of :class:`zkwarden.recipes.barrier.Barrier` (Curator
    DistributedBarrier): while ``<path>`` exists, :meth:`wait_on_barrier` waits.
    ``acl``: as the async barrier's.

    Raises:
        InvalidPathError: ``path`` is not a valid absolute path.
        ClientClosedError: the client is not started.
    """

    def __init__(self, zk: Client, path: str, *, data: bytes | None = None,
                 acl: Sequence[ACL] | None = None) -> None:
        self._zk = zk
        self._aio = build_on_loop(zk, lambda: AsyncBarrier(zk.async_client, path, data=data,
                                                           acl=acl))
        self.path = self._aio.path

    def set_barrier(self, timeout: float | None = None) -> None:
        """Create the barrier node (idempotent).

        Raises:
            RequestTimeoutError, NoAuthError, InvalidPathError, ClientClosedError.
        """
        self._run(self._aio.set_barrier(), timeout)

    def remove_barrier(self, timeout: float | None = None) -> None:
        """Delete the barrier node, releasing every waiter (a missing node is fine).

        Raises:
            RequestTimeoutError, NotEmptyError, NoAuthError, ClientClosedError.
        """
        self._run(self._aio.remove_barrier(), timeout)

    def wait_on_barrier(self, timeout: float | None = None) -> bool:
        """Wait while the barrier node exists: True once gone, False after ``timeout``.

        Raises:
            NoAuthError, ClientClosedError.
        """
        return self._run(self._aio.wait_on_barrier(timeout))


class DoubleBarrier(SyncRecipe):
    """Blocking twin of :class:`zkwarden.recipes.barrier.DoubleBarrier` (Curator
    DistributedDoubleBarrier): :meth:`enter` returns once ``members`` are in,
    :meth:`leave` once all have left. ``acl``: as the async barrier's.

    Raises:
        InvalidArgumentError: ``members`` below 1.
        InvalidPathError: ``path`` is not a valid absolute path.
        ClientClosedError: the client is not started.
    """

    def __init__(self, zk: Client, path: str, members: int = 3, *,
                 data: bytes | None = None, acl: Sequence[ACL] | None = None) -> None:
        self._zk = zk
        self._aio = build_on_loop(zk, lambda: AsyncDoubleBarrier(
            zk.async_client, path, members, data=data, acl=acl))
        self.path = self._aio.path
        self.members = members
        self.node_name = self._aio.node_name
        self.node_path = self._aio.node_path
        self.ready_path = self._aio.ready_path

    @property
    def entered(self) -> bool:
        """True between a successful :meth:`enter` and the next :meth:`leave`."""
        return self._aio.entered

    def enter(self, timeout: float | None = None) -> bool:
        """Join and wait for ``members`` members: True, or False after ``timeout`` (our
        node is then removed again).

        Raises:
            RecipeError: already entered, or closed.
            NoAuthError, InvalidPathError, ClientClosedError.
        """
        return self._run(self._aio.enter(timeout))

    def leave(self, timeout: float | None = None) -> bool:
        """Leave and wait until every member has left: True, or False after ``timeout``.

        Raises:
            RecipeError: not entered, or our node vanished while our session lived.
            NoAuthError, ClientClosedError.
        """
        return self._run(self._aio.leave(timeout))

    def close(self, timeout: float = 5.0) -> None:
        """Let a pending removal of our node finish (at most ``timeout``), then end it.
        Idempotent; never raises but ClientClosedError."""
        self._run(self._aio.close(timeout))


class SharedCount(SyncRecipe):
    """Blocking twin of :class:`zkwarden.recipes.counters.SharedCount` (Curator
    SharedCount, 4-byte big-endian). After :meth:`start`, :attr:`count` follows the node
    (a watch on the loop keeps it current). ``acl``: as the async count's.

    Raises:
        InvalidPathError, InvalidArgumentError: ``default`` is not an int32.
        ClientClosedError: the client is not started.
    """

    def __init__(self, zk: Client, path: str, default: int = 0, *,
                 acl: Sequence[ACL] | None = None) -> None:
        self._zk = zk
        self._aio = build_on_loop(zk, lambda: AsyncSharedCount(zk.async_client, path, default,
                                                               acl=acl))
        self.path = self._aio.path

    @property
    def count(self) -> int:
        """The latest value seen."""
        return self._aio.count

    @property
    def version(self) -> int:
        """The node version of :attr:`count` (-1 before :meth:`start`)."""
        return self._aio.version

    @property
    def versioned(self) -> VersionedValue:
        """:attr:`count` with its version, for :meth:`try_set`."""
        return self._aio.versioned

    def start(self, timeout: float | None = None) -> None:
        """Create the node with the default unless it exists, read it, follow it.

        Raises:
            RequestTimeoutError, RecipeError, InvalidArgumentError, NoAuthError,
            ClientClosedError.
        """
        self._run(self._aio.start(), timeout)

    def get(self, timeout: float | None = None) -> int:
        """Read the count from the server.

        Raises:
            RequestTimeoutError, NoNodeError, InvalidArgumentError, NoAuthError,
            ClientClosedError.
        """
        return self._run(self._aio.get(), timeout)

    def get_versioned(self, timeout: float | None = None) -> VersionedValue:
        """Read the count and its version from the server.

        Raises:
            RequestTimeoutError, NoNodeError, InvalidArgumentError, NoAuthError,
            ClientClosedError.
        """
        return self._run(self._aio.get_versioned(), timeout)

    def set(self, value: int, timeout: float | None = None) -> None:
        """Set the count unconditionally.

        Raises:
            RequestTimeoutError, InvalidArgumentError, NoAuthError, ClientClosedError.
        """
        self._run(self._aio.set(value), timeout)

    def try_set(self, value: int, expected_version: int, timeout: float | None = None) -> bool:
        """Set the count only if the node is still at ``expected_version``.

        Raises:
            RequestTimeoutError, InvalidArgumentError, NoNodeError, NoAuthError,
            ClientClosedError.
        """
        return self._run(self._aio.try_set(value, expected_version), timeout)

    def close(self, timeout: float | None = None) -> None:
        """Stop following the node. Idempotent.

        Raises:
            RequestTimeoutError, ClientClosedError.
        """
        self._run(self._aio.close(), timeout)

    def __enter__(self) -> SharedCount:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AtomicCounter(SyncRecipe):
    """Blocking twin of :class:`zkwarden.recipes.counters.AtomicCounter` (Curator
    DistributedAtomicLong, 8-byte big-endian): each operation returns an
    :class:`AtomicValue` (check ``succeeded``). ``acl``: as the async counter's.

    Raises:
        InvalidPathError, InvalidArgumentError: a negative ``max_retries``.
        ClientClosedError: the client is not started.
    """

    def __init__(self, zk: Client, path: str, *, max_retries: int = DEFAULT_MAX_RETRIES,
                 backoff: tuple[float, float] = DEFAULT_BACKOFF,
                 acl: Sequence[ACL] | None = None) -> None:
        self._zk = zk
        self._aio = build_on_loop(zk, lambda: AsyncAtomicCounter(
            zk.async_client, path, max_retries=max_retries, backoff=backoff, acl=acl))
        self.path = self._aio.path
        self.max_retries = max_retries
        self.marker_path = self._aio.marker_path

    def get(self, timeout: float | None = None) -> AtomicValue:
        """The current value.

        Raises:
            RequestTimeoutError, InvalidArgumentError, NoAuthError, ClientClosedError.
        """
        return self._run(self._aio.get(), timeout)

    def increment(self, timeout: float | None = None) -> AtomicValue:
        """Add 1. Raises: as :meth:`add`."""
        return self._run(self._aio.increment(), timeout)

    def decrement(self, timeout: float | None = None) -> AtomicValue:
        """Subtract 1. Raises: as :meth:`add`."""
        return self._run(self._aio.decrement(), timeout)

    def subtract(self, delta: int, timeout: float | None = None) -> AtomicValue:
        """Subtract ``delta``. Raises: as :meth:`add`."""
        return self._run(self._aio.subtract(delta), timeout)

    def add(self, delta: int, timeout: float | None = None) -> AtomicValue:
        """Add ``delta`` (optimistic compare-and-set on the node version).

        Raises:
            RequestTimeoutError: no outcome within ``timeout`` (cancelled; whether a write
                in flight was applied is then unknown, as for any timed-out write).
            InvalidArgumentError, CounterOutcomeUnknownError, NoAuthError,
            ClientClosedError.
        """
        return self._run(self._aio.add(delta), timeout)

    def try_set(self, value: int, timeout: float | None = None) -> AtomicValue:
        """Set ``value`` whatever the current one. Raises: as :meth:`add`."""
        return self._run(self._aio.try_set(value), timeout)

    def compare_and_set(self, expected: int, new: int,
                        timeout: float | None = None) -> AtomicValue:
        """Set ``new`` only if the value is ``expected``. Raises: as :meth:`add`."""
        return self._run(self._aio.compare_and_set(expected, new), timeout)

    def initialize(self, value: int, timeout: float | None = None) -> bool:
        """Create the node with ``value`` unless it exists: True if created.

        Raises:
            RequestTimeoutError, InvalidArgumentError, NoAuthError, ClientClosedError.
        """
        return self._run(self._aio.initialize(value), timeout)

    def close(self, timeout: float | None = None) -> None:
        """Remove this object's marker node early. Idempotent.

        Raises:
            RequestTimeoutError, ClientClosedError.
        """
        self._run(self._aio.close(), timeout)
