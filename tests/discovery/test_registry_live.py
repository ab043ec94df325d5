"""ServiceRegistry against a real ZooKeeper: the reconcile rules of DESIGN rule 5."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from zkwarden import errors
from zkwarden.discovery import (
    Added,
    Removed,
    ServiceDiscovery,
    ServiceInstance,
    ServiceRegistry,
)
from zkwarden.testing import expire_session_async

pytestmark = pytest.mark.asyncio


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_register_update_unregister(make_client: Any, zk_path: str) -> None:
    a, b = await make_client(), await make_client()
    reg = ServiceRegistry(a, f"{zk_path}/services")
    disc = ServiceDiscovery(b, f"{zk_path}/services")
    inst = ServiceInstance(name="web", address="10.0.0.5", port=8080, payload={"k": "v"})
    await reg.register(inst)
    assert [i.id for i in await disc.instances("web")] == [inst.id]
    assert await disc.names() == ["web"]
    await reg.update(inst.replace(port=9090))
    (found,) = await disc.instances("web")
    assert found.port == 9090 and found.payload == {"k": "v"}
    # The service directory is a container node (it goes away when it empties).
    _, stat = await b.get(f"{zk_path}/services/web/{inst.id}")
    assert stat.ephemeral_owner == a.session_id
    await reg.unregister(inst)
    assert await disc.instances("web") == []
    await reg.close()


async def test_duplicate_owned_by_other_live_session(make_client: Any, zk_path: str) -> None:
    a, b = await make_client(), await make_client()
    inst = ServiceInstance(name="api", id="fixed-id", address="h", port=1)
    reg_a = ServiceRegistry(a, f"{zk_path}/services")
    reg_b = ServiceRegistry(b, f"{zk_path}/services")
    await reg_a.register(inst)
    with pytest.raises(errors.DuplicateInstanceError):
        await reg_b.register(inst)
    # The refused registration left the original untouched.
    _, stat = await a.get(f"{zk_path}/services/api/fixed-id")
    assert stat.ephemeral_owner == a.session_id
    await reg_b.close()
    await reg_a.close()


async def test_reregistered_after_expiry_and_cache_sees_removed_then_added(
    make_client: Any, zk_path: str
) -> None:
    a, b = await make_client(), await make_client()
    reg = ServiceRegistry(a, f"{zk_path}/services")
    disc = ServiceDiscovery(b, f"{zk_path}/services")
    cache = await disc.cache("web")
    stream = cache.changes()
    await stream.__anext__()
    instances = [ServiceInstance(name="web", address=f"10.0.0.{i}", port=80) for i in range(3)]
    for inst in instances:
        await reg.register(inst)
    for _ in instances:
        assert isinstance(await asyncio.wait_for(stream.__anext__(), 5), Added)
    old_session = a.session_id
    await expire_session_async(a)
    await _until(lambda: a.connected and a.session_id != old_session)
    await _until(lambda: len(cache.instances()) == 3 and all(
        True for _ in cache.instances()))
    seen: list[Any] = []
    while len([c for c in seen if isinstance(c, Added)]) < 3:
        seen.append(await asyncio.wait_for(stream.__anext__(), 10))
    kinds = [type(c).__name__ for c in seen]
    assert kinds.count("Removed") == 3 and kinds.count("Added") == 3
    # Each instance was removed before it was added back.
    for inst in instances:
        order = [type(c).__name__ for c in seen if c.instance.id == inst.id]
        assert order == ["Removed", "Added"]
    for inst in instances:
        _, stat = await b.get(f"{zk_path}/services/web/{inst.id}")
        assert stat.ephemeral_owner == a.session_id
    await reg.close()
    await disc.close()


async def test_plain_reconnect_causes_no_flap(
    make_client: Any, fault_proxy: Any, zk_path: str
) -> None:
    a = await make_client(fault_proxy.connect_string, session_timeout=2.0)
    b = await make_client()
    reg = ServiceRegistry(a, f"{zk_path}/services")
    disc = ServiceDiscovery(b, f"{zk_path}/services")
    cache = await disc.cache("web")
    inst = ServiceInstance(name="web", address="10.1.1.1", port=80)
    await reg.register(inst)
    await _until(lambda: len(cache.instances()) == 1)
    stream = cache.changes()
    await stream.__anext__()
    session = a.session_id
    fault_proxy.blackhole()
    await _until(lambda: not a.connected, 5)
    fault_proxy.pass_through()
    await _until(lambda: a.connected, 10)
    assert a.session_id == session
    await asyncio.sleep(0.5)  # give any flap time to show
    pending = []
    while True:
        try:
            pending.append(await asyncio.wait_for(stream.__anext__(), 0.2))
        except TimeoutError:
            break
    assert not any(isinstance(c, (Added, Removed)) for c in pending), pending
    _, stat = await b.get(f"{zk_path}/services/web/{inst.id}")
    assert stat.ephemeral_owner == session and stat.version == 0
    await reg.close()
    await disc.close()


async def test_unregister_racing_inflight_create_leaves_nothing(
    make_client: Any, fault_proxy: Any, zk_path: str
) -> None:
    a = await make_client(fault_proxy.connect_string, session_timeout=4.0)
    b = await make_client()
    fault_proxy.delay(0.005)
    reg = ServiceRegistry(a, f"{zk_path}/services")
    await b.ensure_path(f"{zk_path}/services/race")
    for i in range(200):
        inst = ServiceInstance(name="race", id=f"i{i}", address="h", port=1)
        await reg.register(inst, wait=False)
        await asyncio.sleep((i % 5) * 0.002)
        await reg.unregister(inst)
    assert await b.get_children(f"{zk_path}/services/race") == []
    await reg.close()


async def test_close_racing_inflight_create_leaves_nothing(
    make_client: Any, fault_proxy: Any, zk_path: str
) -> None:
    b = await make_client()
    await b.ensure_path(f"{zk_path}/services/race")
    fault_proxy.delay(0.01)
    for i in range(20):
        a = await make_client(fault_proxy.connect_string, session_timeout=4.0)
        reg = ServiceRegistry(a, f"{zk_path}/services")
        await reg.register(ServiceInstance(name="race", id=f"c{i}", address="h", port=1),
                           wait=False)
        await asyncio.sleep((i % 4) * 0.005)
        await reg.close()
        await a.close()
    assert await b.get_children(f"{zk_path}/services/race") == []


async def test_instances_of_many_read_in_batches(make_client: Any, zk_path: str) -> None:
    # 150 instances: read with multiRead batches (ZooKeeper >= 3.6), one garbage node among
    # them skipped, the result the same as reading node by node.
    base = f"{zk_path}/services"
    writer, reader = await make_client(), await make_client()
    reg = ServiceRegistry(writer, base)
    expected = [ServiceInstance(name="big", id=f"i{n:03d}", address="a", port=n)
                for n in range(150)]
    await asyncio.gather(*(reg.register(i) for i in expected))
    await writer.create(f"{base}/big/zz-garbage", b"not json")
    disc = ServiceDiscovery(reader, base)
    found = await disc.instances("big")
    assert found == expected
    assert disc._multi_read is True  # the batched path was taken
    one_by_one = [
        await reader.get(f"{base}/big/{i.id}") for i in expected
    ]
    assert [disc.format.decode("big", i.id, d) for i, (d, _) in zip(expected, one_by_one,
                                                                 strict=True)] == found
    await reg.close()
