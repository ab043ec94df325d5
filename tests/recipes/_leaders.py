"""Helpers of the leadership tests (latch and election): a leader body that proves
exclusivity two ways, and the record of who led when.

* In process: every leader body of the test runs on this one event loop, so the
  :class:`Monitor` sees the true order of "body started" and "body stopped" (a start while
  another body has not stopped is an overlap).
* In ZooKeeper: a body creates an ephemeral guard node as soon as it starts and deletes it
  when it stops (best effort; a dead session's guard goes with its session): a NodeExists
  means two leaders at once as far as the server can tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field

from zkwarden import AsyncClient
from zkwarden.errors import NodeExistsError, ZooKeeperError
from zkwarden.recipes._leadership import LeadershipTerm

UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def node_pattern(marker: str) -> re.Pattern[str]:
    return re.compile(rf"_c_{UUID}-{marker}\d{{10}}")


@dataclass
class Monitor:
    holder: str | None = None
    overlaps: list[tuple[str, str]] = field(default_factory=list)
    guard_conflicts: list[str] = field(default_factory=list)
    #: (monotonic time, who, "start" | "stop", fencing token)
    log: list[tuple[float, str, str, int]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def started(self, who: str, token: int) -> None:
        if self.holder is not None:
            self.overlaps.append((self.holder, who))
        self.holder = who
        self.log.append((time.monotonic(), who, "start", token))
        self._notify()

    def stopped(self, who: str, token: int) -> None:
        if self.holder == who:
            self.holder = None
        self.log.append((time.monotonic(), who, "stop", token))
        self._notify()

    def _notify(self) -> None:
        event, self.changed = self.changed, asyncio.Event()
        event.set()

    def starts(self) -> list[tuple[float, str, int]]:
        return [(t, who, tok) for t, who, what, tok in self.log if what == "start"]

    def leaders(self) -> list[str]:
        return [who for _, who, _ in self.starts()]

    def handovers(self) -> list[float]:
        """For each start after the first: its time minus the previous body's stop
        (positive: a gap; an overlap would show as a negative value)."""
        gaps = []
        last_stop: float | None = None
        for t, _, what, _ in self.log:
            if what == "stop":
                last_stop = t
            elif last_stop is not None:
                gaps.append(t - last_stop)
        return gaps

    def tokens_increase(self) -> bool:
        """Fencing tokens never go down, and only the same node may repeat one."""
        starts = self.starts()
        return all(
            b[2] > a[2] or (b[2] == a[2] and b[1] == a[1])
            for a, b in zip(starts, starts[1:], strict=False)
        )

    async def wait(self, predicate: object, timeout: float, what: str) -> None:
        assert callable(predicate)
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"{what}: not within {timeout}s; log={self.log}") from None

    async def new_leader(self, old: str | None, timeout: float) -> str:
        await self.wait(lambda: self.holder is not None and self.holder != old, timeout,
                        f"a leader other than {old}")
        assert self.holder is not None
        return self.holder


async def leader_body(mon: Monitor, who: str, zk: AsyncClient, guard: str,
                      term: LeadershipTerm, hold: float | None = None) -> None:
    """Lead until cancelled (or ``hold`` seconds), recording the term in ``mon`` and in the
    guard node."""
    mon.started(who, term.fencing_token)
    created = False
    try:
        try:
            await zk.create(guard, who.encode(), ephemeral=True)
            created = True
        except NodeExistsError:
            mon.guard_conflicts.append(who)
        except ZooKeeperError:  # e.g. the connection dropped: go on leading until cancelled
            pass
        if hold is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(hold)
    finally:
        mon.stopped(who, term.fencing_token)
        with contextlib.suppress(ZooKeeperError, TimeoutError):
            async with asyncio.timeout(1.0):
                # a create cancelled in flight may have been applied: ours if our session's
                stat = await zk.exists(guard)
                if created or (stat is not None and stat.ephemeral_owner == zk.session_id):
                    await zk.delete(guard)


def gap_summary(gaps: list[float]) -> str:
    if not gaps:
        return "no handovers"
    return (f"{len(gaps)} handovers: min gap {min(gaps) * 1000:.1f} ms, "
            f"max {max(gaps) * 1000:.1f} ms")


async def wait_until(predicate: object, timeout: float, what: str,
                     interval: float = 0.02) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(interval)
