"""The in-process scenarios: every client, one round each in turn, the same server.

A scenario lists its participants (one per client); the runner sets them all up, runs
the warm-up rounds, then the measured rounds interleaved (round 1 of every client, then
round 2, ...; the order rotates each round so no client always goes first), then tears
them down. A round returns one value per metric of the scenario. The runner also counts the
process's CPU time around each round and reports it as µs of client CPU per operation
(``Metric.ops`` names the size that counts the round's operations); a round that measures
several metrics reports each one's CPU itself, as ``"cpu:<metric>"`` (seconds).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._common import Series, process_cpu
from .clients import Clients, create_many, delete_tree

VALUE = b"v" * 64  # the data of every node read or written


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is. ``full()`` is what the issue asks for."""

    seq_ops: int = 2000
    pipelined: int = 10_000
    watch_nodes: int = 1000
    children: int = 10_000
    children_calls: int = 3
    instances: int = 10_000
    rolling_instances: int = 1000
    rolling_caches: int = 20
    rolling_batch: int = 50
    idle_watches: int = 1000
    idle_window: float = 5.0
    memory_watches: int = 10_000
    memory_instances: int = 10_000

    @classmethod
    def full(cls) -> Sizes:
        return cls()

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            seq_ops=50, pipelined=200, watch_nodes=20, children=100, children_calls=1,
            instances=100, rolling_instances=20, rolling_caches=2, rolling_batch=5,
            idle_watches=20, idle_window=0.5, memory_watches=200, memory_instances=200,
        )


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    unit: str
    better: str  # "higher" or "lower"
    ops: str = ""  # the Sizes field counting one round's operations (for CPU per op)
    cpu_unit: str = "µs/op"


@dataclass
class Participant:
    name: str  # the row label
    client: str  # "raw", "zkwarden", "kazoo" or "aiozk": skipped when not installed
    round: Callable[[], dict[str, float]]
    setup: Callable[[], None] | None = None
    teardown: Callable[[], None] | None = None


@dataclass
class Plan:
    participants: list[Participant]
    setup: Callable[[], None] | None = None
    teardown: Callable[[], None] | None = None


@dataclass
class Scenario:
    key: str
    metrics: list[Metric]
    build: Callable[[Clients, Sizes], Plan]


def run_scenario(
    scn: Scenario, c: Clients, sizes: Sizes, rounds: int, warmup: int,
    log: Callable[[str], None],
) -> dict[str, dict[str, Series]]:
    plan = scn.build(c, sizes)
    parts = [p for p in plan.participants if p.client in c.available]
    results: dict[str, dict[str, Series]] = {m.key: {} for m in scn.metrics}
    ops = {m.key: getattr(sizes, m.ops) for m in scn.metrics if m.ops}
    if plan.setup is not None:
        plan.setup()
    for p in parts:
        if p.setup is not None:
            p.setup()
    try:
        for _ in range(warmup):
            for p in parts:
                p.round()
        for r in range(rounds):
            k = r % len(parts)
            for p in parts[k:] + parts[:k]:
                cpu0 = process_cpu()
                values = p.round()
                cpu = process_cpu() - cpu0
                for key, value in values.items():
                    if key.startswith("cpu:"):
                        continue
                    series = results[key].setdefault(p.name, Series())
                    series.samples.append(value)
                    if key in ops:
                        used = values.get(f"cpu:{key}", cpu)
                        series.cpu.append(used / ops[key] * 1e6)
            log(f"  round {r + 1}/{rounds}: " + ", ".join(
                f"{name} {results[scn.metrics[0].key][name].samples[-1]:.4g}"
                for name in (p.name for p in parts) if name in results[scn.metrics[0].key]
            ))
    finally:
        for p in parts:
            if p.teardown is not None:
                p.teardown()
        if plan.teardown is not None:
            plan.teardown()
    # keep the participants' order (not the rotated one)
    ordered: dict[str, dict[str, Series]] = {}
    for key, by_name in results.items():
        ordered[key] = {p.name: by_name[p.name] for p in parts if p.name in by_name}
    return ordered


# --- sequential get ---------------------------------------------------------------------------

_GET_PATH = "/bench-get"


