"""Child processes of the scale scenarios (a clean process per memory sample).

``python -m bench.scale_probe <mode> <hosts> <count> <arg> [more]``; one JSON object per
line on stdout.

* ``mem-cache <hosts> <count> <service>``: RSS before and after a zkwarden ServiceCache of
  ``service`` (``count`` instances) is loaded.
* ``mem-watches <hosts> <count> <parent> <kind>``: RSS before and after arming ``count``
  watches (``kind``: ``data`` one-shot streams or ``persistent`` addWatch streams) on the
  first ``count`` children of ``parent``. The streams are held in a list, nobody iterates
  them: this is the library's own cost, without a consumer task per watch.
* ``cache <hosts> <count> <service>``: one client with one ServiceCache of ``service``,
  driven over stdin like :func:`bench.probe.mode_caches` (``begin`` / ``collect`` /
  ``quit``), for the rolling restart.

Caches are built with ``max_nodes`` above ``count``: ServiceDiscovery.cache() uses
TreeCache's default of 100,000 nodes, which a service of 100,000 instances (plus its
service node) exceeds, and the view would stop growing (degraded).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from ._common import SESSION_TIMEOUT, LoopThread, rss_bytes
from .probe import CacheWatcher, emit, settle

WARM = "/bench-scale-warm"  # 20 nodes the memory probes warm up on (made by the parent)


def child_path(parent: str, i: int) -> str:
    return f"{parent}/c{i:06d}"


async def _client(hosts: str) -> Any:
    from zkwarden import AsyncClient

    zk = AsyncClient(hosts, session_timeout=SESSION_TIMEOUT, track_ensemble=False)
    await zk.start()
    return zk


def make_cache(zk: Any, service: str, count: int) -> Any:
    """A Curator-format ServiceCache of ``service`` that can hold ``count`` instances."""
    from zkwarden.caches.tree import DEFAULT_MAX_NODES
    from zkwarden.discovery import ServiceCache
    from zkwarden.discovery.formats import get_format

    fmt = get_format("curator")
    # +16: the service node itself, and room for the instances a rolling restart adds
    # before it removes the old ones (one batch is re-registered at a time).
    limit = max(DEFAULT_MAX_NODES, 2 * count + 16)
    return ServiceCache(zk, fmt, fmt.default_base_path, service, max_nodes=limit)


def mode_mem_cache(hosts: str, count: int, service: str) -> None:
    loop = LoopThread("scale-probe-cache")
    zk = loop.run(_client(hosts))

    async def warm() -> None:  # imports and first use go into the baseline
        cache = make_cache(zk, service + "-warm", 1)
        await cache.start()
        await cache.close()

    loop.run(warm())
    settle()
    before = rss_bytes()

    async def load() -> tuple[Any, int]:
        cache = make_cache(zk, service, count)
        await cache.start()
        return cache, len(cache.instances())

    cache, found = loop.run(load())
    settle()
    after = rss_bytes()
    if found != count:
        raise SystemExit(f"cache holds {found} instances, expected {count}")
    emit({"rss_before": before, "rss_after": after, "rss_delta": after - before,
          "held": cache is not None})


async def arm(zk: Any, paths: list[str], kind: str) -> list[Any]:
    """Arm one watch per path; return the streams (each has delivered its first event)."""
    if kind == "data":
        streams = [zk.watch(p, "data") for p in paths]
        # The first item of a one-shot stream is the read that arms its watch.
        await asyncio.gather(*(s.__anext__() for s in streams))
        return streams
    if kind == "persistent":
        return list(await asyncio.gather(*(zk.add_watch(p, recursive=False) for p in paths)))
    raise SystemExit(f"unknown watch kind {kind!r}")


def mode_mem_watches(hosts: str, count: int, parent: str, kind: str) -> None:
    loop = LoopThread("scale-probe-watches")
    zk = loop.run(_client(hosts))
    keep: list[Any] = []
    keep += loop.run(arm(zk, [f"{WARM}/w{i:02d}" for i in range(20)], kind))
    settle()
    before = rss_bytes()
    keep += loop.run(arm(zk, [child_path(parent, i) for i in range(count)], kind))
    settle()
    after = rss_bytes()
    emit({"rss_before": before, "rss_after": after, "rss_delta": after - before,
          "streams": len(keep) - 20})


def mode_cache(hosts: str, count: int, service: str) -> None:
    loop = LoopThread("scale-probe-rolling")

    async def start() -> CacheWatcher:
        zk = await _client(hosts)
        cache = make_cache(zk, service, count)
        await cache.start()
        w = CacheWatcher(zk, cache)
        w.present = {i.id for i in cache.instances()}
        w.task = asyncio.get_running_loop().create_task(w.consume())
        await asyncio.sleep(0.1)  # let the consumer take its initial Resynced
        return w

    w = loop.run(start())
    emit({"ready": True, "instances": len(w.present)})
    reads0 = resyncs0 = 0
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "begin":
            expect = set(cmd["expect"])

            async def begin(expect: set[str] = expect) -> tuple[int, int]:
                w.start_round(expect)
                return w.cache.reads, w.cache.resyncs

            reads0, resyncs0 = loop.run(begin())
            emit({"begun": True})
        elif cmd["cmd"] == "collect":
            timeout = float(cmd.get("timeout", 120.0))

            async def wait(timeout: float = timeout) -> bool:
                try:
                    async with asyncio.timeout(timeout):
                        await w.converged.wait()
                    return True
                except TimeoutError:
                    return False

            ok = loop.run(wait(), timeout=timeout + 30)
            emit({"converged": ok, "converged_at": w.converged_at,
                  "reads": w.cache.reads - reads0, "resyncs": w.cache.resyncs - resyncs0,
                  "added": w.added, "removed": w.removed})
        elif cmd["cmd"] == "quit":
            break


def main(argv: list[str]) -> None:
    mode, hosts, count, arg = argv[0], argv[1], int(argv[2]), argv[3]
    if mode == "mem-cache":
        mode_mem_cache(hosts, count, arg)
    elif mode == "mem-watches":
        mode_mem_watches(hosts, count, arg, argv[4])
    elif mode == "cache":
        mode_cache(hosts, count, arg)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # A probe needs no orderly teardown, and closing a client holding 100,000 watches
    # costs tens of seconds (WatchRegistry.clear is quadratic: see the scale report).
    os._exit(0)
