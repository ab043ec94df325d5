"""The leader incident: a leader's network drops for longer than its session timeout.

Two participants of one Curator-compatible :class:`~zkwarden.recipes.latch.LeaderLatch` run
their leader work inside ``latch.leadership()``: A reaches ZooKeeper through a FaultProxy of
its own (the fleet is not disturbed), B directly. A leads; its network goes silent. A's
client notices the silence after 2/3 of the session timeout (SUSPENDED) and its leader
work is cancelled at that moment; the server expires A's session after a whole session
timeout and only then can B be elected. The invariant: A's work stopped before B's
started (the gap is measured), never two at once (an ephemeral guard node each body
creates tells the server's view), B's fencing token is higher, and A, back on the
network, rejoins as a follower on a new session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from ..._aio.client import AsyncClient
from ..._aio.retry import Backoff
from ..._tasks import TaskOwner
from ...errors import LeaseLostError, NodeExistsError, RecipeError, ZooKeeperError
from ...recipes.latch import LeaderLatch
from ...testing import FaultProxy
from ...types import ClientState, ClientStateChange
from .fleet import DemoConfig, Fleet
from .report import Check, Report, Verdict

__all__ = ("leader_drop", "leader_title", "leader_narration")

PATH = "/zkwarden-demo/leader"
GUARD = "/zkwarden-demo/leader-guard"

log = logging.getLogger("zkwarden.demo")


def _drop_seconds(config: DemoConfig) -> float:
    return config.session_timeout + (1.5 if config.quick else 2.0)


def leader_title(config: DemoConfig) -> str:
    """The incident's title line."""
    return (f"a leader's network drops for {_drop_seconds(config):g} s, longer than its "
            f"{config.session_timeout:g} s session timeout")


def leader_narration(config: DemoConfig) -> str:
    """The incident's one-sentence story."""
    return ("Two workers share a leader latch (Curator's layout); the leader's network goes "
            "silent. It must stop its leader work by itself before the other is elected "
            "(never two leaders, not even for a moment), and rejoin as a follower once the "
            "network is back.")


@dataclass
class _Side:
    """One participant: its client, latch and what its leader work did."""

    name: str
    client: AsyncClient
    latch: LeaderLatch | None = None
    starts: list[tuple[float, int]] = field(default_factory=list)
    stops: list[float] = field(default_factory=list)
    states: list[tuple[float, ClientStateChange]] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    ticks: int = 0


@dataclass
class _Watch:
    holder: str | None = None
    overlaps: list[str] = field(default_factory=list)
    guard_conflicts: list[str] = field(default_factory=list)


async def _serve(side: _Side, watch: _Watch) -> None:
    """Lead whenever elected; the work (a tick every 50 ms) runs inside leadership()."""
    assert side.latch is not None
    while True:
        try:
            async with side.latch.leadership() as term:
                if watch.holder is not None:
                    watch.overlaps.append(f"{side.name} started while {watch.holder} worked")
                watch.holder = side.name
                side.starts.append((time.monotonic(), term.fencing_token))
                side.started.set()
                try:
                    try:
                        await side.client.create(GUARD, side.name.encode(), ephemeral=True)
                    except NodeExistsError:
                        watch.guard_conflicts.append(side.name)
                    while True:  # the leader's work: a tick every 50 ms
                        side.ticks += 1
                        await asyncio.sleep(0.05)
                finally:
                    side.stops.append(time.monotonic())
                    if watch.holder == side.name:
                        watch.holder = None
        except LeaseLostError:
            continue  # wait for the next term
        except (RecipeError, ZooKeeperError) as exc:
            log.debug("demo leader %s stopped: %r", side.name, exc)
            return


def _timeline(a: _Side, b: _Side, t0: float, heal: float) -> list[str]:
    rows: list[tuple[float, str, str]] = [(t0, "network drops (silently)", ""),
                                          (heal, "network back", "")]
    for when, change in a.states:
        if when >= t0:
            text = change.state.value
            if change.state is ClientState.CONNECTED and change.new_session:
                text = "CONNECTED on a new session: queues again"
            rows.append((when, text, ""))
    rows += [(when, "leader work STOPS", "") for when in a.stops if when >= t0]
    rows += [(when, "", f"elected: leader work STARTS (token {token:#x})")
             for when, token in b.starts if when >= t0]
    rows.sort(key=lambda r: r[0])
    width = max(len(r[1]) for r in rows)
    lines = [f"{'t (s)':>6}  {'A: the leader, behind its own proxy':<{width}}  B: a follower, direct"]
    lines += [f"{when - t0:6.2f}  {left:<{width}}  {right}".rstrip() for when, left, right in rows]
    return lines


