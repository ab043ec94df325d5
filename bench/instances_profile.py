"""``python -m bench.instances_profile``: client CPU of ``ServiceDiscovery.instances()``.

Creates ``--instances`` Curator instance nodes (``bench.scenarios.create_instances``), then
calls ``ServiceDiscovery(client).instances(name)`` ``--calls`` times (after ``--warmup``
calls) and prints the µs of client CPU per instance: ``time.process_time()`` over the
calls divided by the instances read. The server is a separate process (started here, or
``--hosts``), so the figure is the client's alone and stable under machine noise where
wall time is not. ``--profile`` adds a cProfile of the measured calls, sorted by tottime.
Target (issue 17): <= 10 µs per instance.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import statistics
import time
from contextlib import ExitStack

from bench._common import SESSION_TIMEOUT, start_server
from bench.clients import delete_tree
from bench.scenarios import SERVICE, create_instances

TARGET_US = 10.0


async def _run(hosts: str, args: argparse.Namespace) -> int:
    from zkwarden import AsyncClient
    from zkwarden.discovery import CuratorFormat, ServiceDiscovery

    fmt = CuratorFormat()
    service_path = fmt.service_path(fmt.default_base_path, SERVICE)
    async with AsyncClient(hosts, session_timeout=SESSION_TIMEOUT,
                           track_ensemble=False) as zk:
        await delete_tree(zk, service_path)
        await create_instances(zk, args.instances)
        try:
            disc = ServiceDiscovery(zk)
            for _ in range(args.warmup):
                found = await disc.instances(SERVICE)
                if len(found) != args.instances:
                    raise RuntimeError(f"read {len(found)} instances, expected "
                                       f"{args.instances}")
            per_round: list[float] = []
            profiler = cProfile.Profile() if args.profile else None
            for _ in range(args.rounds):
                if profiler is not None:
                    profiler.enable()
                cpu0 = time.process_time()
                for _ in range(args.calls):
                    await disc.instances(SERVICE)
                cpu = time.process_time() - cpu0
                if profiler is not None:
                    profiler.disable()
                per_round.append(cpu / (args.calls * args.instances) * 1e6)
        finally:
            await delete_tree(zk, service_path)
    median = statistics.median(per_round)
    print(f"instances() of {args.instances:,}: {median:.2f} µs client CPU per instance "
          f"(median of {args.rounds} rounds of {args.calls} calls; rounds "
          f"{min(per_round):.2f}-{max(per_round):.2f}; target <= {TARGET_US:g})")
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.top)
        print("(the profiler's own cost inflates the figures above)")
        print(out.getvalue())
    return 0 if median <= TARGET_US else 1


def main(argv: list[str] | None = None) -> int:
    """Measure and print; exit 1 when above the target."""
    p = argparse.ArgumentParser(prog="python -m bench.instances_profile")
    p.add_argument("--hosts", help="host:port of a running ZooKeeper (default: start one)")
    p.add_argument("--instances", type=int, default=10_000)
    p.add_argument("--calls", type=int, default=5, help="instances() calls per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3, help="unmeasured calls first")
    p.add_argument("--profile", action="store_true", help="cProfile the measured calls")
    p.add_argument("--top", type=int, default=30, help="profile rows to print")
    args = p.parse_args(argv)
    with ExitStack() as stack:
        if args.hosts:
            hosts = args.hosts
        else:
            server = start_server()
            stack.callback(server.stop)
            hosts = f"{server.host}:{server.port}"
        return asyncio.run(_run(hosts, args))


if __name__ == "__main__":
    raise SystemExit(main())
