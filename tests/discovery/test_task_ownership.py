"""Every background task of the registry and the cache has an owner (issue 11).

After ``close()`` no task of the registry, cache or discovery is left pending, and a
background task that fails has its exception logged (with its traceback), not lost.
Real ZooKeeper throughout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from _tasks_support import package_dirs, tasks_running_code_of

import zkwarden.discovery as discovery_pkg
from zkwarden.discovery import ServiceDiscovery, ServiceInstance, ServiceRegistry
from zkwarden.discovery.formats import CuratorFormat
from zkwarden.errors import ZooKeeperError

pytestmark = pytest.mark.asyncio

DISCOVERY_DIRS = package_dirs(discovery_pkg)


def discovery_tasks() -> list[asyncio.Task[Any]]:
    """Pending tasks running code of zkwarden.discovery (whoever created them)."""
    return tasks_running_code_of(DISCOVERY_DIRS)


def failures(caplog: pytest.LogCaptureFixture, exc_type: type[BaseException]) -> list[Any]:
    return [
        r for r in caplog.records
        if r.levelno >= logging.ERROR and r.exc_info and isinstance(r.exc_info[1], exc_type)
    ]


async def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class Boom(RuntimeError):
    """A bug in a background task (not a ZooKeeper outcome)."""


async def test_registry_close_leaves_no_task(make_client: Any, zk_path: str) -> None:
    zk = await make_client()
    reg = ServiceRegistry(zk, f"{zk_path}/services")
    insts = [ServiceInstance(name="web", id=f"i{n}", address="a", port=n) for n in range(5)]
    async with asyncio.timeout(10):
        for inst in insts[:3]:
            await reg.register(inst)
        for inst in insts[3:]:
            await reg.register(inst, wait=False)  # still in flight at close
        await reg.close()
    assert discovery_tasks() == []
    assert await zk.get_children(f"{zk_path}/services/web") == []


async def test_registry_task_failure_is_logged_and_raised(
    make_client: Any, zk_path: str, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    zk = await make_client()
    real_create = zk.create
    broken = True

    async def create(path: str, *args: Any, **kwargs: Any) -> str:
        if broken and "/web/" in path:
            raise Boom("create failed in a way ZooKeeper never reports")
        return await real_create(path, *args, **kwargs)

    monkeypatch.setattr(zk, "create", create)
    reg = ServiceRegistry(zk, f"{zk_path}/services")
    inst = ServiceInstance(name="web", id="x", address="a", port=1)
    caplog.set_level(logging.ERROR)
    async with asyncio.timeout(10):
        # Old code: the reconcile task died, register() returned as if registered.
        with pytest.raises(ZooKeeperError, match="Boom"):
            await reg.register(inst)
        await until(lambda: failures(caplog, Boom))
        broken = False
        await reg.register(inst)  # the registry still works once the cause is gone
        assert await zk.exists(f"{zk_path}/services/web/x") is not None
        await reg.close()
    assert discovery_tasks() == []
    record = failures(caplog, Boom)[0]
    assert "register" in record.getMessage()


class FlakyFormat(CuratorFormat):
    """Curator layout whose decode raises (a bug in a user's format) while ``broken``."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = True
        self.calls = 0

    def decode(self, name: str, node_name: str, data: bytes) -> ServiceInstance | None:
        self.calls += 1
        if self.broken:
            raise Boom(f"cannot decode {node_name}")
        return super().decode(name, node_name, data)


async def test_cache_task_failure_is_logged_and_cache_recovers(
    make_client: Any, zk_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    base = f"{zk_path}/services"
    zk = await make_client()
    reg = ServiceRegistry(zk, base)
    inst = ServiceInstance(name="web", id="a", address="a", port=1)
    caplog.set_level(logging.ERROR)
    fmt = FlakyFormat()
    disc = ServiceDiscovery(zk, base, format=fmt)
    async with asyncio.timeout(15):
        await reg.register(inst)
        cache = await disc.cache("web", wait=False)
        # Old code: the watch task died of Boom; nothing logged, the cache never loads.
        await until(lambda: failures(caplog, Boom))
        assert cache.stale
        assert cache.instances() == []
        fmt.broken = False
        await cache.wait_ready(10)
        assert [i.id for i in cache.instances()] == ["a"]
        assert not cache.stale
        await disc.close()
        await reg.close()
    assert discovery_tasks() == []


async def test_discovery_close_ends_provider_and_cache_tasks(
    make_client: Any, zk_path: str
) -> None:
    base = f"{zk_path}/services"
    zk = await make_client()
    disc = ServiceDiscovery(zk, base)
    async with asyncio.timeout(10):
        await disc.cache("web")
        disc.provider("api")  # started in the background, from synchronous code
        disc.provider("db")
        await asyncio.sleep(0)
        tasks = discovery_tasks()
        assert tasks, "the caches' watch loops should be running"
        # Every running task says who owns it (old code: anonymous "Task-N" tasks).
        assert all(t.get_name().startswith("cache ") for t in tasks), [
            t.get_name() for t in tasks
        ]
        await disc.close()
    assert discovery_tasks() == []


async def test_provider_then_immediate_close_leaves_nothing(
    make_client: Any, zk_path: str
) -> None:
    zk = await make_client()
    disc = ServiceDiscovery(zk, f"{zk_path}/services")
    disc.provider("web")  # no await in between: close() must still own its start
    async with asyncio.timeout(10):
        await disc.close()
        for _ in range(3):
            await asyncio.sleep(0.01)  # give a fire-and-forget start the chance to run
    assert discovery_tasks() == []
