"""Idle CPU and memory: measured in child processes (:mod:`bench.probe`), so the numbers
are the client's alone."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from ._common import ROOT, Series, cpu_seconds
from .clients import Clients, create_many, delete_tree
from .scenarios import Sizes, create_instances

CLIENTS = ("zkwarden", "kazoo", "aiozk")


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.probe", *args], cwd=str(ROOT),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )


def _line(proc: subprocess.Popen[str], timeout: float = 300.0) -> Any:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:  # a probe that stops answering fails the run instead of hanging it
        proc.kill()
        raise RuntimeError(f"probe {proc.args!r} did not answer within {timeout:.0f}s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"probe {proc.args!r} exited with {proc.wait(timeout)}")
    return json.loads(line)


def run_idle(c: Clients, sizes: Sizes, rounds: int, warmup: int,
             log: Callable[[str], None]) -> dict[str, Series]:
    """CPU used by each client holding ``idle_watches`` data watches and doing nothing.

    The three clients run at the same time, each in its own process; every window
    measures all three over the same interval (so they are interleaved by construction).
    """
    n = sizes.idle_watches
    base = "/bench-idle"
    c.zl.run(create_many(c.zk, [base], b""))
    c.zl.run(create_many(c.zk, [f"{base}/n{i:05d}" for i in range(n)], b""))
    names = [name for name in CLIENTS if name in c.available]
    procs = {name: _spawn("idle", name, c.hosts, str(n), base) for name in names}
    out = {name: Series() for name in names}
    total_cpu = dict.fromkeys(names, 0.0)
    total_time = 0.0
    try:
        for proc in procs.values():
            _line(proc)
        time.sleep(sizes.idle_window * warmup)
        for r in range(rounds):
            before = {name: cpu_seconds(p.pid) for name, p in procs.items()}
            t0 = time.monotonic()
            time.sleep(sizes.idle_window)
            elapsed = time.monotonic() - t0
            total_time += elapsed
            for name, p in procs.items():
                used = cpu_seconds(p.pid) - before[name]
                total_cpu[name] += used
                out[name].samples.append(used / elapsed * 100)
            log(f"  window {r + 1}/{rounds}: " + ", ".join(
                f"{name} {s.samples[-1]:.3f}%" for name, s in out.items()))
    finally:
        for p in procs.values():
            assert p.stdin is not None
            p.stdin.close()
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        c.zl.run(delete_tree(c.zk, base))
    # /proc counts CPU in 10 ms ticks: over all windows together the resolution is finer.
    for name, series in out.items():
        series.extra["pooled"] = total_cpu[name] / total_time * 100 if total_time else 0.0
        series.extra["seconds"] = total_time
    return out


def run_memory(c: Clients, sizes: Sizes, rounds: int, warmup: int,
               log: Callable[[str], None]) -> dict[str, dict[str, Series]]:
    """RSS growth per ``memory_watches`` watches (each client; zkwarden's streams also
    without their consumer tasks, the library's own share), per ``memory_watches``
    callback watches (blocking ``Client.watch`` against kazoo's ``DataWatch``) and per
    ``memory_instances`` cached instances (zkwarden's ServiceCache): a fresh process per
    sample, rounds interleaved across clients."""
    nw, ni = sizes.memory_watches, sizes.memory_instances
    base = "/bench-mem"
    service = "bench-mem-svc"
    zk = c.zk
    c.zl.run(create_many(zk, [base, base + "-warm"], b""))
    c.zl.run(create_many(zk, [f"{base}/n{i:05d}" for i in range(nw)], b""))
    c.zl.run(create_many(zk, [f"{base}-warm/n{i:05d}" for i in range(20)], b""))
    c.zl.run(create_instances(zk, ni, service))
    names = [name for name in CLIENTS if name in c.available]
    # (probe mode, probe client, row): plain watches the way each library's users hold
    # them; the library's own share of zkwarden's (streams armed, no consumer task); and
    # callback watches, blocking Client.watch against kazoo's DataWatch (its peer).
    plain = [("mem-watches", name, name) for name in names]
    plain.insert(1, ("mem-watches", "zkwarden-streams", "zkwarden streams, no consumer"))
    callback = [("mem-callback-watches", "zkwarden", "zkwarden Client.watch callback")]
    if "kazoo" in names:
        callback.append(("mem-callback-watches", "kazoo", "kazoo DataWatch"))
    watches = {row: Series() for _, _, row in plain}
    callbacks = {row: Series() for _, _, row in callback}
    cache = Series()
    try:
        for r in range(warmup + rounds):
            for mode, client, row in plain + callback:
                p = _spawn(mode, client, c.hosts, str(nw), base)
                res = _line(p)
                p.wait(60)
                if r >= warmup:
                    (watches if mode == "mem-watches" else callbacks)[row].samples.append(
                        res["rss_delta"] / 2**20)
            p = _spawn("mem-cache", "zkwarden", c.hosts, str(ni), service)
            res = _line(p)
            p.wait(60)
            if r >= warmup:
                cache.samples.append(res["rss_delta"] / 2**20)
                log(f"  round {r - warmup + 1}/{rounds}: watches " + ", ".join(
                    f"{row} {s.samples[-1]:.1f} MB"
                    for row, s in (*watches.items(), *callbacks.items()))
                    + f"; cache {cache.samples[-1]:.1f} MB")
    finally:
        from zkwarden.discovery import CuratorFormat

        fmt = CuratorFormat()
        c.zl.run(delete_tree(zk, base))
        c.zl.run(delete_tree(zk, base + "-warm"))
        c.zl.run(delete_tree(zk, fmt.service_path(fmt.default_base_path, service)))
    return {"memory_watches": watches, "memory_callback_watches": callbacks,
            "memory_cache": {"zkwarden ServiceCache": cache}}