def _build_get_seq(c: Clients, s: Sizes) -> Plan:
    n = s.seq_ops
    zk, az = c.zk, c.az

    async def zk_seq() -> float:
        get = zk.get
        t0 = time.perf_counter()
        for _ in range(n):
            await get(_GET_PATH)
        return time.perf_counter() - t0

    async def az_seq() -> float:
        get = az.get_data
        t0 = time.perf_counter()
        for _ in range(n):
            await get(_GET_PATH)
        return time.perf_counter() - t0

    def blocking(get: Callable[[str], Any]) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            get(_GET_PATH)
        return time.perf_counter() - t0

    def us(seconds: float) -> dict[str, float]:
        return {"get_seq": seconds / n * 1e6}

    return Plan([
        Participant("raw socket", "raw", lambda: us(c.raw.sequential_get(_GET_PATH, n))),
        Participant("zkwarden", "zkwarden", lambda: us(c.zl.run(zk_seq()))),
        Participant("zkwarden Client", "zkwarden", lambda: us(blocking(c.zks.get))),
        Participant("kazoo", "kazoo", lambda: us(blocking(c.kz.get))),
        Participant("aiozk", "aiozk", lambda: us(c.al.run(az_seq()))),
    ], setup=lambda: _setup_get_node(c))


# --- pipelined get ----------------------------------------------------------------------------


def _build_get_pipelined(c: Clients, s: Sizes) -> Plan:
    n = s.pipelined
    zk, az, kz, raw = c.zk, c.az, c.kz, c.raw

    def raw_round() -> dict[str, float]:
        frames = [raw.get_data_frame(_GET_PATH) for _ in range(n)]
        return {"get_pipelined": n / raw.pipelined(frames)}

    async def zk_gather() -> float:
        get = zk.get
        t0 = time.perf_counter()
        await asyncio.gather(*[get(_GET_PATH) for _ in range(n)])
        return time.perf_counter() - t0

    async def zk_many() -> float:
        t0 = time.perf_counter()
        await zk.get_many([_GET_PATH] * n)
        return time.perf_counter() - t0

    async def az_gather() -> float:
        get = az.get_data  # the rule: aiozk's pipelined get is gather of get_data
        t0 = time.perf_counter()
        await asyncio.gather(*[get(_GET_PATH) for _ in range(n)])
        return time.perf_counter() - t0

    def kz_round() -> float:
        get_async = kz.get_async
        t0 = time.perf_counter()
        results = [get_async(_GET_PATH) for _ in range(n)]
        for r in results:
            r.get()
        return time.perf_counter() - t0

    def rate(seconds: float) -> dict[str, float]:
        return {"get_pipelined": n / seconds}

    return Plan([
        Participant("raw socket", "raw", raw_round),
        Participant("zkwarden", "zkwarden", lambda: rate(c.zl.run(zk_gather()))),
        Participant("zkwarden get_many", "zkwarden", lambda: rate(c.zl.run(zk_many()))),
        Participant("kazoo", "kazoo", lambda: rate(kz_round())),
        Participant("aiozk", "aiozk", lambda: rate(c.al.run(az_gather()))),
    ], setup=lambda: _setup_get_node(c))


# --- pipelined create and delete --------------------------------------------------------------


def _build_create_delete(c: Clients, s: Sizes) -> Plan:
    n = s.pipelined
    zk, az, kz, raw = c.zk, c.az, c.kz, c.raw

    def paths(who: str) -> list[str]:
        return [f"/bench-cd/{who}/n{i:05d}" for i in range(n)]

    def setup() -> None:
        async def mk() -> None:
            await zk.ensure_path("/bench-cd")
            for who in ("raw", "zkwarden", "kazoo", "aiozk"):
                await zk.ensure_path(f"/bench-cd/{who}")

        c.zl.run(mk())

    def teardown() -> None:
        c.zl.run(delete_tree(zk, "/bench-cd"))

    def raw_round() -> dict[str, float]:
        ps = paths("raw")
        c0 = process_cpu()
        created = raw.pipelined([raw.create_frame(p, VALUE) for p in ps])
        c1 = process_cpu()
        deleted = raw.pipelined([raw.delete_frame(p) for p in ps])
        c2 = process_cpu()
        return {"create": n / created, "delete": n / deleted,
                "cpu:create": c1 - c0, "cpu:delete": c2 - c1}

    async def zk_round() -> dict[str, float]:
        ps = paths("zkwarden")
        create, delete = zk.create, zk.delete
        c0, t0 = process_cpu(), time.perf_counter()
        await asyncio.gather(*[create(p, VALUE) for p in ps])
        c1, t1 = process_cpu(), time.perf_counter()
        await asyncio.gather(*[delete(p) for p in ps])
        c2, t2 = process_cpu(), time.perf_counter()
        return {"create": n / (t1 - t0), "delete": n / (t2 - t1),
                "cpu:create": c1 - c0, "cpu:delete": c2 - c1}

    async def az_round() -> dict[str, float]:
        ps = paths("aiozk")
        create, delete = az.create, az.delete
        c0, t0 = process_cpu(), time.perf_counter()
        await asyncio.gather(*[create(p, VALUE) for p in ps])
        c1, t1 = process_cpu(), time.perf_counter()
        await asyncio.gather(*[delete(p) for p in ps])
        c2, t2 = process_cpu(), time.perf_counter()
        return {"create": n / (t1 - t0), "delete": n / (t2 - t1),
                "cpu:create": c1 - c0, "cpu:delete": c2 - c1}

    def kz_round() -> dict[str, float]:
        ps = paths("kazoo")
        create_async, delete_async = kz.create_async, kz.delete_async
        c0, t0 = process_cpu(), time.perf_counter()
        for r in [create_async(p, VALUE) for p in ps]:
            r.get()
        c1, t1 = process_cpu(), time.perf_counter()
        for r in [delete_async(p) for p in ps]:
            r.get()
        c2, t2 = process_cpu(), time.perf_counter()
        return {"create": n / (t1 - t0), "delete": n / (t2 - t1),
                "cpu:create": c1 - c0, "cpu:delete": c2 - c1}

    return Plan([
        Participant("raw socket", "raw", raw_round),
        Participant("zkwarden", "zkwarden", lambda: c.zl.run(zk_round())),
        Participant("kazoo", "kazoo", kz_round),
        Participant("aiozk", "aiozk", lambda: c.al.run(az_round())),
    ], setup=setup, teardown=teardown)


