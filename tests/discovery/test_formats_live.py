"""Each registry format through ServiceRegistry → ZooKeeper → ServiceDiscovery and a cache."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from zkwarden.discovery import ServiceDiscovery, ServiceInstance, ServiceRegistry, get_format

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize(
    ("fmt", "name", "extra"),
    [
        ("curator", "web", {"payload": {"region": "eu"}, "zone": "eu-1", "weight": 5}),
        ("rpcx", "Arith", {"metadata": {"tps": "100"}, "tags": ("test",), "weight": 10}),
        ("dubbo", "com.example.DemoService",
         {"metadata": {"application": "demo", "version": "1.0.0"}, "weight": 100}),
    ],
)
async def test_format_roundtrip_through_zookeeper(
    make_client: Any, zk_path: str, fmt: str, name: str, extra: dict[str, Any]
) -> None:
    base = f"{zk_path}/{fmt}"
    writer, reader = await make_client(), await make_client()
    registry = ServiceRegistry(writer, base, fmt)
    discovery = ServiceDiscovery(reader, base, fmt)
    cache = await discovery.cache(name)
    inst = ServiceInstance(name=name, address="10.0.0.7", port=20880, **extra)
    expected = get_format(fmt).canonical(inst)
    await registry.register(inst)
    assert await discovery.names() == [name]
    assert await discovery.instances(name) == [expected]
    deadline = time.monotonic() + 5
    while cache.instances() != [expected]:
        assert time.monotonic() < deadline, cache.instances()
        await asyncio.sleep(0.01)
    await registry.unregister(inst)
    assert await discovery.instances(name) == []
    await registry.close()
    await discovery.close()
