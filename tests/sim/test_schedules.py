"""Thousands of seeded random schedules, each checked step by step.

``pytest tests/sim --sim-seed=N`` replays schedule N and prints its trace.
"""

from __future__ import annotations

import pytest

from ._harness import describe
from .schedules import make_schedule, run_seed, shrink


def test_random_schedules(request: pytest.FixtureRequest) -> None:
    seed = request.config.getoption("--sim-seed")
    if seed is not None:
        seeds = [seed]
    else:
        first = request.config.getoption("--sim-first-seed")
        seeds = list(range(first, first + request.config.getoption("--sim-schedules")))
    failures: dict[str, int] = {}
    for s in seeds:
        outcome = run_seed(s)
        if len(seeds) == 1:
            print(describe(outcome, f"--sim-seed={s}", limit=1000))
        if outcome.violations:
            cat = outcome.violations[0][0]
            failures.setdefault(cat, s)
    if failures:
        cat, s = sorted(failures.items())[0]
        steps = shrink(s, make_schedule(s), cat)
        outcome = run_seed(s, steps)
        summary = "\n".join(f"  [{c}] first seed {x}: --sim-seed={x}"
                            for c, x in sorted(failures.items()))
        pytest.fail(f"{len(failures)} kind(s) of violation in {len(seeds)} schedules:\n"
                    f"{summary}\nminimal steps for seed {s} [{cat}]:\n  "
                    + "\n  ".join(map(str, steps)) + "\n"
                    + describe(outcome, f"--sim-seed={s} (shrunk)", 40), pytrace=False)


def test_a_seed_replays_exactly() -> None:
    first, second = run_seed(12345), run_seed(12345)
    assert first.trace == second.trace
    assert first.frames == second.frames
