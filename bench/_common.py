"""Shared plumbing: the server, event-loop threads, statistics, process measurements."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "src") not in sys.path:  # running from a checkout without `pip install -e`
    sys.path.insert(0, str(ROOT / "src"))

from zkwarden.testing import ZooKeeperServer  # noqa: E402

T = TypeVar("T")

#: Every client gets the same session timeout. Long enough that a client whose loop sits
#: idle while the others take their turn never comes near a read timeout.
SESSION_TIMEOUT = 30.0


class BenchServer(ZooKeeperServer):
    """ZooKeeperServer with the JVM's full JIT.

    The test harness caps HotSpot at C1 (``-XX:TieredStopAtLevel=1``) because tests start
    hundreds of short-lived servers; a benchmark wants the server to run the way it runs in
    production, so the cap is dropped (and the warm-up phase gives C2 time to compile).
    """

    def start(self, timeout: float = 30.0, *, wait: bool = True) -> ZooKeeperServer:
        # zkwarden.testing builds the command line with its module-level jvm_command and
        # offers no hook (the _command method this class used to override is gone, so the
        # cap silently stayed): swap in a filtered jvm_command for this start only.
        import zkwarden.testing.server as server_module

        original = server_module.jvm_command

        def full_jit(*args: Any, **kwargs: Any) -> list[str]:
            return [a for a in original(*args, **kwargs) if a != "-XX:TieredStopAtLevel=1"]

        server_module.jvm_command = full_jit
        try:
            return super().start(timeout, wait=wait)
        finally:
            server_module.jvm_command = original


def start_server() -> ZooKeeperServer:
    # tickTime 2 s (ZooKeeper's default) allows sessions of 4–40 s; forceSync off, so
    # writes measure the clients, not the disk.
    server = BenchServer(tick_time=2.0, force_sync=False, jvm_heap="1g")
    server.start(timeout=60.0)
    return server


def server_for_run(hosts: str | None, stack: ExitStack,
                   log: Callable[[str], None]) -> tuple[str, int, str]:
    """``(host, port, server version)`` of the server to measure: ``hosts`` (host:port)
    if given, else a bench server started now and stopped when ``stack`` closes."""
    if hosts:
        host, _, port_s = hosts.rpartition(":")
        return host, int(port_s), "?"
    log("starting ZooKeeper ...")
    server = start_server()
    stack.callback(server.stop)
    version = "?"
    try:
        version = server.four_letter_word("srvr").splitlines()[0]
    except Exception:  # informational only
        pass
    return server.host, server.port, version


class LoopThread:
    """An asyncio event loop running forever on its own thread.

    Each asyncio client lives on one of these, so its pings go on while the other clients
    take their turn; the main thread submits a round and waits (without using CPU).
    """

    def __init__(self, name: str, *, use_uvloop: bool = False) -> None:
        if use_uvloop:
            import uvloop

            self.loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 600.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def _cancel_rest() -> None:
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            self.run(_cancel_rest(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():
                self.loop.close()


# --- statistics ------------------------------------------------------------------------------


@dataclass
class Series:
    """The per-round samples of one client in one scenario (warm-up rounds excluded)."""

    samples: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    #: µs of client CPU per operation in each round (the process's CPU: only one client runs
    #: at a time, the others sit idle, so it is the running client's). Stable under machine
    #: noise where wall time is not: a stolen CPU slows the clock, not the CPU count.
    cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)

    @property
    def spread(self) -> float:
        """(max - min) / median: how far apart the rounds were."""
        m = self.median
        return (self.high - self.low) / m if m else 0.0

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "spread": self.spread,
            "samples": self.samples,
        }
        if self.cpu:
            out["cpu_us_per_op"] = {
                "median": statistics.median(self.cpu),
                "min": min(self.cpu),
                "max": max(self.cpu),
                "samples": self.cpu,
            }
        if self.extra:
            out.update(self.extra)
        return out


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100), nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(q / 100.0 * len(ordered) + 0.5))))
    return ordered[rank - 1]


# --- process measurements --------------------------------------------------------------------

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size from /proc/<pid>/statm."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def cpu_seconds(pid: int) -> float:
    """CPU time of a process (all its live threads), in seconds.

    From the per-thread /proc/<pid>/task/<tid>/schedstat (nanoseconds on a CPU) when the
    kernel has it; otherwise from /proc/<pid>/stat, which counts in 10 ms ticks, too
    coarse for a process that is idle (a few pings in a window).
    """
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except FileNotFoundError:  # the thread just exited
                continue
        return total / 1e9
    except (FileNotFoundError, PermissionError, ValueError, IndexError):
        pass
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def process_cpu() -> float:
    """CPU time of this process, all threads, in seconds (nanosecond resolution).

    CLOCK_PROCESS_CPUTIME_ID sums the scheduler's per-thread runtime (what
    /proc/<pid>/task/*/schedstat reports), so a client's own threads (kazoo's connection
    thread, the blocking Client's loop thread) count as much as the caller's.
    """
    return time.process_time()


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()
