"""What the demo prints: narration, the live progress line, verdict rows, the summary."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..output import Output, Progress

__all__ = ("Check", "Verdict", "Report")


@dataclass(frozen=True, slots=True)
class Check:
    """One invariant: its name, whether it held, and what was measured."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class Verdict:
    """The outcome of one incident (a row of the summary table)."""

    title: str
    views: str = "-"
    recover: float | None = None
    cpu: float | None = None
    attempts: int | None = None
    leaked_nodes: int = 0
    leaked_sessions: int = 0
    checks: list[Check] = field(default_factory=list)
    saw: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check held."""
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        """The checks that did not hold."""
        return [c for c in self.checks if not c.ok]

    def cells(self) -> list[str]:
        """The row's cells, in the order of :data:`COLUMNS`."""
        return [
            self.title,
            self.views,
            "-" if self.recover is None else f"{self.recover:.2f} s",
            "-" if self.cpu is None else f"{self.cpu:.2f} s",
            "-" if self.attempts is None else str(self.attempts),
            f"{self.leaked_nodes}/{self.leaked_sessions}",
            "PASS" if self.ok else "FAIL",
        ]

    def to_dict(self) -> dict[str, Any]:
        """The verdict as a JSON object."""
        return {
            "incident": self.title,
            "views_equal_truth": self.views,
            "recover_seconds": None if self.recover is None else round(self.recover, 3),
            "cpu_seconds": None if self.cpu is None else round(self.cpu, 3),
            "reconnect_attempts": self.attempts,
            "leaked_nodes": self.leaked_nodes,
            "leaked_sessions": self.leaked_sessions,
            "ok": self.ok,
            "saw": self.saw,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


#: Columns of verdict rows and of the summary table.
COLUMNS = ("incident", "views=truth", "recover", "CPU", "attempts", "leaked n/s", "result")


#: What the columns mean, printed under the summary.
LEGEND = [
    "",
    "views=truth  caches whose view equals what the server holds, after the incident",
    "recover      seconds from the end of the fault (traffic flowing again) until every "
    "client is",
    "             connected and every view equals the truth",
    "CPU          CPU seconds the demo's clients used during the incident",
    "attempts     connection attempts the clients made during the incident",
    "leaked n/s   instance nodes / sessions left on the server that should be gone "
    "(0/0 is the",
    "             goal: a leaked node is a phantom instance, a leaked session holds its "
    "nodes)",
    "each incident checks these invariants and more (the list above each verdict row).",
]
_HINT = "each incident checks these invariants and more: `zkwarden -v demo` lists them."


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]


class Report:
    """The demo's output: text for people, or JSON objects (one per line) with --json."""

    def __init__(self, out: Output, *, verbose: bool = False) -> None:
        self.out = out
        #: list every invariant checked after each incident, not only the failed ones
        self.verbose = verbose
        self.progress = Progress(out, min_interval=1.0, indent="    ")

    def header(self, lines: Sequence[str], doc: dict[str, Any]) -> None:
        """The set-up description (text lines, or one JSON object)."""
        if self.out.json_mode:
            self.out.json({"event": "demo", **doc}, stream=True)
        else:
            self.out.lines(lines)

    def incident(self, number: int, total: int, title: str, narration: str) -> None:
        """Announce an incident and tell what it is, in one sentence."""
        if self.out.json_mode:
            self.out.json({"event": "incident", "number": number, "title": title,
                           "narration": narration}, stream=True)
            return
        self.out.line()
        self.out.line(f"[{number}/{total}] {title}")
        self.out.lines(textwrap.wrap(narration, width=92, initial_indent="    ",
                                     subsequent_indent="    "))

    def section(self, title: str, narration: str) -> None:
        """A part of the run that is not a numbered incident (the final clean-up)."""
        if self.out.json_mode:
            self.out.json({"event": "section", "title": title, "narration": narration},
                          stream=True)
            return
        self.out.line()
        self.out.line(title)
        self.out.lines(textwrap.wrap(narration, width=92, initial_indent="    ",
                                     subsequent_indent="    "))

    def note(self, text: str) -> None:
        """A line of commentary inside an incident."""
        self.progress.clear()
        if not self.out.json_mode:
            self.out.line(f"    {text}")

    def verdict(self, verdict: Verdict) -> None:
        """What the clients saw, and the verdict row (with every failed check)."""
        self.progress.clear()
        if self.out.json_mode:
            self.out.json({"event": "verdict", **verdict.to_dict()}, stream=True)
            return
        for line in verdict.saw:
            self.out.line(f"    saw: {line}")
        for line in _table([COLUMNS, verdict.cells()]):
            self.out.line(f"    {line}")
        if self.verbose:
            for check in verdict.checks:
                mark = "ok    " if check.ok else "FAILED"
                detail = f": {check.detail}" if check.detail else ""
                self.out.line(f"    {mark} {check.name}{detail}")
            return
        for check in verdict.failed:
            self.out.line(f"    FAILED: {check.name}: {check.detail}")

    def summary(self, verdicts: Sequence[Verdict], wall: float) -> None:
        """The summary table and the overall outcome."""
        failed = [(v, c) for v in verdicts for c in v.failed]
        checks = sum(len(v.checks) for v in verdicts)
        if self.out.json_mode:
            self.out.json({
                "event": "summary",
                "wall_seconds": round(wall, 2),
                "invariants": checks,
                "failed": [{"incident": v.title, "check": c.name, "detail": c.detail}
                           for v, c in failed],
                "ok": not failed,
                "rows": [v.to_dict() for v in verdicts],
            }, stream=True)
            return
        self.out.line()
        self.out.line("summary")
        for line in _table([COLUMNS, *(v.cells() for v in verdicts)]):
            self.out.line(f"  {line}")
        if failed:
            self.out.line(f"{len(failed)} of {checks} invariants FAILED in {wall:.1f} s:")
            for v, c in failed:
                self.out.line(f"  {v.title}: {c.name}: {c.detail}")
        else:
            self.out.line(f"all {checks} invariants held; {wall:.1f} s wall time")
        self.out.lines(LEGEND if self.verbose else LEGEND[:-1] + [_HINT])