# --- set with watches firing ------------------------------------------------------------------


class _Counter:
    """Counts delivered watch events (from kazoo's threads); wakes a waiter at the target."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.target = 0
        self.done = threading.Event()

    def reset(self, target: int) -> None:
        with self._lock:
            self.count = 0
            self.target = target
            self.done.clear()

    def hit(self) -> None:
        with self._lock:
            self.count += 1
            if self.count >= self.target:
                self.done.set()


class _LoopCounter:
    """The same, for events delivered on an event loop (create and use it there)."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.done = asyncio.Event()

    def reset(self, target: int) -> None:
        self.count = 0
        self.target = target
        self.done.clear()

    def hit(self) -> None:
        self.count += 1
        if self.count >= self.target:
            self.done.set()


def _build_set_watch(c: Clients, s: Sizes) -> Plan:
    """Each client holds a data watch on each of K nodes and re-arms it with a read (the
    data-watch pattern); a round sets all K nodes (pipelined) and ends when every set is
    acknowledged and every watch event was delivered with the node's new data."""
    k = s.watch_nodes
    zk, az, kz = c.zk, c.az, c.kz
    from zkwarden import EventType

    def paths(who: str) -> list[str]:
        return [f"/bench-watch/{who}/n{i:04d}" for i in range(k)]

    # zkwarden: one watch stream per node (re-armed by the stream itself), one consumer.
    zk_state: dict[str, Any] = {}

    async def nodes_setup() -> None:
        for who in ("zkwarden", "kazoo", "aiozk"):
            await zk.ensure_path(f"/bench-watch/{who}")
            await create_many(zk, paths(who), VALUE)

    async def zk_setup() -> None:
        counter = _LoopCounter()
        armed = asyncio.Event()
        n_armed = 0

        async def consume(stream: Any) -> None:
            nonlocal n_armed
            async for ev in stream:
                if ev.type is EventType.NONE:
                    n_armed += 1
                    if n_armed == k:
                        armed.set()
                else:
                    counter.hit()

        streams = [zk.watch(p, "data") for p in paths("zkwarden")]
        zk_state.update(
            counter=counter, streams=streams,
            tasks=[asyncio.get_running_loop().create_task(consume(st)) for st in streams],
        )
        await armed.wait()

    async def zk_round() -> float:
        counter: _LoopCounter = zk_state["counter"]
        counter.reset(k)
        set_ = zk.set
        ps = paths("zkwarden")
        t0 = time.perf_counter()
        await asyncio.gather(*[set_(p, VALUE) for p in ps])
        await counter.done.wait()
        return time.perf_counter() - t0

    async def zk_teardown() -> None:
        for st in zk_state["streams"]:
            await st.aclose()
        for t in zk_state["tasks"]:
            t.cancel()
        await asyncio.gather(*zk_state["tasks"], return_exceptions=True)

    # kazoo: get(path, watch=cb); the callback re-reads with a watch, then counts.
    kz_counter = _Counter()

    def kz_watch(event: Any) -> None:
        kz.get_async(event.path, watch=kz_watch).rawlink(lambda _r: kz_counter.hit())

    def kz_setup() -> None:
        for r in [kz.get_async(p, watch=kz_watch) for p in paths("kazoo")]:
            r.get()

    def kz_round() -> float:
        kz_counter.reset(k)
        set_async = kz.set_async
        t0 = time.perf_counter()
        for r in [set_async(p, VALUE) for p in paths("kazoo")]:
            r.get()
        kz_counter.done.wait(120)
        return time.perf_counter() - t0

    # aiozk: session watch callbacks (what its recipes use) + get(watch=True) to re-arm.
    az_state: dict[str, _LoopCounter] = {}
    az_tasks: set[asyncio.Task[Any]] = set()

    async def az_rearm(path: str) -> None:
        await az.get(path, watch=True)
        az_state["counter"].hit()

    def az_watch(path: str) -> None:
        t = asyncio.get_running_loop().create_task(az_rearm(path))
        az_tasks.add(t)
        t.add_done_callback(az_tasks.discard)

    async def az_setup() -> None:
        from aiozk.protocol import WatchEvent

        az_state["counter"] = _LoopCounter()
        for p in paths("aiozk"):
            az.session.add_watch_callback(WatchEvent.DATA_CHANGED, p, az_watch)
        await asyncio.gather(*[az.get(p, watch=True) for p in paths("aiozk")])

    async def az_round() -> float:
        counter = az_state["counter"]
        counter.reset(k)
        set_ = az.set
        t0 = time.perf_counter()
        await asyncio.gather(*[set_(p, VALUE, -1) for p in paths("aiozk")])
        await counter.done.wait()
        return time.perf_counter() - t0

    def rate(seconds: float) -> dict[str, float]:
        return {"set_watch": k / seconds}

    return Plan([
        Participant("zkwarden", "zkwarden", lambda: rate(c.zl.run(zk_round())),
                    setup=lambda: c.zl.run(zk_setup()),
                    teardown=lambda: c.zl.run(zk_teardown())),
        Participant("kazoo", "kazoo", lambda: rate(kz_round()), setup=kz_setup),
        Participant("aiozk", "aiozk", lambda: rate(c.al.run(az_round())),
                    setup=lambda: c.al.run(az_setup())),
    ], setup=lambda: c.zl.run(nodes_setup()),
       teardown=lambda: c.zl.run(delete_tree(zk, "/bench-watch")))


