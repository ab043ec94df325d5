"""Semaphore (Curator InterProcessSemaphoreV2 layout) against a real ZooKeeper: never more
than N holders, all of them used, timeouts and cancellations leave nothing behind."""

from __future__ import annotations

import asyncio
import re

import pytest

from zkwarden import AsyncClient
from zkwarden.errors import InvalidArgumentError, LockReentryError
from zkwarden.recipes.semaphore import Semaphore

from .conftest import ClientFactory
from .test_lock import children, wait_empty

UUID = r"_c_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}-"


async def test_layout(make_client: ClientFactory, zk_path: str) -> None:
    zk = await make_client()
    sem = Semaphore(zk, zk_path, max_leases=2, identifier="py-1")
    async with asyncio.timeout(10):
        async with sem as lease:
            name = lease.node_path.rsplit("/", 1)[1]
            assert lease.node_path == f"{zk_path}/leases/{name}"
            assert re.fullmatch(UUID + r"lease-\d{10}", name)
            assert (await zk.get(lease.node_path))[0] == b"py-1"
            assert sorted(await zk.get_children(zk_path)) == ["leases", "locks"]
            assert await children(zk, f"{zk_path}/locks") == []  # the mutex was let go
            for sub in ("", "/leases", "/locks"):
                stat = await zk.exists(zk_path + sub)
                assert stat is not None and stat.ephemeral_owner == 0
            assert await sem.contenders() == ["py-1"]
            with pytest.raises(LockReentryError):
                await sem.acquire(timeout=1)
        await wait_empty(zk, f"{zk_path}/leases")
    with pytest.raises(InvalidArgumentError):
        Semaphore(zk, zk_path, max_leases=0)


async def test_never_more_than_n(make_client: ClientFactory, zk_path: str) -> None:
    n = 2
    clients = [await make_client() for _ in range(5)]
    state = {"holders": 0, "max": 0, "acquired": 0}
    served: dict[int, int] = {}

    async def worker(i: int, zk: AsyncClient) -> None:
        sem = Semaphore(zk, zk_path, max_leases=n)
        for _ in range(10):
            async with sem:
                state["holders"] += 1
                state["max"] = max(state["max"], state["holders"])
                leases = await zk.get_children(f"{zk_path}/leases")
                assert len(leases) <= n + 1  # the holders, and at most one waiter's node
                await asyncio.sleep(0.01)
                state["holders"] -= 1
                state["acquired"] += 1
                served[i] = served.get(i, 0) + 1

    async with asyncio.timeout(60):
        await asyncio.gather(*(worker(i, zk) for i, zk in enumerate(clients)))
    print(f"\nsemaphore: {state['acquired']} leases, max {n}, "
          f"most held at once {state['max']}")
    assert state["max"] == n  # never more, and the N leases really were used at once
    assert served == {i: 10 for i in range(5)}
    await wait_empty(clients[0], f"{zk_path}/leases")
    await wait_empty(clients[0], f"{zk_path}/locks")


async def test_timeout_and_cancel_leave_nothing(make_client: ClientFactory, zk_path: str) -> None:
    zk, other = await make_client(), await make_client()
    holder = Semaphore(zk, zk_path, max_leases=1)
    waiter = Semaphore(other, zk_path, max_leases=1)
    async with asyncio.timeout(20):
        assert await holder.acquire(timeout=2)
        assert await waiter.acquire(timeout=0.3) is False
        assert len(await zk.get_children(f"{zk_path}/leases")) == 1
        assert await children(zk, f"{zk_path}/locks") == []
        for delay in (0.0, 0.005, 0.02, 0.1):
            task = asyncio.create_task(waiter.acquire())
            await asyncio.sleep(delay)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not waiter.is_acquired
            await wait_empty(zk, f"{zk_path}/locks")
            assert len(await zk.get_children(f"{zk_path}/leases")) == 1
        await holder.release()
        assert await waiter.acquire(timeout=2)
        await waiter.close()
        await holder.close()
        await wait_empty(zk, f"{zk_path}/leases")
