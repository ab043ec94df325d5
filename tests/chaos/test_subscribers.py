"""Case 7 (rule 3): many subscribers of one path's watch, subscribing all at once while
the node changes, with others subscribing and leaving around them: every subscriber
ends on the final value, and each one's view only moves forward."""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import pytest

from zkwarden import AsyncClient, WatchEvent
from zkwarden.testing import ZooKeeperServer

from ._support import CpuMeter, LoopErrors, WarningLog, report, wait_for

TASKS = 200
CHURNERS = 20
THREADS = 50
WRITES = 60


@dataclass
class Seen:
    events: list[WatchEvent] = field(default_factory=list)

    @property
    def last(self) -> bytes | None:
        return self.events[-1].data if self.events else None

    def mzxids(self) -> list[int]:
        return [e.stat.mzxid for e in self.events if e.stat is not None]


def _check_forward_only(seen: list[Seen]) -> None:
    for i, s in enumerate(seen):
        mzxids = s.mzxids()
        assert len(mzxids) == len(s.events), (i, "an event without a Stat")
        assert mzxids == sorted(set(mzxids)), (i, "view went back or repeated", mzxids)


@pytest.mark.asyncio
async def test_200_tasks_subscribe_at_once_while_the_node_changes(
    chaos_server: ZooKeeperServer, zk_path: str, zk_warnings: WarningLog
) -> None:
    loop_errors = LoopErrors().install()
    path = f"{zk_path}/hot"
    final = str(WRITES).encode()
    # track_ensemble=False: the subscriber count below is of this test's streams only
    async with AsyncClient(chaos_server.connect_string, session_timeout=10.0,
                           track_ensemble=False) as client, \
            AsyncClient(chaos_server.connect_string, session_timeout=10.0) as writer:
        await writer.create(path, b"0", makepath=True)
        go = asyncio.Event()
        seen = [Seen() for _ in range(TASKS)]
        churned = [0]

        async def subscriber(box: Seen) -> None:
            await go.wait()
            async with aclosing(client.watch(path)) as stream:
                async for event in stream:
                    box.events.append(event)

        async def churner() -> None:
            # Subscribe, take the first state, leave; again and again, alongside.
            await go.wait()
            while True:
                async with aclosing(client.watch(path)) as stream:
                    first = await stream.__anext__()
                    assert first.data is not None
                churned[0] += 1
                await asyncio.sleep(0)

        async def write_all() -> None:
            await go.wait()
            for i in range(1, WRITES + 1):
                await writer.set(path, str(i).encode())

        tasks = [asyncio.create_task(subscriber(box)) for box in seen]
        churners = [asyncio.create_task(churner()) for _ in range(CHURNERS)]
        cpu = CpuMeter()
        t0 = time.monotonic()
        go.set()
        await asyncio.wait_for(write_all(), 30)
        t_written = time.monotonic()
        try:
            await wait_for(lambda: all(s.last == final for s in seen), 15,
                           "every subscriber on the final value")
        finally:
            late = [i for i, s in enumerate(seen) if s.last != final]
            for task in tasks + churners:
                task.cancel()
            results = await asyncio.gather(*tasks, *churners, return_exceptions=True)
        t_all = time.monotonic()
        assert not late
        # Only cancellations: no subscriber or churner failed.
        assert all(isinstance(r, asyncio.CancelledError) for r in results), [
            r for r in results if not isinstance(r, asyncio.CancelledError)
        ]
        _check_forward_only(seen)
        assert churned[0] > 0
        # Every stream closed by its task left the client: nothing stays subscribed.
        assert not client._subs.subscribers, len(client._subs.subscribers)
        assert not zk_warnings.errors()
        assert not loop_errors.contexts, loop_errors.messages()
        report(
            "7-200-tasks",
            subscribers=TASKS,
            churners=CHURNERS,
            churn_cycles=churned[0],
            writes=WRITES,
            write_s=t_written - t0,
            converged_after_last_write_s=t_all - t_written,
            events_min=min(len(s.events) for s in seen),
            events_max=max(len(s.events) for s in seen),
            cpu_s=cpu.elapsed(),
        )


def test_50_threads_subscribe_at_once_while_the_node_changes(
    chaos_server: ZooKeeperServer, zk_path: str, zk_warnings: WarningLog
) -> None:
    """The blocking half of case 7: 50 threads call ``Client.watch(path, "data", cb)``
    at the same moment while another thread changes the node."""
    from zkwarden import Client  # the blocking facade (zkwarden.sync)

    path = f"{zk_path}/hot"
    final = str(WRITES).encode()
    seen = [Seen() for _ in range(THREADS)]
    handles: list[Any] = [None] * THREADS
    failures: list[BaseException] = []
    barrier = threading.Barrier(THREADS + 1, timeout=30)

    with Client(chaos_server.connect_string, session_timeout=10.0) as client, \
            Client(chaos_server.connect_string, session_timeout=10.0) as writer:
        writer.create(path, b"0", makepath=True)

        def subscribe(i: int) -> None:
            try:
                barrier.wait()
                handles[i] = client.watch(path, "data", seen[i].events.append, timeout=30)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                failures.append(exc)

        def write_all() -> None:
            try:
                barrier.wait()
                for i in range(1, WRITES + 1):
                    writer.set(path, str(i).encode(), timeout=10)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                failures.append(exc)

        threads = [threading.Thread(target=subscribe, args=(i,)) for i in range(THREADS)]
        threads.append(threading.Thread(target=write_all))
        cpu = CpuMeter()
        t0 = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads), "a thread is stuck"
        t_written = time.monotonic()
        assert not failures, failures
        deadline = time.monotonic() + 15
        while not all(s.last == final for s in seen):
            assert time.monotonic() < deadline, [
                i for i, s in enumerate(seen) if s.last != final
            ]
            time.sleep(0.02)
        t_all = time.monotonic()
        _check_forward_only(seen)
        for handle in handles:
            assert handle is not None
            assert handle.active and handle.error is None
            handle.cancel()
    assert not zk_warnings.errors()
    report(
        "7-50-threads",
        subscribers=THREADS,
        writes=WRITES,
        write_s=t_written - t0,
        converged_after_last_write_s=t_all - t_written,
        events_min=min(len(s.events) for s in seen),
        events_max=max(len(s.events) for s in seen),
        cpu_s=cpu.elapsed(),
    )
