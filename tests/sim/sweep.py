"""The exhaustive fault-point sweep: every frame index of a workload, every fault kind."""

from __future__ import annotations

from dataclasses import dataclass, field

from zkwarden.testing.sim import CONNECT_FAULTS, DATA_FAULTS, FaultKind, FaultPlan

from ._harness import FAULTS, Outcome, describe, run
from .workloads import WORKLOADS

#: workloads whose runs are expensive (10,500 events each) get fewer kinds per frame
SWEEP_KINDS = {"slow_persistent_consumer": (FaultKind.DELAY, FaultKind.RESET,
                                            FaultKind.CORRUPT, FaultKind.DROP)}


@dataclass
class SweepResult:
    workload: str
    runs: int = 0
    frames: int = 0
    #: category -> (kind, k, outcome) of the first case found, and how many cases
    found: dict[str, tuple[FaultKind, int, Outcome]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def report(self) -> str:
        lines = [f"workload {self.workload}: {self.runs} runs over {self.frames} frames"]
        for cat, (kind, k, _) in sorted(self.found.items()):
            lines.append(f"  [{cat}] {self.counts[cat]} case(s); first: "
                         f"--sim-case={self.workload}/{kind.value}/{k}")
        for cat, (kind, k, outcome) in sorted(self.found.items()):
            lines.append(describe(outcome, f"--- {cat}: {self.workload}/{kind.value}/{k}", 25))
        return "\n".join(lines)


def run_case(workload: str, kind: FaultKind | None, k: int) -> Outcome:
    plan = FaultPlan()
    if kind is not None:
        plan.add(k, FAULTS[kind])
    return run(WORKLOADS[workload], plan)


def sweep(workload: str) -> SweepResult:
    result = SweepResult(workload)
    baseline = run_case(workload, None, 0)
    result.runs += 1
    result.frames = baseline.frames
    if baseline.violations:
        result.found[baseline.violations[0][0]] = (FaultKind.DELIVER, 0, baseline)
        result.counts[baseline.violations[0][0]] = 1
    lo, hi = baseline.skip
    for k in range(baseline.frames):
        if lo <= k <= hi and hi > lo:
            continue
        kinds = CONNECT_FAULTS if k in baseline.connect_frames else DATA_FAULTS
        kinds = tuple(x for x in kinds if x in SWEEP_KINDS.get(workload, kinds))
        for kind in kinds:
            outcome = run_case(workload, kind, k)
            result.runs += 1
            if outcome.violations:
                cat = outcome.violations[0][0]
                result.counts[cat] = result.counts.get(cat, 0) + 1
                result.found.setdefault(cat, (kind, k, outcome))
    return result
