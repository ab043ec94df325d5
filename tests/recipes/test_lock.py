"""Lock (Curator InterProcessMutex layout) against a real ZooKeeper: exclusion proven with a
guard node, timeouts and cancellation leave nothing behind, faults around the create,
session loss of waiters and holders, stray children, reaped containers, fencing,
re-entry and revocation."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from zkwarden import AsyncClient
from zkwarden.errors import LeaseLostError, LockReentryError, NodeExistsError
from zkwarden.recipes._curator import REVOKE
from zkwarden.recipes.lock import Lock
from zkwarden.testing import ZooKeeperServer

from .conftest import ClientFactory

NAME = re.compile(r"^_c_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}-lock-\d{10}$")


async def children(zk: AsyncClient, path: str) -> list[str]:
    try:
        names: list[str] = await zk.get_children(path)
    except Exception:  # noqa: BLE001 - NoNode: a reaped container counts as empty
        return []
    return names


async def wait_empty(zk: AsyncClient, path: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (left := await children(zk, path)):
        assert time.monotonic() < deadline, f"nodes left behind in {path}: {left}"
        await asyncio.sleep(0.02)


class Guard:
    """Proves exclusion: only a holder creates the guard node, and deletes it before it
    releases; a NodeExists (or a second local holder) is an overlap."""

    def __init__(self, zk: AsyncClient, path: str) -> None:
        self.zk, self.path = zk, path
        self.holders = 0
        self.overlaps = 0
        self.served: dict[str, int] = {}

    async def enter(self, who: str, zk: AsyncClient | None = None) -> None:
        self.holders += 1
        if self.holders > 1:
            self.overlaps += 1
        try:
            await (zk or self.zk).create(self.path, who.encode())
        except NodeExistsError:
            self.overlaps += 1
        self.served[who] = self.served.get(who, 0) + 1

    async def leave(self, zk: AsyncClient | None = None) -> None:
        self.holders -= 1
        await (zk or self.zk).delete(self.path)


async def test_layout_data_and_contenders(make_client: ClientFactory, zk_path: str) -> None:
    zk = await make_client()
    a, b = Lock(zk, zk_path, identifier="worker-1"), Lock(zk, zk_path, identifier="worker-2")
    async with asyncio.timeout(10):
        async with a as lease:
            (name,) = await zk.get_children(zk_path)
            assert NAME.match(name), name
            assert lease.node_path == f"{zk_path}/{name}"
            data, stat = await zk.get(lease.node_path)
            assert data == b"worker-1"
            assert stat.ephemeral_owner == zk.session_id
            assert lease.fencing_token == stat.czxid
            assert (await zk.exists(zk_path)).ephemeral_owner == 0  # type: ignore[union-attr]
            waiter = asyncio.create_task(b.acquire())
            while len(await zk.get_children(zk_path)) < 2:
                await asyncio.sleep(0.01)
            assert await a.contenders() == ["worker-1", "worker-2"]
        assert await waiter
        assert await b.contenders() == ["worker-2"]
        await b.release()
        await wait_empty(zk, zk_path)


async def test_mutual_exclusion_many_clients(make_client: ClientFactory, zk_path: str) -> None:
    clients = [await make_client() for _ in range(4)]
    guard = Guard(clients[0], f"{zk_path}-guard")
    rounds = 25
    tokens: list[int] = []

    async def contender(i: int, zk: AsyncClient) -> None:
        lock = Lock(zk, zk_path, identifier=f"c{i}")
        for _ in range(rounds):
            async with lock as lease:
                tokens.append(lease.fencing_token)
                await guard.enter(f"c{i}", zk)
                await asyncio.sleep(0)
                await guard.leave(zk)

    async with asyncio.timeout(60):
        await asyncio.gather(*(contender(i, zk) for i, zk in enumerate(clients)))
    print(f"\nmutex: {len(tokens)} acquisitions by {len(clients)} clients, "
          f"overlaps={guard.overlaps}")
    assert guard.overlaps == 0
    assert guard.served == {f"c{i}": rounds for i in range(len(clients))}
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)  # strictly increasing
    await wait_empty(clients[0], zk_path)


async def test_acquire_timeout_leaves_no_node(make_client: ClientFactory, zk_path: str) -> None:
    holder_zk, waiter_zk = await make_client(), await make_client()
    holder, waiter = Lock(holder_zk, zk_path), Lock(waiter_zk, zk_path)
    async with asyncio.timeout(10):
        assert await holder.acquire(timeout=1.0)
        start = time.monotonic()
        assert await waiter.acquire(timeout=0.3) is False
        assert 0.25 < time.monotonic() - start < 3.0
        assert not waiter.is_acquired
        assert len(await holder_zk.get_children(zk_path)) == 1  # the holder's only
        assert await waiter.acquire(timeout=0) is False
        assert len(await holder_zk.get_children(zk_path)) == 1
        await holder.release()
        assert await waiter.acquire(timeout=1.0)
        await waiter.release()
        await wait_empty(holder_zk, zk_path)


async def test_reentry_raises(make_client: ClientFactory, zk_path: str) -> None:
    zk = await make_client()
    lock = Lock(zk, zk_path)
    async with asyncio.timeout(10):
        async with lock:
            with pytest.raises(LockReentryError):
                await lock.acquire(timeout=1.0)
            with pytest.raises(LockReentryError):
                async with lock:
                    pass
            assert len(await zk.get_children(zk_path)) == 1
        # another task on the same object queues (and is served) as a separate contender
        async with lock:
            other = asyncio.create_task(lock.acquire(timeout=0.2))
            assert await other is False
        assert await asyncio.create_task(lock.acquire(timeout=1.0))
        await lock.close()
        await wait_empty(zk, zk_path)


async def test_fencing_tokens_increase_and_guarded_transaction(
    make_client: ClientFactory, zk_path: str
) -> None:
    zk1, zk2 = await make_client(), await make_client()
    resource = f"{zk_path}-resource"
    await zk1.create(resource, b"")
    tokens = []
    async with asyncio.timeout(10):
        for zk in (zk1, zk2, zk1, zk2):
            async with Lock(zk, zk_path) as lease:
                tokens.append(lease.fencing_token)
                results = await lease.transaction().set(resource, str(lease.fencing_token)
                                                         .encode()).commit()
                assert len(results) == 1
        assert tokens == sorted(set(tokens))
        assert (await zk1.get(resource))[0] == str(tokens[-1]).encode()

        # a lease whose node is gone cannot write through the guard
        lock = Lock(zk1, zk_path)
        assert await lock.acquire(timeout=1.0)
        lease = lock.lease
        assert lease is not None
        await zk2.delete(lease.node_path)  # e.g. an operator, or the session ended
        with pytest.raises(LeaseLostError):
            async with lock.guarded_transaction() as txn:
                txn.set(resource, b"stale")
        assert (await zk1.get(resource))[0] == str(tokens[-1]).encode()
        assert lease.lost.is_set()
        await lock.release()
        assert lease.released.is_set()


async def test_revocation_notifies_holder(make_client: ClientFactory, zk_path: str) -> None:
    zk, other = await make_client(), await make_client()
    told: list[str] = []
    lock = Lock(zk, zk_path, on_revoke=lambda lease: told.append(lease.node_path))
    async with asyncio.timeout(10):
        async with lock as lease:
            await Lock.revoke(other, lease.node_path)
            await asyncio.wait_for(lease.revoked.wait(), 5)
            assert told == [lease.node_path]
            assert not lease.lost.is_set()  # revocation is a request, not a loss
            assert (await other.get(lease.node_path))[0] == REVOKE
        await wait_empty(other, zk_path)


async def test_node_deleted_under_holder_is_lost(make_client: ClientFactory, zk_path: str) -> None:
    zk, other = await make_client(), await make_client()
    async with asyncio.timeout(10):
        async with Lock(zk, zk_path) as lease:
            await other.delete(lease.node_path)
            await asyncio.wait_for(lease.lost.wait(), 5)
            assert not lease.held
