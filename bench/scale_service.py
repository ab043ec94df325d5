"""Scale, part 1: a service of N instances (Curator layout).

* ``ServiceDiscovery.instances()``: wall time per call and the client loop thread's CPU;
* a ServiceCache started until its first complete view (time, CPU), then closed;
* the cache's memory: RSS growth of a fresh child process (:mod:`bench.scale_probe`);
* a rolling restart of all N, watched by ONE cache in a child process: the instances are
  re-registered (delete the old node, create one under a new id) in 20 batches of N/20,
  100 ms apart, so every size takes as many batches. Reported: reads per added instance,
  convergence (last write's acknowledgement until the cache holds exactly the new set)
  and propagation p99 (each write's acknowledgement until the cache published it).
"""

from __future__ import annotations

import time

from ._common import percentile
from .rolling import fresh_instances, roll_instances
from .scale_base import Child, Ctx, run_child
from .scale_probe import make_cache
from .scenarios import create_instances

SERVICE = "bench-scale-svc"
ROLL_BATCHES = 20
ROLL_INTERVAL = 0.1  # seconds between batches


class Service:
    """The service's instances, grown size by size (ids of the current set)."""

    def __init__(self, ctx: Ctx) -> None:
        from zkwarden.discovery import CuratorFormat

        self.ctx = ctx
        self.fmt = CuratorFormat()
        self.base = self.fmt.default_base_path
        self.path = self.fmt.service_path(self.base, SERVICE)
        self.ids: list[str] = []

    def grow(self, n: int) -> None:
        missing = n - len(self.ids)
        if missing > 0:
            paths = self.ctx.loop.run(create_instances(self.ctx.zk, missing, SERVICE))
            self.ids += [p.rsplit("/", 1)[1] for p in paths]

    def drop(self) -> None:
        self.ctx.loop.run(self.ctx.zk.delete(self.path, recursive=True))


def run_service(ctx: Ctx, svc: Service, n: int) -> None:
    from zkwarden.discovery import ServiceDiscovery

    svc.grow(n)
    curves, loop, zk = ctx.curves, ctx.loop, ctx.zk
    disc = ServiceDiscovery(zk)
    t_inst = curves.total("instances", "ServiceDiscovery.instances()", "ms")
    c_inst = curves.per_item("instances_cpu", "instances(): client CPU per instance", "µs")
    t_cache = curves.total("cache_start", "ServiceCache start to first complete view", "ms")
    c_cache = curves.per_item("cache_start_cpu", "ServiceCache start: client CPU per instance",
                              "µs")

    async def one_instances() -> float:
        t0 = time.perf_counter()
        found = await disc.instances(SERVICE)
        if len(found) != n:
            raise RuntimeError(f"instances() returned {len(found)}, expected {n}")
        return time.perf_counter() - t0

    async def one_cache() -> float:
        t0 = time.perf_counter()
        cache = make_cache(zk, SERVICE, n)
        await cache.start()
        elapsed = time.perf_counter() - t0
        held = len(cache.instances())
        await cache.close()
        if held != n:
            raise RuntimeError(f"cache held {held} instances, expected {n}")
        return elapsed

    loop.run(one_instances())  # warm-up (first decode of this size, server caches)
    for _ in range(ctx.rounds):
        cpu0 = ctx.loop_cpu()
        t_inst.add(n, loop.run(one_instances()) * 1e3)
        c_inst.add(n, (ctx.loop_cpu() - cpu0) / n * 1e6)
    for _ in range(ctx.rounds):
        cpu0 = ctx.loop_cpu()
        t_cache.add(n, loop.run(one_cache()) * 1e3)
        c_cache.add(n, (ctx.loop_cpu() - cpu0) / n * 1e6)
    ctx.log(f"  instances() {t_inst.value(n):.1f} ms ({c_inst.value(n):.1f} µs CPU/instance),"
            f" cache start {t_cache.value(n):.1f} ms ({c_cache.value(n):.1f} µs/instance)")

    mem = curves.total("cache_rss", "ServiceCache memory (RSS growth, child process)", "MB")
    res = run_child("mem-cache", ctx.hosts, str(n), SERVICE)
    mem.add(n, res["rss_delta"] / 2**20)
    ctx.log(f"  cache memory {mem.value(n):.2f} MB")
    run_rolling(ctx, svc, n)


def run_rolling(ctx: Ctx, svc: Service, n: int) -> None:
    curves, zk = ctx.curves, ctx.zk
    reads = curves.per_item("roll_reads", "rolling restart: reads per added instance", "reads")
    conv = curves.total("roll_converge", "rolling restart: convergence after the last write",
                        "ms")
    prop = curves.per_item("roll_propagate_p99", "rolling restart: propagation p99 per change",
                           "ms")
    batch = max(1, n // ROLL_BATCHES)
    child = Child("cache", ctx.hosts, str(n), SERVICE)
    try:
        ready = child.recv()
        if ready["instances"] != n:
            raise RuntimeError(f"rolling cache started with {ready['instances']} instances")
        for r in range(ctx.rounds):
            fresh = fresh_instances(SERVICE, n, 9)
            child.send({"cmd": "begin", "expect": [i.id for i in fresh]})
            child.recv()
            acks_rm, acks_add = ctx.loop.run(roll_instances(zk, svc.base, svc.ids, fresh,
                                                            batch, ROLL_INTERVAL))
            svc.ids = [i.id for i in fresh]
            t_last = max(max(acks_rm.values()), max(acks_add.values()))
            child.send({"cmd": "collect", "timeout": 120})
            res = child.recv()
            if not res["converged"]:
                raise RuntimeError(f"rolling restart of {n}: the cache did not converge")
            delays = [max(0.0, t - acks_add[i]) * 1e3 for i, t in res["added"].items()
                      if i in acks_add]
            delays += [max(0.0, t - acks_rm[i]) * 1e3 for i, t in res["removed"].items()
                       if i in acks_rm]
            reads.add(n, res["reads"] / n)
            conv.add(n, max(0.0, res["converged_at"] - t_last) * 1e3)
            prop.add(n, percentile(delays, 99))
            ctx.log(f"  rolling {r + 1}/{ctx.rounds}: reads/add {res['reads'] / n:.3f}, "
                    f"converged {conv.samples[n][-1]:.1f} ms, propagation p99 "
                    f"{prop.samples[n][-1]:.1f} ms, resyncs {res['resyncs']}")
    finally:
        child.send({"cmd": "quit"})
        child.close()
