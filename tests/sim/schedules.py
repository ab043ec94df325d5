"""Seeded random schedules: operations, faults, clock jumps, cancellations, server events.

A schedule is a list of steps made from its seed alone, so a seed replays it exactly;
:func:`shrink` removes steps while the same kind of violation stays.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from typing import Any

from zkwarden import ClientState
from zkwarden.testing.sim import FaultKind

from ._harness import FAULTS, Outcome, Sim, run

Step = tuple[Any, ...]
PATHS = ("/a", "/b", "/a/c", "/e")
KINDS = tuple(FAULTS)


def make_schedule(seed: int) -> list[Step]:
    rng = random.Random(seed)
    steps: list[Step] = [("create", "/a", False)]
    for _ in range(rng.randint(4, 14)):
        r = rng.random()
        path = rng.choice(PATHS)
        if r < 0.30:
            op = rng.choice(("create", "set", "delete", "get", "exists", "children"))
            steps.append((op, path, rng.random() < 0.5))
        elif r < 0.45:
            steps.append(("watch", path, rng.choice(("data", "exists", "children",
                                                     "persistent"))))
        elif r < 0.65:
            steps.append(("fault", rng.randint(0, 6), rng.choice(KINDS).value))
        elif r < 0.75:
            steps.append(("sleep", round(rng.uniform(0.0, 4.0), 3)))
        elif r < 0.80:
            steps.append(("jump", round(rng.uniform(0.5, 5.0), 3)))
        elif r < 0.87:
            steps.append(("cancel", rng.choice(("set", "get", "create")), path,
                          round(rng.uniform(0.0, 0.01), 4)))
        elif r < 0.93:
            steps.append(("server", rng.choice(("create", "set", "delete")), path))
        elif r < 0.96:
            steps.append(("expire",))
        else:
            steps.append(("kick",))
        steps.append(("sleep", round(rng.uniform(0.0, 0.5), 3)))
    steps.append(("close", rng.choice((None, None, None, 0.0005, 0.01))))
    return steps


def _operation(zk: Any, name: str, path: str, flag: bool) -> Coroutine[Any, Any, Any]:
    if name == "create":
        return zk.create(path, b"v", ephemeral=flag)  # type: ignore[no-any-return]
    if name == "set":
        return zk.set(path, b"w" if flag else b"x")  # type: ignore[no-any-return]
    if name == "delete":
        return zk.delete(path)  # type: ignore[no-any-return]
    if name == "get":
        return zk.get(path)  # type: ignore[no-any-return]
    if name == "exists":
        return zk.exists(path)  # type: ignore[no-any-return]
    return zk.get_children(path)  # type: ignore[no-any-return]


def workload_for(steps: list[Step]) -> Callable[[Sim], Any]:
    async def workload(sim: Sim) -> None:
        zk = sim.client()
        await sim.op("start", zk.start())
        closed = False
        for step in steps:
            sim.log(f"step {step}")
            name = step[0]
            if name in ("create", "set", "delete", "get", "exists", "children"):
                sim.call(f"{name} {step[1]}", _operation(zk, name, step[1], step[2]))
            elif name == "watch":
                sim.watch(step[1], step[2])
            elif name == "fault":
                sim.net.plan.add(sim.net.index + step[1], FAULTS[FaultKind(step[2])])
            elif name == "sleep":
                await sim.sleep(step[1])
            elif name == "jump":
                sim.loop.advance(step[1])  # type: ignore[attr-defined]
                await asyncio.sleep(0)
                sim.check()
            elif name == "cancel":
                task = sim.call(f"{step[1]} {step[2]} (cancelled)",
                                _operation(zk, step[1], step[2], False))
                await asyncio.sleep(step[3])
                task.cancel()
            elif name == "server":
                sim.server.write(step[1], step[2], b"s")
            elif name == "expire" and zk.session_id:
                sim.server.expire(zk.session_id)
            elif name == "kick":
                sim.server.kick()
            elif name == "close":
                sim.net.plan.at.clear()
                await sim.settle()
                await sim.close(cancel_after=step[1])
                closed = True
        if not closed and zk.state is not ClientState.CLOSED:
            await sim.close()

    return workload


def run_seed(seed: int, steps: list[Step] | None = None) -> Outcome:
    return run(workload_for(steps if steps is not None else make_schedule(seed)), seed=seed)


def shrink(seed: int, steps: list[Step], category: str, budget: int = 200) -> list[Step]:
    """Drop steps (one at a time, the close kept) while the same violation stays."""
    current = list(steps)
    changed = True
    while changed and budget > 0:
        changed = False
        for i in range(len(current) - 2, -1, -1):
            trial = current[:i] + current[i + 1 :]
            budget -= 1
            outcome = run_seed(seed, trial)
            if outcome.violations and outcome.violations[0][0] == category:
                current = trial
                changed = True
            if budget <= 0:
                break
    return current
