"""Child processes for the measurements that need a clean process of their own.

``python -m bench.probe <mode> <client> <hosts> <count> [arg]``; it prints one JSON
object per line on stdout and takes commands (one JSON object per line) on stdin.

* ``idle``: connect, hold ``count`` data watches, print ``{"ready": pid}``, then idle
  until stdin closes (the parent reads this process's CPU time from /proc).
* ``mem-watches``: RSS before and after arming ``count`` data watches (nodes
  ``<arg>/n00000``...), after ``gc.collect()``; prints ``{"rss_delta": bytes}``. Clients:
  ``zkwarden`` (one ``watch()`` stream per node, each consumed by its own task),
  ``zkwarden-streams`` (the same streams armed, no consumer task: the library's own
  share), ``kazoo`` (``get_async(watch=...)`` re-armed from the callback), ``aiozk``.
* ``mem-callback-watches``: the same for callback watches: ``zkwarden`` is the blocking
  ``Client.watch(path, "data", callback)``, ``kazoo`` its ``DataWatch(path, func)``; the
  callback is one shared no-op, so the whole figure is the library's.

With ``BENCH_TRACEMALLOC=N`` in the environment, the memory modes also trace Python
allocations (which inflates RSS: for finding what a watch allocates, not for the table)
and print the ``N`` biggest growing allocation sites.
* ``mem-cache``: RSS before and after a zkwarden ServiceCache of service ``arg`` (which
  has ``count`` instances) is loaded; prints ``{"rss_delta": bytes}``.
* ``caches``: ``count`` zkwarden clients, each with a ServiceCache of service ``arg``;
  for the rolling-restart scenario (see :mod:`bench.rolling`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
import tracemalloc
from typing import Any

from ._common import SESSION_TIMEOUT, LoopThread, rss_bytes


def emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def watch_paths(base: str, count: int) -> list[str]:
    return [f"{base}/n{i:05d}" for i in range(count)]


# --- holding watches (zkwarden / kazoo / aiozk) -----------------------------------------------


class Holder:
    """A connected client holding data watches on a list of paths."""

    def __init__(self, client: str, hosts: str, session_timeout: float = SESSION_TIMEOUT) -> None:
        self.client = client
        self.hosts = hosts
        self.session_timeout = session_timeout
        self.loop: LoopThread | None = None
        self.handle: Any = None
        self.keep: list[Any] = []

    def connect(self) -> None:
        if self.client == "kazoo":
            from kazoo.client import KazooClient

            self.handle = KazooClient(hosts=self.hosts, timeout=self.session_timeout)
            self.handle.start()
            self.handle.get("/")
            return
        self.loop = LoopThread(f"probe-{self.client}")
        if self.client in ("zkwarden", "zkwarden-streams"):
            from zkwarden import AsyncClient

            async def make() -> Any:
                zk = AsyncClient(self.hosts, session_timeout=self.session_timeout)
                await zk.start()
                await zk.get("/")
                return zk
        elif self.client == "aiozk":
            import aiozk

            async def make() -> Any:
                az = aiozk.ZKClient(self.hosts, session_timeout=self.session_timeout)
                await az.start()
                await az.get("/")
                return az
        else:
            raise SystemExit(f"unknown client {self.client!r}")
        self.handle = self.loop.run(make())

    def watch(self, paths: list[str]) -> None:
        """Arm one data watch per path, the way each client's users do it."""
        if self.client == "kazoo":
            kz = self.handle

            def on_event(event: Any) -> None:  # re-arm, as a DataWatch would
                kz.get_async(event.path, watch=on_event)

            for r in [kz.get_async(p, watch=on_event) for p in paths]:
                r.get()
            self.keep.append(on_event)
            return
        assert self.loop is not None
        if self.client == "zkwarden-streams":
            zk = self.handle

            async def arm_only() -> None:
                # The library's own share: each stream's first item arms its watch (the
                # read in the same request); no task consumes the stream afterwards. One
                # read after the other: gather() would add a task per stream, whose freed
                # memory stays in the process's arenas and would be counted here.
                streams = [zk.watch(p, "data") for p in paths]
                for stream in streams:
                    await stream.__anext__()
                self.keep.append(streams)

            self.loop.run(arm_only())
            return
        if self.client == "zkwarden":
            zk = self.handle

            async def arm() -> None:
                # One stream per node, each consumed by its own task: `async for` is how a
                # WatchStream is used, so the task is part of what a watch costs.
                ready = asyncio.Event()
                armed = 0

                async def consume(stream: Any) -> None:
                    nonlocal armed
                    async for _ in stream:
                        if armed < len(paths):
                            armed += 1
                            if armed == len(paths):
                                ready.set()

                loop = asyncio.get_running_loop()
                for p in paths:
                    stream = zk.watch(p, "data")
                    self.keep.append((stream, loop.create_task(consume(stream))))
                await ready.wait()

            self.loop.run(arm())
            return
        az = self.handle

        async def arm_az() -> None:
            from aiozk.protocol import WatchEvent

            def on_event(path: str) -> None:
                asyncio.get_running_loop().create_task(az.get(path, watch=True))

            for p in paths:
                az.session.add_watch_callback(WatchEvent.DATA_CHANGED, p, on_event)
            await asyncio.gather(*[az.get(p, watch=True) for p in paths])
            self.keep.append(on_event)

        self.loop.run(arm_az())


