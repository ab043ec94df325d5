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


async def _timed_async(zk: AsyncClient, path: str, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        await zk.get(path)
    return (time.perf_counter() - t0) / calls * 1e6


def _timed_sync(zk: Client, path: str, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        zk.get(path)
    return (time.perf_counter() - t0) / calls * 1e6


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
        async_us: list[float] = []
        sync_us: list[float] = []
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
    a, s = statistics.median(async_us), statistics.median(sync_us)
    return {"async_us": a, "sync_us": s, "overhead_us": s - a, "ratio": s / a}


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
    print(f"AsyncClient.get: {result['async_us']:8.1f} µs/call")
    print(f"Client.get:      {result['sync_us']:8.1f} µs/call")
    print(f"sync overhead:   {result['overhead_us']:8.1f} µs/call ({result['ratio']:.2f}x)")


if __name__ == "__main__":
    main()
