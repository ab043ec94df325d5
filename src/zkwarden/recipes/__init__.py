"""Coordination recipes with Apache Curator 5.x node layouts, so Python and Java services
share locks, leadership, barriers and counters (blocking twins: ``zkwarden.recipes.sync``).

All of them act on the client's session states (DESIGN section 4): SUSPENDED makes a hold
uncertain (or, for leadership by default, ends the term), LOST revokes it; waiters queue
again on the new session. See the README's "Coordination recipes" section.
"""

from __future__ import annotations

from .barrier import Barrier, DoubleBarrier
from .counters import AtomicCounter, AtomicValue, SharedCount, VersionedValue
from .election import LeaderElection
from .latch import LeaderLatch, LeadershipTerm
from .lock import GuardedTransaction, Lease, Lock
from .rwlock import ReadLock, ReadWriteLock, WriteLock
from .semaphore import Semaphore

__all__ = (
    "Lock",
    "Lease",
    "GuardedTransaction",
    "ReadWriteLock",
    "ReadLock",
    "WriteLock",
    "Semaphore",
    "LeaderLatch",
    "LeaderElection",
    "LeadershipTerm",
    "Barrier",
    "DoubleBarrier",
    "SharedCount",
    "VersionedValue",
    "AtomicCounter",
    "AtomicValue",
)
