"""What the scale scenarios share: the context, the curves, the growth factors, and the
loop thread's own CPU clock.

A curve is one measure at every size N. Its growth per 10x is the value at 10N over the
value at N (normalised to exactly 10x when two sizes are not 10x apart, as in ``--quick``):
for a total (time or memory for all N items) linear is 10x; for a per-item figure or a
ratio, linear is 1x. Each curve says which (``linear``), so the table can flag a curve that
grows faster than linear.
"""

from __future__ import annotations

import json
import math
import os
import select
import socket
import statistics
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._common import ROOT, LoopThread

#: a curve grows "faster than linear" above this much times its linear growth: rounds on a
#: shared 2-core machine move by 20-30%, so anything under 1.5x linear is called linear.
TOLERANCE = 1.5


@dataclass
class Curve:
    key: str
    title: str
    unit: str
    #: the growth per 10x that is linear: 10.0 for a total, 1.0 for per-item or a ratio
    linear: float
    samples: dict[int, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, n: int, value: float) -> None:
        self.samples.setdefault(n, []).append(value)

    def value(self, n: int) -> float | None:
        got = self.samples.get(n)
        return statistics.median(got) if got else None

    def growth(self, sizes: list[int]) -> list[float | None]:
        """The growth per 10x between each pair of consecutive sizes."""
        out: list[float | None] = []
        for a, b in zip(sizes, sizes[1:], strict=False):
            va, vb = self.value(a), self.value(b)
            if va is None or vb is None or va <= 0 or vb <= 0:
                out.append(None)
                continue
            out.append((vb / va) ** (1.0 / math.log10(b / a)))
        return out

    def verdict(self, sizes: list[int]) -> str:
        growth = [g for g in self.growth(sizes) if g is not None]
        if not growth:
            return "?"
        return "grows faster than linear" if max(growth) > self.linear * TOLERANCE else "linear or better"

    def as_json(self, sizes: list[int]) -> dict[str, Any]:
        return {
            "title": self.title,
            "unit": self.unit,
            "linear_growth_per_10x": self.linear,
            "median": {str(n): self.value(n) for n in sizes},
            "samples": {str(n): self.samples.get(n, []) for n in sizes},
            "growth_per_10x": self.growth(sizes),
            "verdict": self.verdict(sizes),
            "notes": self.notes,
        }


class Curves:
    """Every curve of a run, in the order they were first measured."""

    def __init__(self) -> None:
        self.by_key: dict[str, Curve] = {}

    def curve(self, key: str, title: str, unit: str, linear: float) -> Curve:
        if key not in self.by_key:
            self.by_key[key] = Curve(key, title, unit, linear)
        return self.by_key[key]

    def total(self, key: str, title: str, unit: str) -> Curve:
        """A measure of all N items together: linear is 10x per 10x."""
        return self.curve(key, title, unit, 10.0)

    def per_item(self, key: str, title: str, unit: str) -> Curve:
        """A per-item figure or a ratio: linear (constant per item) is 1x per 10x."""
        return self.curve(key, title, unit, 1.0)


@dataclass
class Ctx:
    """One scale run: where the server is, the measuring client and the output."""

    host: str
    port: int
    loop: LoopThread
    zk: Any  # zkwarden.AsyncClient, direct to the server, no ensemble tracking
    loop_tid: int  # the native id of the loop thread (for its CPU clock)
    rounds: int
    curves: Curves
    log: Callable[[str], None]
    notes: list[str] = field(default_factory=list)

    @property
    def hosts(self) -> str:
        return f"{self.host}:{self.port}"

    def loop_cpu(self) -> float:
        return thread_cpu(self.loop_tid)


def loop_native_id(loop: LoopThread) -> int:
    async def tid() -> int:
        return threading.get_native_id()

    return loop.run(tid())


def thread_cpu(tid: int) -> float:
    """CPU seconds of one thread of this process (nanosecond schedstat).

    The client under test runs on its loop thread; the fault proxy and the main thread are
    other threads, so this counts the client alone where process_time() would not.
    """
    with open(f"/proc/self/task/{tid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def four_letter_word(host: str, port: int, cmd: str, timeout: float = 10.0) -> str | None:
    """The server's answer to a four-letter word, or None when it gives none (an external
    server that does not allow it)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(cmd.encode())
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError:
        return None
    text = b"".join(chunks).decode(errors="replace")
    return None if "is not executed" in text or not text else text


def server_watch_total(host: str, port: int) -> int | None:
    """``Total watches`` from ``wchs`` (None if the server does not answer it)."""
    text = four_letter_word(host, port, "wchs")
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith("Total watches:"):
            return int(line.split(":", 1)[1])
    return None


class Child:
    """A child process running ``python -m bench.scale_probe``, one JSON line per answer."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.scale_probe", *args], cwd=str(ROOT),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )

    def send(self, obj: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def recv(self, timeout: float = 600.0) -> Any:
        assert self.proc.stdout is not None
        # A probe that stops answering fails the run instead of hanging it.
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.proc.kill()
            raise RuntimeError(f"probe {self.proc.args!r} did not answer within {timeout:.0f}s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"probe {self.proc.args!r} exited with {self.proc.wait(30)}")
        return json.loads(line)

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def run_child(*args: str, timeout: float = 600.0) -> Any:
    """Start a probe, take its one answer, let it exit."""
    child = Child(*args)
    try:
        return child.recv(timeout)
    finally:
        child.close()


def env_note() -> str:
    load = os.getloadavg()
    return f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