# --- get_children of 10,000 children ----------------------------------------------------------

_CHILDREN_PATH = "/bench-children"


def _build_children(c: Clients, s: Sizes) -> Plan:
    n, calls = s.children, s.children_calls
    zk, az, kz, raw = c.zk, c.az, c.kz, c.raw

    def setup() -> None:
        async def mk() -> None:
            await zk.ensure_path(_CHILDREN_PATH)
            await create_many(zk, [f"{_CHILDREN_PATH}/child-{i:05d}" for i in range(n)], b"")

        c.zl.run(mk())

    def teardown() -> None:
        c.zl.run(delete_tree(zk, _CHILDREN_PATH))

    def check(count: int) -> None:
        if count != n:
            raise RuntimeError(f"get_children returned {count} children, expected {n}")

    def raw_round() -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            check(raw.get_children_count(_CHILDREN_PATH))
        return time.perf_counter() - t0

    async def zk_round() -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            check(len(await zk.get_children(_CHILDREN_PATH)))
        return time.perf_counter() - t0

    async def az_round() -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            check(len(await az.get_children(_CHILDREN_PATH)))
        return time.perf_counter() - t0

    def kz_round() -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            check(len(kz.get_children(_CHILDREN_PATH)))
        return time.perf_counter() - t0

    def ms(seconds: float) -> dict[str, float]:
        return {"children": seconds / calls * 1e3}

    return Plan([
        Participant("raw socket", "raw", lambda: ms(raw_round())),
        Participant("zkwarden", "zkwarden", lambda: ms(c.zl.run(zk_round()))),
        Participant("kazoo", "kazoo", lambda: ms(kz_round())),
        Participant("aiozk", "aiozk", lambda: ms(c.al.run(az_round()))),
    ], setup=setup, teardown=teardown)


# --- instances() of a service with 10,000 instances -------------------------------------------

SERVICE = "bench-svc"