class CallbackHolder:
    """A connected blocking client holding callback data watches (zkwarden's ``Client``
    or kazoo's ``DataWatch``), each calling one shared no-op function."""

    def __init__(self, client: str, hosts: str) -> None:
        self.client = client
        self.keep: list[Any] = []
        if client == "kazoo":
            from kazoo.client import KazooClient

            self.handle: Any = KazooClient(hosts=hosts, timeout=SESSION_TIMEOUT)
            self.handle.start()
        elif client == "zkwarden":
            from zkwarden import Client

            self.handle = Client(hosts, session_timeout=SESSION_TIMEOUT)
            self.handle.start()
        else:
            raise SystemExit(f"unknown callback client {client!r}")
        self.handle.get("/")

    def watch(self, paths: list[str]) -> None:
        seen = 0

        def on_change(*_args: Any) -> None:
            nonlocal seen
            seen += 1

        if self.client == "kazoo":
            from kazoo.recipe.watchers import DataWatch

            # DataWatch reads (and arms) in its constructor and calls func once.
            self.keep.extend(DataWatch(self.handle, p, on_change) for p in paths)
        else:
            # watch() returns once armed, after posting the first event to the dispatcher.
            self.keep.extend(self.handle.watch(p, "data", on_change) for p in paths)
        deadline = time.monotonic() + 60.0
        while seen < len(paths) and time.monotonic() < deadline:
            time.sleep(0.01)  # the first calls run on the clients' callback threads
        if seen < len(paths):
            raise SystemExit(f"only {seen} of {len(paths)} first callbacks arrived")
        self.keep.append(on_change)


def _trace_top() -> int:
    return int(os.environ.get("BENCH_TRACEMALLOC", "0") or 0)


def _measure(arm: Any, warm: Any) -> None:
    """RSS (and, if asked, traced allocations) around ``arm()``, after ``warm()``."""
    warm()
    settle()
    top = _trace_top()
    if top:
        tracemalloc.start(1)
        snap0 = tracemalloc.take_snapshot()
    before = rss_bytes()
    arm()
    settle()
    after = rss_bytes()
    out: dict[str, Any] = {"rss_before": before, "rss_after": after, "rss_delta": after - before}
    if top:
        snap1 = tracemalloc.take_snapshot()
        stats = snap1.compare_to(snap0, "lineno")
        out["traced_delta"] = sum(st.size_diff for st in stats)
        out["top"] = [(str(st.traceback), st.size_diff, st.count_diff) for st in stats[:top]]
    emit(out)


def settle() -> None:
    gc.collect()
    time.sleep(0.2)
    gc.collect()


def mode_idle(client: str, hosts: str, count: int, base: str) -> None:
    # Every library's default session timeout is 10 s: pings every ~3 s are part of idling.
    holder = Holder(client, hosts, session_timeout=10.0)
    holder.connect()
    holder.watch(watch_paths(base, count))
    settle()
    emit({"ready": True})
    sys.stdin.read()  # idle until the parent closes our stdin


def mode_mem_watches(client: str, hosts: str, count: int, base: str) -> None:
    holder = Holder(client, hosts)
    holder.connect()
    # Warm up on a few other nodes so imports and first-use caches are in the baseline.
    _measure(lambda: holder.watch(watch_paths(base, count)),
             lambda: holder.watch(watch_paths(base + "-warm", 20)))


def mode_mem_callback_watches(client: str, hosts: str, count: int, base: str) -> None:
    holder = CallbackHolder(client, hosts)
    _measure(lambda: holder.watch(watch_paths(base, count)),
             lambda: holder.watch(watch_paths(base + "-warm", 20)))


def mode_mem_cache(hosts: str, count: int, service: str) -> None:
    from zkwarden import AsyncClient
    from zkwarden.discovery import ServiceDiscovery

    loop = LoopThread("probe-cache")

    async def connect() -> Any:
        zk = AsyncClient(hosts, session_timeout=SESSION_TIMEOUT)
        await zk.start()
        disc = ServiceDiscovery(zk)
        await disc.instances(service + "-warm")  # imports and first use
        return disc

    disc = loop.run(connect())
    settle()
    before = rss_bytes()

    async def load() -> int:
        cache = await disc.cache(service)
        return len(cache.instances())

    found = loop.run(load())
    settle()
    after = rss_bytes()
    if found != count:
        raise SystemExit(f"cache holds {found} instances, expected {count}")
    emit({"rss_before": before, "rss_after": after, "rss_delta": after - before})


