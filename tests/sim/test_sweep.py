"""Exhaustive fault points: each workload, each frame index, each fault kind.

A failure lists each kind of violation found with the first case that shows it and a
``--sim-case=WORKLOAD/KIND/K`` to replay it.
"""

from __future__ import annotations

import pytest

from zkwarden.testing.sim import FaultKind

from ._harness import describe
from .sweep import run_case, sweep
from .workloads import WORKLOADS


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_every_fault_at_every_frame(workload: str, request: pytest.FixtureRequest) -> None:
    case = request.config.getoption("--sim-case")
    if case is not None:
        name, kind, k = case.split("/")
        if name != workload:
            return
        outcome = run_case(name, FaultKind(kind), int(k))
        print(describe(outcome, f"--sim-case={case}", limit=400))
        assert outcome.ok, describe(outcome, f"--sim-case={case}")
        return
    result = sweep(workload)
    assert result.runs > result.frames, "the sweep ran no fault cases"
    assert not result.found, result.report()
