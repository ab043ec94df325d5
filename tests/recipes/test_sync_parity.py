"""The blocking recipes cannot drift from the async ones: every public method and property
of each async recipe exists on its blocking twin with the same parameters (in order, with
the same defaults), except for the differences listed here, each with its reason. No
server needed."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from zkwarden.recipes import sync
from zkwarden.recipes._lease import GuardedTransaction as AGuardedTransaction
from zkwarden.recipes._lease import Lease as ALease
from zkwarden.recipes.barrier import Barrier as ABarrier
from zkwarden.recipes.barrier import DoubleBarrier as ADoubleBarrier
from zkwarden.recipes.counters import AtomicCounter as AAtomicCounter
from zkwarden.recipes.counters import SharedCount as ASharedCount
from zkwarden.recipes.election import LeaderElection as AElection
from zkwarden.recipes.latch import LeaderLatch as ALatch
from zkwarden.recipes.lock import Lock as ALock
from zkwarden.recipes.rwlock import ReadLock as AReadLock
from zkwarden.recipes.rwlock import ReadWriteLock as AReadWriteLock
from zkwarden.recipes.rwlock import WriteLock as AWriteLock
from zkwarden.recipes.semaphore import Semaphore as ASemaphore

PAIRS: list[tuple[type, type]] = [
    (ALock, sync.Lock), (ASemaphore, sync.Semaphore), (AReadWriteLock, sync.ReadWriteLock),
    (AReadLock, sync.ReadLock), (AWriteLock, sync.WriteLock), (ALease, sync.Lease),
    (AGuardedTransaction, sync.GuardedTransaction), (ALatch, sync.LeaderLatch),
    (AElection, sync.LeaderElection), (ABarrier, sync.Barrier),
    (ADoubleBarrier, sync.DoubleBarrier), (ASharedCount, sync.SharedCount),
    (AAtomicCounter, sync.AtomicCounter),
]

#: Async members the blocking twin does not have, and why.
ASYNC_ONLY: dict[str, dict[str, str]] = {
    "*Lock/Semaphore": {
        "held_by_current_task": "leases belong to threads: held_by_current_thread()",
    },
    "LeaderLatch": {
        "term": "a blocking body gets its term from leadership(), which tracks it so that "
                "close() can tell it and wait for it; a bare term could not be tracked",
    },
    "LeaderElection": {
        "term": "the term is handed to lead(term); a bare term could not be tracked",
    },
    "SharedCount": {
        "changes": "an async iterator; blocking code reads `count` (kept current by the "
                   "watch on the loop) or calls get()",
    },
}
#: Blocking members the async recipe does not have, and why.
SYNC_ONLY: dict[str, dict[str, str]] = {
    "*Lock/Semaphore": {
        "held_by_current_thread": "leases belong to threads (the async twin: tasks)",
    },
    "LeadershipTerm": {},
}
#: Parameters only the blocking twin has: every call that talks to ZooKeeper and has no
#: bound of its own takes ``timeout=`` (a RequestTimeoutError past it, the call cancelled).
TIMEOUT = "timeout"
#: Parameters that differ: (class, method) -> reason.
CHANGED: dict[tuple[str, str], str] = {
    ("LeaderElection", "run"): "lead(term) is a plain callable run on the calling thread",
    ("*", "__init__"): "takes a blocking Client instead of an AsyncClient; callbacks get "
                       "blocking leases",
    ("*Lock/Semaphore", "revoke"): "a static method taking the Client (and a timeout)",
}


def _group(cls: type) -> str:
    if cls.__name__ in ("Lock", "Semaphore", "ReadLock", "WriteLock"):
        return "*Lock/Semaphore"
    return cls.__name__


def _public(cls: type) -> dict[str, Any]:
    return {n: inspect.getattr_static(cls, n) for n in dir(cls)
            if not n.startswith("_") or n in ("__init__", "__enter__", "__aenter__")}


def _params(fn: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    sig = inspect.signature(fn)
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()
            if p.name not in ("self", "cls")]


@pytest.mark.parametrize(("async_cls", "sync_cls"), PAIRS, ids=[a.__name__ for a, _ in PAIRS])
def test_same_members(async_cls: type, sync_cls: type) -> None:
    group = _group(async_cls)
    a = {n for n in _public(async_cls) if n != "__aenter__"}
    s = {n for n in _public(sync_cls) if n != "__enter__"}
    a -= set(ASYNC_ONLY.get(group, {}))
    s -= set(SYNC_ONLY.get(group, {}))
    assert a - s == set(), f"{sync_cls.__name__} lacks {sorted(a - s)}"
    # extra blocking methods must be listed (a property may mirror an async instance
    # attribute, which the class does not show)
    extras = {n for n in s - a if not isinstance(inspect.getattr_static(sync_cls, n), property)}
    assert extras == set(), f"{sync_cls.__name__} has unlisted extras {sorted(extras)}"
    if "__aenter__" in _public(async_cls):
        assert "__enter__" in _public(sync_cls)


@pytest.mark.parametrize(("async_cls", "sync_cls"), PAIRS, ids=[a.__name__ for a, _ in PAIRS])
def test_same_parameters(async_cls: type, sync_cls: type) -> None:
    group = _group(async_cls)
    for name, attr in _public(async_cls).items():
        if name in ASYNC_ONLY.get(group, {}) or name == "__aenter__":
            continue
        if isinstance(attr, property) or not callable(getattr(async_cls, name)):
            assert not callable(getattr(sync_cls, name, None)) or isinstance(
                inspect.getattr_static(sync_cls, name), property), name
            continue
        if (group, name) in CHANGED or ("*", name) in CHANGED:
            continue
        a_params = _params(getattr(async_cls, name))
        s_params = _params(getattr(sync_cls, name))
        # every async parameter, in order, same kind and default
        assert s_params[: len(a_params)] == a_params, (sync_cls.__name__, name)
        extra = s_params[len(a_params):]
        assert all(p[0] == TIMEOUT for p in extra), (sync_cls.__name__, name, extra)
        if name not in ("__init__",) and inspect.iscoroutinefunction(getattr(async_cls, name)):
            has_own_timeout = any(p[0] == TIMEOUT for p in a_params)
            # blocking calls are bounded: a timeout of their own or one added
            assert has_own_timeout or extra or name in _UNBOUNDED_OK, (sync_cls.__name__, name)


#: Coroutine methods whose blocking twin adds no ``timeout``, and why.
_UNBOUNDED_OK = {
    "close": "bounded inside (latch, election, double barrier take their own timeout; "
             "the locks' close releases with bounded waits)",
    "release": "Lease.release takes timeout=, QueueLock.release too: kept for symmetry",
    "run": "an election runs until stopped",
}


def test_listed_differences_are_real() -> None:
    """A difference listed for a member that no longer differs must be removed."""
    for group, members in ASYNC_ONLY.items():
        classes = [a for a, _ in PAIRS if _group(a) == group]
        for name in members:
            assert any(hasattr(a, name) for a in classes), (group, name)
            assert not any(hasattr(s, name) for a, s in PAIRS if _group(a) == group), name
