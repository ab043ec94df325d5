"""Rolling restart: N instances re-registered batch by batch, watched by C caches.

The caches (C zkwarden clients, each with its own ServiceCache) run in a child process
(:func:`bench.probe.mode_caches`), so their work does not slow the writer down and the
writer's does not delay them; both sides time with CLOCK_MONOTONIC, which is the same
clock in both processes. The writer restarts the instances ``batch`` at a time (each:
delete the old node, create the new one under a new id), pausing ``interval`` between
batches. Per round it records:

* reads per added instance per cache (``cache.reads``: each addition needs its data read
  once; anything above one read per addition is a read caused by a removal or a resync);
* convergence: the time from the last write's acknowledgement until a cache's view is
  exactly the new set of instances (p50 / p99 over caches);
* propagation: for every change and every cache, the time from the write's
  acknowledgement until the cache published it (p50 / p99).
"""

from __future__ import annotations

import asyncio
import json
import select
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from ._common import ROOT, Series, percentile
from .clients import Clients, delete_tree
from .scenarios import Sizes

SERVICE = "bench-roll"
INTERVAL = 0.1  # seconds between batches


def fresh_instances(service: str, n: int, octet: int) -> list[Any]:
    """``n`` new instances of ``service`` (new ids), addresses 10.<octet>.x.y."""
    from zkwarden.discovery import ServiceInstance

    return [ServiceInstance(service, address=f"10.{octet}.{i >> 8 & 255}.{i & 255}",
                            port=9090) for i in range(n)]


async def roll_instances(
    zk: Any, base: str, old_ids: list[str], fresh: list[Any], batch: int, interval: float,
) -> tuple[dict[str, float], dict[str, float]]:
    """Replace each old instance by a fresh one (delete, then create under the new id),
    ``batch`` at a time, ``interval`` seconds apart. Returns when each removal and each
    addition was acknowledged (CLOCK_MONOTONIC), by instance id."""
    from zkwarden.discovery import CuratorFormat

    fmt = CuratorFormat()
    removed: dict[str, float] = {}
    added: dict[str, float] = {}

    async def restart(old: str, new: Any) -> None:
        await zk.delete(f"{fmt.service_path(base, new.name)}/{old}")
        removed[old] = time.monotonic()
        await zk.create(fmt.instance_path(base, new), fmt.encode(new))
        added[new.id] = time.monotonic()

    for i in range(0, len(fresh), batch):
        if i:
            await asyncio.sleep(interval)
        await asyncio.gather(*(restart(o, x) for o, x in zip(
            old_ids[i:i + batch], fresh[i:i + batch], strict=True)))
    return removed, added


class _Child:
    def __init__(self, hosts: str, caches: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.probe", "caches", "-", hosts, str(caches), SERVICE],
            cwd=str(ROOT), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )

    def send(self, obj: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def recv(self, timeout: float = 180.0) -> Any:
        assert self.proc.stdout is not None
        # One line per command, so nothing is left buffered between calls: waiting on the
        # pipe is safe, and a child that stops answering fails the run instead of hanging it.
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.proc.kill()
            raise RuntimeError(f"cache process did not answer within {timeout:.0f}s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"cache process exited (code {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        try:
            self.send({"cmd": "quit"})
            self.proc.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def run_rolling(
    c: Clients, sizes: Sizes, rounds: int, warmup: int, log: Callable[[str], None]
) -> dict[str, Any]:
    from zkwarden.discovery import CuratorFormat

    from .scenarios import create_instances

    n, batch = sizes.rolling_instances, sizes.rolling_batch
    fmt = CuratorFormat()
    base = fmt.default_base_path
    service_path = fmt.service_path(base, SERVICE)
    zk = c.zk
    c.zl.run(delete_tree(zk, service_path))
    paths = c.zl.run(create_instances(zk, n, SERVICE))
    current = [p.rsplit("/", 1)[1] for p in paths]  # instance ids (node names)

    child = _Child(c.hosts, sizes.rolling_caches)
    series: dict[str, Series] = {
        k: Series() for k in ("reads_per_add", "reads_per_removal", "resyncs",
                              "converge_p50", "converge_p99", "propagate_p50",
                              "propagate_p99")
    }
    pooled_converge: list[float] = []
    pooled_propagate: list[float] = []
    failures = 0
    try:
        ready = child.recv()
        if ready.get("instances") != [n] * sizes.rolling_caches:
            raise RuntimeError(f"caches started with {ready.get('instances')} instances")
        for r in range(warmup + rounds):
            fresh = fresh_instances(SERVICE, n, 1)
            child.send({"cmd": "begin", "expect": [i.id for i in fresh]})
            child.recv()
            acks_rm, acks_add = c.zl.run(roll_instances(zk, base, current, fresh, batch,
                                                        INTERVAL))
            t_last = max(max(acks_rm.values()), max(acks_add.values()))
            child.send({"cmd": "collect", "timeout": 60})
            res = child.recv()
            current = [i.id for i in fresh]
            if r < warmup:
                continue
            if not res["converged"]:
                failures += 1
            conv = [max(0.0, t - t_last) * 1e3 for t in res["converged_at"] if t is not None]
            prop: list[float] = []
            for added, removed in zip(res["added"], res["removed"], strict=True):
                prop += [max(0.0, t - acks_add[i]) * 1e3 for i, t in added.items()
                         if i in acks_add]
                prop += [max(0.0, t - acks_rm[i]) * 1e3 for i, t in removed.items()
                         if i in acks_rm]
            pooled_converge += conv
            pooled_propagate += prop
            reads = res["reads"]
            series["reads_per_add"].samples.append(max(reads) / n)
            series["reads_per_removal"].samples.append(max(max(x - n, 0) for x in reads) / n)
            series["resyncs"].samples.append(float(sum(res["resyncs"])))
            series["converge_p50"].samples.append(percentile(conv, 50))
            series["converge_p99"].samples.append(percentile(conv, 99))
            series["propagate_p50"].samples.append(percentile(prop, 50))
            series["propagate_p99"].samples.append(percentile(prop, 99))
            log(f"  round {r - warmup + 1}/{rounds}: reads/add {max(reads) / n:.3f}, "
                f"converged p99 {percentile(conv, 99):.1f} ms, "
                f"propagation p99 {percentile(prop, 99):.1f} ms")
    finally:
        child.close()
        c.zl.run(delete_tree(zk, service_path))
    return {
        "instances": n,
        "caches": sizes.rolling_caches,
        "batch": batch,
        "interval_s": INTERVAL,
        "rounds_not_converged": failures,
        "series": {k: v.as_json() for k, v in series.items()},
        "pooled": {
            "converge_p50_ms": percentile(pooled_converge, 50),
            "converge_p99_ms": percentile(pooled_converge, 99),
            "converge_max_ms": max(pooled_converge, default=0.0),
            "propagate_p50_ms": percentile(pooled_propagate, 50),
            "propagate_p99_ms": percentile(pooled_propagate, 99),
            "samples_converge": len(pooled_converge),
            "samples_propagate": len(pooled_propagate),
        },
    }
