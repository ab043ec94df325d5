"""Per-call overhead of the blocking Client over the AsyncClient it drives.

Sequential get() calls of one small node, against the same server in the same run:
AsyncClient awaited on the main thread's loop, and Client called from the main thread
(each call crosses to the client's loop thread and back), in alternating rounds. Prints
the median µs per call for both and the difference. Usage:

    python bench/sync_overhead.py                 # starts a ZooKeeper (zkwarden.testing)
    python bench/sync_overhead.py --hosts h:2181  # or uses a running server
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from zkwarden import AsyncClient, Client  # noqa: E402

T = TypeVar("T")


# Each round returns (wall µs/call, CPU µs/call). CPU time is this process's, all threads:
# unlike wall time it hardly moves when other processes load the machine.


async def _timed_async(zk: AsyncClient, path: str, calls: int) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(calls):
        await zk.get(path)
    return ((time.perf_counter() - t0) / calls * 1e6, (time.process_time() - c0) / calls * 1e6)


def _timed_sync(zk: Client, path: str, calls: int) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(calls):
        zk.get(path)
    return ((time.perf_counter() - t0) / calls * 1e6, (time.process_time() - c0) / calls * 1e6)


def run(hosts: str, calls: int, rounds: int) -> dict[str, float]:
    path = f"/bench-sync-overhead-{uuid.uuid4().hex}"
    # The AsyncClient gets a loop of its own that keeps running (pings) while the Client
    # round runs; its round is timed inside the coroutine, so the thread hop to start it
    # is not counted.
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever, daemon=True)
    loop_thread.start()

    def on_loop(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    aclient = AsyncClient(hosts)
    on_loop(aclient.start())
    client = Client(hosts)
    client.start()
    try:
        client.create(path, b"x" * 64)
        for _ in range(500):  # warm-up (the server's JIT, both clients' code paths)
            on_loop(aclient.get(path))
            client.get(path)
        # Alternate the two, round by round, so drift and load from other processes hit
        # both alike; report the median round of each.
        async_us: list[tuple[float, float]] = []
        sync_us: list[tuple[float, float]] = []
        for _ in range(rounds):
            async_us.append(on_loop(_timed_async(aclient, path, calls)))
            sync_us.append(_timed_sync(client, path, calls))
        client.delete(path)
    finally:
        client.close()
        on_loop(aclient.close())
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join()
        loop.close()
    a = statistics.median(w for w, _ in async_us)
    s = statistics.median(w for w, _ in sync_us)
    a_cpu = statistics.median(c for _, c in async_us)
    s_cpu = statistics.median(c for _, c in sync_us)
    return {"async_us": a, "sync_us": s, "overhead_us": s - a, "ratio": s / a,
            "async_cpu_us": a_cpu, "sync_cpu_us": s_cpu, "overhead_cpu_us": s_cpu - a_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", help="connect string of a running server")
    parser.add_argument("--calls", type=int, default=5000, help="get() calls per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per client kind")
    args = parser.parse_args()
    if args.hosts:
        result = run(args.hosts, args.calls, args.rounds)
    else:
        from zkwarden.testing import ZooKeeperServer

        with ZooKeeperServer() as server:
            result = run(server.connect_string, args.calls, args.rounds)
    print("                 wall µs/call   CPU µs/call (client process)")
    print(f"AsyncClient.get: {result['async_us']:13.1f} {result['async_cpu_us']:13.1f}")
    print(f"Client.get:      {result['sync_us']:13.1f} {result['sync_cpu_us']:13.1f}")
    print(f"sync overhead:   {result['overhead_us']:13.1f} {result['overhead_cpu_us']:13.1f}"
          f"   ({result['ratio']:.2f}x wall)")


if __name__ == "__main__":
    main()
