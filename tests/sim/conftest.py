"""Options of the simulation suite.

``--sim-schedules=N`` random schedules (default 2,000); ``--sim-seed=N`` replays exactly
one schedule and prints its trace; ``--sim-case=WORKLOAD/KIND/K`` replays one point of the
exhaustive sweep.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sim", "deterministic simulation")
    group.addoption("--sim-seed", type=int, default=None,
                    help="replay the random schedule with this seed only")
    group.addoption("--sim-schedules", type=int, default=2000,
                    help="how many random schedules to run (default 2000)")
    group.addoption("--sim-first-seed", type=int, default=0,
                    help="first seed of the random schedules (default 0)")
    group.addoption("--sim-case", default=None,
                    help="replay one sweep point: WORKLOAD/KIND/K")
