"""ServiceCache against a real ZooKeeper: views equal the truth through faults."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest

from zkwarden import AsyncClient
from zkwarden.discovery import (
    Added,
    Removed,
    Resynced,
    ServiceDiscovery,
    ServiceInstance,
    ServiceRegistry,
    Updated,
)
from zkwarden.errors import ConfigurationError
from zkwarden.testing import FaultProxy

pytestmark = pytest.mark.asyncio


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _replay(changes: list[Any]) -> dict[str, ServiceInstance]:
    view: dict[str, ServiceInstance] = {}
    for change in changes:
        if isinstance(change, Resynced):
            view = {i.id: i for i in change.instances}
        elif isinstance(change, Added):
            view[change.instance.id] = change.instance
        elif isinstance(change, Removed):
            view.pop(change.instance.id, None)
        elif isinstance(change, Updated):
            view[change.new.id] = change.new
    return view


# Both watch modes against the same (3.8) server: "one-shot" is what a cache falls back
# to on ZooKeeper < 3.6, forced here so the fallback passes the same tests.
MODES = pytest.mark.parametrize("mode", ["persistent", "one-shot"])


@MODES
async def test_rolling_restart_views_equal_truth(
    mode: str, make_client: Any, zk_path: str
) -> None:
    base = f"{zk_path}/services"
    registering = [await make_client() for _ in range(10)]
    watching = [await make_client() for _ in range(5)]
    registries = [ServiceRegistry(c, base) for c in registering]
    stable = [ServiceInstance(name="web", id=f"stable-{i}", address="s", port=i)
              for i in range(20)]
    current = [ServiceInstance(name="web", id=f"gen0-{i}", address="g", port=i)
               for i in range(180)]
    owner: dict[str, ServiceRegistry] = {}
    for i, inst in enumerate(stable + current):
        reg = registries[i % 10]
        owner[inst.id] = reg
    await asyncio.gather(*(owner[i.id].register(i) for i in stable + current))

    # 20 independent caches, 4 per watching client (a discovery shares one cache per
    # name, so each cache gets its own discovery).
    caches = [await ServiceDiscovery(watching[i % 5], base, watch_mode=mode).cache("web")  # type: ignore[arg-type]
              for i in range(20)]
    assert {c.watch_mode_in_use for c in caches} == {mode}
    logs: list[list[Any]] = [[] for _ in caches]
    stable_ids = {i.id for i in stable}
    violations: list[str] = []

    async def follow(index: int) -> None:
        async for change in caches[index].changes():
            logs[index].append(change)
            view = _replay(logs[index])
            missing = stable_ids - set(view)
            if missing and len(logs[index]) > 1:
                violations.append(f"cache {index} lacked {sorted(missing)[:3]}")

    followers = [asyncio.create_task(follow(i)) for i in range(20)]
    await _until(lambda: all(len(c.instances()) == 200 for c in caches))
    reads_before = sum(c.reads for c in caches)

    batch = len(current) // 4
    added = 0
    for gen in range(1, 5):
        old, current = current[:batch], current[batch:]
        new = [ServiceInstance(name="web", id=f"gen{gen}-{i}", address="n", port=i)
               for i in range(batch)]
        await asyncio.gather(*(owner[i.id].unregister(i) for i in old))
        for i, inst in enumerate(new):
            owner[inst.id] = registries[i % 10]
        await asyncio.gather(*(owner[i.id].register(i) for i in new))
        added += len(new)
        current += new
        await asyncio.sleep(0.02)
    last_change = time.monotonic()
    truth = {i.id for i in stable + current}
    await _until(lambda: all({i.id for i in c.instances()} == truth for c in caches), 15)
    converged = time.monotonic() - last_change
    # Stream replay equals the truth too.
    await asyncio.sleep(0.1)
    for index in range(20):
        assert set(_replay(logs[index])) == truth, f"cache {index} stream replay differs"
    assert not violations, violations[:5]
    reads = sum(c.reads for c in caches) - reads_before
    reads_per_add_per_cache = reads / (added * 20)
    print(f"ROLLING mode={mode} reads_per_added_instance_per_cache="
          f"{reads_per_add_per_cache:.2f} converged_after_last_change={converged * 1000:.0f}ms")
    # Persistent: one read per added instance, none per removal. One-shot: the same, plus
    # at most the read that re-arms a removed instance's watch (an exists watch then).
    assert reads_per_add_per_cache <= (1.0 if mode == "persistent" else 2.0)
    for task in followers:
        task.cancel()
    for cache in caches:
        await cache.close()
    for reg in registries:
        await reg.close()


@MODES
async def test_deleted_and_recreated_during_partition_is_reported(
    mode: str, make_client: Any, fault_proxy: FaultProxy, zk_path: str
) -> None:
    base = f"{zk_path}/services"
    writer = await make_client()
    watcher = await make_client(fault_proxy.connect_string, session_timeout=2.0)
    node = f"{base}/web/same"
    inst = ServiceInstance(name="web", id="same", address="a", port=1)
    from zkwarden.discovery import CuratorFormat

    data = CuratorFormat().encode(inst)
    await writer.create(node, data, makepath=True)
    cache = await ServiceDiscovery(watcher, base, watch_mode=mode).cache("web")  # type: ignore[arg-type]
    assert cache.watch_mode_in_use == mode
    stream = cache.changes()
    first = await stream.__anext__()
    assert isinstance(first, Resynced) and [i.id for i in first.instances] == ["same"]
    fault_proxy.blackhole()
    await _until(lambda: not watcher.connected, 5)
    assert cache.stale and [i.id for i in cache.instances()] == ["same"]
    await writer.delete(node)
    await writer.create(node, data)  # same data, same version 0, new czxid
    # Reconnected but not yet re-read: the view is still stale at that moment.
    stale_when_connected: list[bool] = []
    watcher.add_listener(
        lambda change: stale_when_connected.append(cache.stale)
        if change.state.name == "CONNECTED" else None
    )
    fault_proxy.pass_through()
    got = []
    while not any(isinstance(c, Resynced) for c in got):
        got.append(await asyncio.wait_for(stream.__anext__(), 10))
    kinds = [type(c).__name__ for c in got]
    assert kinds == ["Removed", "Added", "Resynced"], kinds
    assert stale_when_connected == [True]
    assert not cache.stale
    await cache.close()


async def test_start_from_snapshot_when_unreachable_then_live(
    make_client: Any, zk_path: str, tmp_path: Any, zk_hosts: str
) -> None:
    base = f"{zk_path}/services"
    writer = await make_client()
    reg = ServiceRegistry(writer, base)
    insts = [ServiceInstance(name="web", id=f"w{i}", address="x", port=i) for i in range(3)]
    for inst in insts:
        await reg.register(inst)
    live = await make_client()
    disc = ServiceDiscovery(live, base, snapshot_dir=str(tmp_path))
    cache = await disc.cache("web")
    assert len(cache.instances()) == 3
    await disc.close()

    with FaultProxy(zk_hosts) as proxy:
        proxy.blackhole()
        client = AsyncClient(proxy.connect_string, session_timeout=2.0)
        await client.start(wait=False)
        disc2 = ServiceDiscovery(client, base, snapshot_dir=str(tmp_path))
        cold = await asyncio.wait_for(disc2.cache("web"), 5)
        assert cold.stale
        assert sorted(i.id for i in cold.instances()) == ["w0", "w1", "w2"]
        await reg.unregister(insts[0])
        proxy.pass_through()
        await _until(lambda: client.connected and not cold.stale, 15)
        await _until(lambda: sorted(i.id for i in cold.instances()) == ["w1", "w2"])
        await disc2.close()
        await client.close()
    await reg.close()


async def test_garbage_and_foreign_data_skipped(
    make_client: Any, zk_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    base = f"{zk_path}/services"
    writer = await make_client()
    reg = ServiceRegistry(writer, base)
    good = ServiceInstance(name="web", id="good", address="a", port=1)
    await reg.register(good)
    await writer.create(f"{base}/web/garbage", b"\x00\xffnot json")
    await writer.create(f"{base}/web/empty", b"")
    await writer.create(f"{base}/web/foreign", json.dumps({"hello": "world"}).encode())
    caplog.set_level(logging.WARNING, logger="zkwarden.discovery")
    disc = ServiceDiscovery(await make_client(), base)
    assert [i.id for i in await disc.instances("web")] == ["good"]
    cache = await disc.cache("web")
    assert [i.id for i in cache.instances()] == ["good"]
    await writer.set(f"{base}/web/garbage", b"{still not")
    later = ServiceInstance(name="web", id="later", address="b", port=2)
    await reg.register(later)
    await _until(lambda: [i.id for i in cache.instances()] == ["good", "later"])
    assert any("garbage" in r.getMessage() for r in caplog.records)
    await disc.close()
    await reg.close()


async def test_whole_registry_cache_and_absent_service(make_client: Any, zk_path: str) -> None:
    base = f"{zk_path}/services"
    writer = await make_client()
    reader = await make_client()
    disc = ServiceDiscovery(reader, base)
    everything = await disc.cache()
    absent = await disc.cache("later")
    assert everything.instances() == [] and absent.instances() == []
    reg = ServiceRegistry(writer, base)
    a = ServiceInstance(name="a", id="a1", address="x", port=1)
    later = ServiceInstance(name="later", id="l1", address="y", port=2)
    await reg.register(a)
    await reg.register(later)
    await _until(lambda: everything.names() == ["a", "later"])
    await _until(lambda: [i.id for i in absent.instances()] == ["l1"])
    await reg.unregister(later)
    await _until(lambda: absent.instances() == [] and everything.names() == ["a"])
    await reg.register(later)  # the service directory (a container) comes back
    await _until(lambda: [i.id for i in absent.instances()] == ["l1"])
    await disc.close()
    await reg.close()


async def test_many_subscribers_each_get_view_then_changes(make_client: Any, zk_path: str) -> None:
    base = f"{zk_path}/services"
    writer, reader = await make_client(), await make_client()
    reg = ServiceRegistry(writer, base)
    await reg.register(ServiceInstance(name="web", id="first", address="a", port=1))
    cache = await ServiceDiscovery(reader, base).cache("web")
    streams = [cache.changes() for _ in range(100)]
    firsts = await asyncio.gather(*(s.__anext__() for s in streams))
    assert all(isinstance(f, Resynced) and [i.id for i in f.instances] == ["first"]
               for f in firsts)
    await reg.register(ServiceInstance(name="web", id="second", address="b", port=2))
    nexts = await asyncio.gather(*(asyncio.wait_for(s.__anext__(), 5) for s in streams))
    assert all(isinstance(n, Added) and n.instance.id == "second" for n in nexts)
    await cache.close()
    await reg.close()


async def test_max_nodes_bounds_every_cache_of_a_discovery(make_client: Any,
                                                           zk_path: str) -> None:
    base = f"{zk_path}/services"
    writer, reader = await make_client(), await make_client()
    reg = ServiceRegistry(writer, base)
    for i in range(8):
        await reg.register(ServiceInstance(name="web", id=f"i{i}", address="a", port=1 + i))
    with pytest.raises(ConfigurationError):
        ServiceDiscovery(reader, base, max_nodes=0)
    small = await ServiceDiscovery(reader, base, max_nodes=5).cache("web")
    assert len(small.instances()) < 8 and small.stale  # bounded: marked, not silently short
    full = await ServiceDiscovery(reader, base, max_nodes=9).cache("web")
    assert len(full.instances()) == 8 and not full.stale
    await small.close()
    await full.close()
    await reg.close()
