"""ReadWriteLock (Curator InterProcessReadWriteLock 5.4 layout) against a real ZooKeeper:
readers share, a writer excludes everyone, a queued writer is not starved by later readers,
upgrade refused, downgrade granted."""

from __future__ import annotations

import asyncio
import random
import re

import pytest

from zkwarden import AsyncClient
from zkwarden.errors import LockReentryError, NodeExistsError
from zkwarden.recipes.rwlock import ReadWriteLock, rw_order

from .conftest import ClientFactory
from .test_lock import count_is, wait_empty

UUID = r"_c_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}-"


async def wait_children(zk: AsyncClient, path: str, count: int) -> None:
    await count_is(zk, path, count)


async def test_layout_and_order(make_client: ClientFactory, zk_path: str) -> None:
    zk = await make_client()
    rw = ReadWriteLock(zk, zk_path, identifier="py")
    async with asyncio.timeout(10):
        async with rw.write as lease:
            assert re.fullmatch(UUID + r"__WRIT__\d{10}", lease.node_path.rsplit("/", 1)[1])
            assert (await zk.get(lease.node_path))[0] == b"py"
        async with rw.read as lease:
            assert re.fullmatch(UUID + r"__READ__\d{10}", lease.node_path.rsplit("/", 1)[1])
    # Curator's comparator: the suffix after the marker, a stray name as a whole
    names = ["_c_x-__WRIT__0000000003", "zzz", "_c_y-__READ__0000000001", "0000000002"]
    assert sorted(names, key=rw_order) == [
        "_c_y-__READ__0000000001", "0000000002", "_c_x-__WRIT__0000000003", "zzz"]


async def test_readers_share(make_client: ClientFactory, zk_path: str) -> None:
    clients = [await make_client() for _ in range(3)]
    locks = [ReadWriteLock(zk, zk_path).read for zk in clients]
    async with asyncio.timeout(10):
        for lock in locks:
            assert await lock.acquire(timeout=2.0)
        assert len(await clients[0].get_children(zk_path)) == 3
        writer = ReadWriteLock(clients[0], zk_path).write
        assert await asyncio.create_task(writer.acquire(timeout=0.3)) is False
        for lock in locks:
            await lock.release()
        assert await writer.acquire(timeout=2.0)
        await writer.release()
        await wait_empty(clients[0], zk_path)


async def test_writer_excludes_mixed_load(make_client: ClientFactory, zk_path: str) -> None:
    clients = [await make_client() for _ in range(4)]
    guard = f"{zk_path}-guard"
    state = {"readers": 0, "writers": 0, "violations": 0, "max_readers": 0}
    counts = {"read": 0, "write": 0}
    rng = random.Random(7)

    async def worker(zk: AsyncClient, rounds: int) -> None:
        rw = ReadWriteLock(zk, zk_path)
        for _ in range(rounds):
            if rng.random() < 0.4:
                async with rw.write:
                    state["writers"] += 1
                    if state["writers"] > 1 or state["readers"]:
                        state["violations"] += 1
                    try:
                        await zk.create(guard)
                    except NodeExistsError:
                        state["violations"] += 1
                    await asyncio.sleep(0.002)
                    await zk.delete(guard)
                    state["writers"] -= 1
                    counts["write"] += 1
            else:
                async with rw.read:
                    state["readers"] += 1
                    state["max_readers"] = max(state["max_readers"], state["readers"])
                    if state["writers"] or await zk.exists(guard) is not None:
                        state["violations"] += 1
                    await asyncio.sleep(0.005)
                    state["readers"] -= 1
                    counts["read"] += 1

    async with asyncio.timeout(60):
        await asyncio.gather(*(worker(zk, 20) for zk in clients))
    print(f"\nrwlock: {counts['read']} reads, {counts['write']} writes, "
          f"max concurrent readers {state['max_readers']}, violations {state['violations']}")
    assert state["violations"] == 0
    assert counts["read"] + counts["write"] == 80
    assert state["max_readers"] > 1  # readers really shared
    await wait_empty(clients[0], zk_path)


async def test_queued_writer_not_starved(make_client: ClientFactory, zk_path: str) -> None:
    z1, z2, z3 = await make_client(), await make_client(), await make_client()
    r1, w, r2 = (ReadWriteLock(z1, zk_path).read, ReadWriteLock(z2, zk_path).write,
                 ReadWriteLock(z3, zk_path).read)
    async with asyncio.timeout(10):
        assert await r1.acquire(timeout=2)
        writer = asyncio.create_task(w.acquire())
        await wait_children(z1, zk_path, 2)
        # a reader that comes after the queued writer waits for it (Curator's order)
        assert await asyncio.create_task(r2.acquire(timeout=0.3)) is False
        late_reader = asyncio.create_task(r2.acquire())
        await wait_children(z1, zk_path, 3)
        await asyncio.sleep(0.1)
        assert not writer.done() and not late_reader.done()
        await r1.release()
        assert await writer
        await asyncio.sleep(0.1)
        assert not late_reader.done()
        await w.release()
        assert await late_reader
        await r2.release()
        await wait_empty(z1, zk_path)


async def test_upgrade_refused_downgrade_granted(make_client: ClientFactory, zk_path: str) -> None:
    zk, other = await make_client(), await make_client()
    rw = ReadWriteLock(zk, zk_path)
    async with asyncio.timeout(10):
        async with rw.read:
            with pytest.raises(LockReentryError):
                await rw.write.acquire(timeout=1)
        async with rw.write:
            # someone else queues for writing behind us
            other_writer = asyncio.create_task(ReadWriteLock(other, zk_path).write.acquire())
            await wait_children(zk, zk_path, 2)
            assert await rw.read.acquire(timeout=1)  # downgrade: granted at once
            read_node = rw.read.lease.node_path  # type: ignore[union-attr]
            names = sorted(await zk.get_children(zk_path), key=rw_order)
            # Curator 5.4: the downgraded read node takes a fresh sequence number, after
            # the waiting writer (5.5+ would give it the writer's number, CURATOR-621)
            assert names[-1] == read_node.rsplit("/", 1)[1]
        # so, as with Debian's Curator 5.4, the queued writer goes first once the write
        # lock is released, although the downgraded reader still holds its read lock
        assert await asyncio.wait_for(other_writer, 5)
        assert rw.read.held_by_current_task()
        await rw.read.release()
        await rw.close()