async def leader_drop(fleet: Fleet, report: Report) -> Verdict:
    """Blackhole the leader's own connection for longer than the session timeout."""
    cfg = fleet.config
    drop = _drop_seconds(cfg)
    verdict = Verdict(f"leader drop {drop:g} s > session")
    proxy = FaultProxy(fleet.server.connect_string).start()
    backoff = Backoff(initial=0.1, maximum=cfg.backoff_max)
    a = _Side("A", AsyncClient(proxy.connect_string, session_timeout=cfg.session_timeout,
                               backoff=backoff))
    b = _Side("B", AsyncClient(fleet.server.connect_string,
                               session_timeout=cfg.session_timeout, backoff=backoff))
    a.client.add_listener(lambda change: a.states.append((time.monotonic(), change)))
    watch = _Watch()
    tasks = TaskOwner("demo leaders", log)
    try:
        await asyncio.gather(a.client.start(), b.client.start())
        a.latch = LeaderLatch(a.client, PATH, identifier="worker-a")
        b.latch = LeaderLatch(b.client, PATH, identifier="worker-b")
        await a.latch.start()
        await a.latch.wait_leader(10.0)
        await b.latch.start()
        tasks.spawn(_serve(a, watch), name="leader A")
        tasks.spawn(_serve(b, watch), name="leader B")
        async with asyncio.timeout(10.0):
            await a.started.wait()
        attempts = a.client.connect_attempts
        cpu = time.process_time()
        t0 = time.monotonic()
        proxy.blackhole()
        while time.monotonic() - t0 < drop:
            a_state = "leading" if a.latch.is_leader else "not leading"
            b_state = "leading" if b.latch.is_leader else "waiting"
            report.progress.update(f"{time.monotonic() - t0:5.1f}s  leader drop  A {a_state} "
                                   f"({a.client.state.value}), B {b_state}",
                                   key=f"{a_state} {a.client.state.value} {b_state}")
            await asyncio.sleep(0.1)
        proxy.pass_through()
        heal = time.monotonic()
        rejoined = False
        deadline = heal + cfg.recover_limit
        while time.monotonic() < deadline:
            if await b.latch.participants() == ["worker-b", "worker-a"]:
                rejoined = True
                break
            await asyncio.sleep(0.1)
        recovered = time.monotonic()
        report.progress.clear()
        for line in _timeline(a, b, t0, heal):
            report.note(line)
        verdict.recover = recovered - heal if rejoined else None
        verdict.cpu = time.process_time() - cpu
        verdict.attempts = a.client.connect_attempts - attempts
        a_stop = next((s for s in a.stops if s >= t0), None)
        b_start = next((s for s, _ in b.starts if s >= t0), None)
        gap = None if a_stop is None or b_start is None else b_start - a_stop
        suspended = next((w for w, c in a.states
                          if w >= t0 and c.state is ClientState.SUSPENDED), None)
        if a_stop is not None and b_start is not None and gap is not None:
            verdict.saw.append(
                f"A stopped its work {a_stop - t0:.2f} s after the drop (SUSPENDED"
                f"{'' if suspended is None else f' at {suspended - t0:.2f} s'}); B started "
                f"at {b_start - t0:.2f} s, once the server had expired A's session: gap "
                f"{gap * 1000:.0f} ms, overlap 0")
        verdict.saw.append(f"A rejoined as a follower on a new session "
                           f"{'in ' + format(recovered - heal, '.2f') + ' s' if rejoined else 'never'}"
                           f" after the network came back")
        a_token = a.starts[0][1] if a.starts else 0
        b_token = b.starts[0][1] if b.starts else 0
        verdict.checks += [
            Check("the old leader stops before the new one starts",
                  gap is not None and gap > 0,
                  "no handover" if gap is None else f"gap {gap * 1000:.0f} ms"),
            Check("never two leaders (in process and by the server's guard node)",
                  not watch.overlaps and not watch.guard_conflicts,
                  "; ".join(watch.overlaps + watch.guard_conflicts) or "one at a time"),
            Check("the new leader's fencing token is higher", b_token > a_token,
                  f"{a_token:#x} -> {b_token:#x}"),
            Check("the old leader rejoins as a follower", rejoined,
                  "queued behind B" if rejoined else "not back in the queue"),
        ]
    finally:
        report.progress.clear()
        await tasks.aclose()
        for side in (b, a):
            if side.latch is not None:
                with contextlib.suppress(ZooKeeperError):
                    await side.latch.close()
        await asyncio.gather(a.client.close(), b.client.close())
        proxy.close()
    assert fleet.observer is not None
    left = 0
    with contextlib.suppress(ZooKeeperError):
        left = len(await fleet.observer.get_children(PATH))
    nodes, sessions, details = await fleet.leaks()
    verdict.leaked_nodes, verdict.leaked_sessions = nodes + left, sessions
    verdict.checks.append(Check("no node or session leaked",
                                not (nodes or left or sessions),
                                "; ".join(details[:3]) or f"{left} latch nodes left"))
    with contextlib.suppress(ZooKeeperError):
        await fleet.observer.delete("/zkwarden-demo", recursive=True)
    return verdict