async def create_instances(zk: Any, count: int, name: str = SERVICE) -> list[str]:
    """Create ``count`` Curator-format instance nodes of ``name`` (setup; persistent nodes)."""
    from zkwarden.discovery import CuratorFormat, ServiceInstance

    fmt = CuratorFormat()
    base = fmt.default_base_path
    await zk.ensure_path(fmt.service_path(base, name))
    paths: list[str] = []
    datas: list[bytes] = []
    for i in range(count):
        inst = ServiceInstance(
            name, address=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", port=8080,
            payload={"zone": f"z{i % 3}"},
        )
        paths.append(fmt.instance_path(base, inst))
        datas.append(fmt.encode(inst))
    for i in range(0, count, 5000):
        await asyncio.gather(*(zk.create(p, d) for p, d in zip(paths[i:i + 5000],
                                                               datas[i:i + 5000], strict=True)))
    return paths


def _build_instances(c: Clients, s: Sizes) -> Plan:
    n = s.instances
    zk, az, kz = c.zk, c.az, c.kz
    from zkwarden.discovery import CuratorFormat, ServiceDiscovery

    fmt = CuratorFormat()
    service_path = fmt.service_path(fmt.default_base_path, SERVICE)
    disc = ServiceDiscovery(zk)

    def setup() -> None:
        c.zl.run(create_instances(zk, n))

    def teardown() -> None:
        c.zl.run(delete_tree(zk, service_path))

    def check(count: int) -> None:
        if count != n:
            raise RuntimeError(f"read {count} instances, expected {n}")

    async def zk_instances() -> float:
        t0 = time.perf_counter()
        check(len(await disc.instances(SERVICE)))
        return time.perf_counter() - t0

    # The N+1 pattern of Curator's ServiceDiscovery.queryForInstances and kazoo-based
    # registries: list the children, then read and decode them one at a time.
    async def zk_n_plus_1() -> float:
        t0 = time.perf_counter()
        found = []
        for child in await zk.get_children(service_path):
            data, _ = await zk.get(f"{service_path}/{child}")
            found.append(fmt.decode(SERVICE, child, data))
        check(len(found))
        return time.perf_counter() - t0

    def kz_n_plus_1() -> float:
        t0 = time.perf_counter()
        found = []
        for child in kz.get_children(service_path):
            data, _ = kz.get(f"{service_path}/{child}")
            found.append(fmt.decode(SERVICE, child, data))
        check(len(found))
        return time.perf_counter() - t0

    async def az_n_plus_1() -> float:
        t0 = time.perf_counter()
        found = []
        for child in await az.get_children(service_path):
            data, _ = await az.get(f"{service_path}/{child}")
            found.append(fmt.decode(SERVICE, child, data))
        check(len(found))
        return time.perf_counter() - t0

    def ms(seconds: float) -> dict[str, float]:
        return {"instances": seconds * 1e3}

    return Plan([
        Participant("zkwarden instances()", "zkwarden",
                    lambda: ms(c.zl.run(zk_instances()))),
        Participant("zkwarden N+1", "zkwarden", lambda: ms(c.zl.run(zk_n_plus_1()))),
        Participant("kazoo N+1", "kazoo", lambda: ms(kz_n_plus_1())),
        Participant("aiozk N+1", "aiozk", lambda: ms(c.al.run(az_n_plus_1()))),
    ], setup=setup, teardown=teardown)


# --- the list -----------------------------------------------------------------------------------


def _setup_get_node(c: Clients) -> None:
    async def mk() -> None:
        if await c.zk.exists(_GET_PATH) is None:
            await c.zk.create(_GET_PATH, VALUE)

    c.zl.run(mk())


def in_process_scenarios() -> list[Scenario]:
    return [
        Scenario("get_seq", [Metric("get_seq", "get, sequential (awaited / blocking)",
                                    "µs/op", "lower", ops="seq_ops")], _build_get_seq),
        Scenario("get_pipelined", [Metric("get_pipelined", "get, pipelined ({pipelined:,} in flight)",
                                          "ops/s", "higher", ops="pipelined")],
                 _build_get_pipelined),
        Scenario("create_delete", [
            Metric("create", "create, pipelined ({pipelined:,} in flight)", "ops/s", "higher",
                   ops="pipelined"),
            Metric("delete", "delete, pipelined ({pipelined:,} in flight)", "ops/s", "higher",
                   ops="pipelined"),
        ], _build_create_delete),
        Scenario("set_watch", [Metric("set_watch", "set with a data watch firing ({watch_nodes:,} nodes)",
                                      "sets/s", "higher", ops="watch_nodes", cpu_unit="µs/set")],
                 _build_set_watch),
        Scenario("children", [Metric("children", "get_children of {children:,} children",
                                     "ms/call", "lower", ops="children_calls",
                                     cpu_unit="µs/call")], _build_children),
        Scenario("instances", [Metric("instances", "instances() of {instances:,} instances",
                                      "ms/call", "lower", ops="instances",
                                      cpu_unit="µs/instance")], _build_instances),
    ]