# --- caches for the rolling restart ------------------------------------------------------------


class CacheWatcher:
    """One client + ServiceCache, and a consumer recording when each change arrived."""

    def __init__(self, zk: Any, cache: Any) -> None:
        self.zk = zk
        self.cache = cache
        self.expect: set[str] = set()
        self.present: set[str] = set()
        self.good = 0  # expected ids present
        self.bad = 0  # unexpected ids present
        self.added: dict[str, float] = {}
        self.removed: dict[str, float] = {}
        self.converged_at: float | None = None
        self.converged = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start_round(self, expect: set[str]) -> None:
        self.expect = expect
        self.good = len(self.present & expect)
        self.bad = len(self.present - expect)
        self.added = {}
        self.removed = {}
        self.converged_at = None
        self.converged.clear()

    def _check(self, now: float) -> None:
        if self.expect and self.good == len(self.expect) and self.bad == 0:
            if self.converged_at is None:
                self.converged_at = now
                self.converged.set()

    async def consume(self) -> None:
        from zkwarden.discovery import Added, Removed, Resynced

        async for change in self.cache.changes():
            now = time.monotonic()
            if isinstance(change, Added):
                iid = change.instance.id
                self.added.setdefault(iid, now)
                if iid not in self.present:
                    self.present.add(iid)
                    if iid in self.expect:
                        self.good += 1
                    else:
                        self.bad += 1
            elif isinstance(change, Removed):
                iid = change.instance.id
                self.removed.setdefault(iid, now)
                if iid in self.present:
                    self.present.discard(iid)
                    if iid in self.expect:
                        self.good -= 1
                    else:
                        self.bad -= 1
            elif isinstance(change, Resynced):
                self.present = {i.id for i in change.instances}
                self.good = len(self.present & self.expect)
                self.bad = len(self.present - self.expect)
            self._check(now)


def mode_caches(hosts: str, count: int, service: str) -> None:
    from zkwarden import AsyncClient
    from zkwarden.discovery import ServiceDiscovery

    loop = LoopThread("probe-caches")
    watchers: list[CacheWatcher] = []

    async def start() -> None:
        for _ in range(count):
            zk = AsyncClient(hosts, session_timeout=SESSION_TIMEOUT)
            await zk.start()
            cache = await ServiceDiscovery(zk).cache(service)
            w = CacheWatcher(zk, cache)
            w.present = {i.id for i in cache.instances()}
            w.task = asyncio.get_running_loop().create_task(w.consume())
            watchers.append(w)
        await asyncio.sleep(0.1)  # let every consumer take its initial Resynced

    loop.run(start())
    emit({"ready": True, "instances": [len(w.present) for w in watchers]})
    reads0: list[int] = []
    resyncs0: list[int] = []
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "begin":
            expect = set(cmd["expect"])

            async def begin(expect: set[str] = expect) -> tuple[list[int], list[int]]:
                for w in watchers:
                    w.start_round(expect)
                return [w.cache.reads for w in watchers], [w.cache.resyncs for w in watchers]

            reads0, resyncs0 = loop.run(begin())
            emit({"begun": True})
        elif cmd["cmd"] == "collect":
            timeout = float(cmd.get("timeout", 30.0))

            async def wait_all(timeout: float = timeout) -> bool:
                try:
                    async with asyncio.timeout(timeout):
                        await asyncio.gather(*(w.converged.wait() for w in watchers))
                    return True
                except TimeoutError:
                    return False

            ok = loop.run(wait_all())
            emit({
                "converged": ok,
                "converged_at": [w.converged_at for w in watchers],
                "reads": [w.cache.reads - r for w, r in zip(watchers, reads0, strict=True)],
                "resyncs": [w.cache.resyncs - r
                            for w, r in zip(watchers, resyncs0, strict=True)],
                "added": [w.added for w in watchers],
                "removed": [w.removed for w in watchers],
            })
        elif cmd["cmd"] == "quit":
            break

    async def stop() -> None:
        for w in watchers:
            await w.cache.close()
            await w.zk.close()

    loop.run(stop())
    loop.close()


def main(argv: list[str]) -> None:
    mode, client, hosts, count = argv[0], argv[1], argv[2], int(argv[3])
    arg = argv[4] if len(argv) > 4 else ""
    if mode == "idle":
        mode_idle(client, hosts, count, arg)
    elif mode == "mem-watches":
        mode_mem_watches(client, hosts, count, arg)
    elif mode == "mem-callback-watches":
        mode_mem_callback_watches(client, hosts, count, arg)
    elif mode == "mem-cache":
        mode_mem_cache(hosts, count, arg)
    elif mode == "caches":
        mode_caches(hosts, count, arg)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.stderr.flush()
    # A measurement probe needs no orderly teardown (its server goes with the run); exiting
    # here also spares the log one "Task was destroyed" line per still-armed watch stream.
    os._exit(0)
