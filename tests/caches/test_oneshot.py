"""One-shot watch mode and sync_on_reconnect, against real ZooKeeper 3.8 (one-shot forced).

What these prove: the one-shot view equals the truth after random creates, sets and
deletes in a deep tree (paths, data, czxid, mzxid, children, and the view a subscriber
rebuilds from the stream); what one-shot mode costs (server watches and client memory
per node, measured against persistent mode); and ``sync_on_reconnect``: a re-read after
moving to another member of an ensemble starts with one sync() (and only then: not on a
reconnect to the same member, not without the option), what that sync costs, and that
the view after it holds a write acknowledged while the client was moving.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
import tracemalloc
from typing import Any

import pytest

from zkwarden import AsyncClient, Stat
from zkwarden.caches import NodeCache, TreeCache
from zkwarden.errors import NodeExistsError, NoNodeError, NotEmptyError
from zkwarden.testing import FaultProxy, ZooKeeperEnsemble, ZooKeeperServer

from .conftest import replay, truth, until

pytestmark = pytest.mark.asyncio


def _key(view: dict[str, tuple[bytes, Stat]]) -> dict[str, tuple[bytes, int, int]]:
    return {p: (d, s.czxid, s.mzxid) for p, (d, s) in view.items()}


async def _random_ops(client: AsyncClient, root: str, rng: random.Random, seconds: float) -> int:
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        path = root + "".join(f"/{rng.choice('abcd')}" for _ in range(rng.randint(1, 4)))
        op = rng.random()
        try:
            if op < 0.45:
                await client.create(path, rng.randbytes(rng.randint(0, 6)), makepath=True)
            elif op < 0.75:
                await client.set(path, rng.randbytes(rng.randint(0, 6)))
            elif op < 0.95:
                await client.delete(path)
            else:
                await client.delete(path, recursive=True)
            done += 1
        except (NodeExistsError, NoNodeError, NotEmptyError):
            pass
    return done


async def test_one_shot_view_equals_truth_after_random_operations(
    make_client: Any, zk_path: str
) -> None:
    seed = time.time_ns() % 2**32
    print(f"seed={seed}")
    rng = random.Random(seed)
    writers = [await make_client() for _ in range(3)]
    reader = await make_client()
    root = f"{zk_path}/random"
    await writers[0].create(f"{root}/a", b"x", makepath=True)
    tree = await TreeCache(reader, root, watch_mode="one-shot").start(timeout=10)
    node = await NodeCache(reader, f"{root}/a", watch_mode="one-shot").start(timeout=10)
    assert tree.watch_mode_in_use == "one-shot" == node.watch_mode_in_use
    seen: list[Any] = []

    async def follow() -> None:
        async for change in tree.changes():
            seen.append(change)

    follower = asyncio.create_task(follow())
    ops = await asyncio.wait_for(asyncio.gather(
        *(_random_ops(w, root, random.Random(rng.random()), 3.0) for w in writers)), 30)
    assert sum(ops) > 200, ops
    expected = _key(await truth(writers[0], root))
    await until(lambda: _key(tree.nodes()) == expected, 10, "tree equals truth")
    assert not tree.stale
    for path in expected:
        kids = sorted(p.rsplit("/", 1)[1] for p in expected if p.rsplit("/", 1)[0] == path)
        assert tree.children(path) == kids, path
    want_a = expected.get(f"{root}/a")
    await until(lambda: (None if node.get() is None else _key({"": node.get()})[""])  # type: ignore[dict-item]
                == want_a, 10, "node cache equals truth")
    await until(lambda: _key(replay(seen)) == expected, 5, "stream replay equals truth")
    follower.cancel()
    await tree.close()
    await node.close()


async def test_one_shot_cost_in_server_watches_and_client_memory(
    make_client: Any, zk_path: str, zk_server: ZooKeeperServer
) -> None:
    writer = await make_client()
    root = f"{zk_path}/cost"
    fanout = 20
    await writer.create(root, b"", makepath=True)
    await asyncio.gather(*(writer.create(f"{root}/p{i}") for i in range(fanout)))
    await asyncio.gather(*(writer.create(f"{root}/p{i}/c{j}", b"v" * 16)
                           for i in range(fanout) for j in range(fanout)))
    nodes = 1 + fanout + fanout * fanout
    measured: dict[str, tuple[float, float]] = {}
    for mode in ("persistent", "one-shot"):
        reader = await make_client()
        watches_before = int(zk_server.mntr()["zk_watch_count"])
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        tree = await TreeCache(reader, root, watch_mode=mode, max_depth=2).start(timeout=30)  # type: ignore[arg-type]
        assert len(tree) == nodes
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        watches = int(zk_server.mntr()["zk_watch_count"]) - watches_before
        measured[mode] = (watches / nodes, used / nodes)
        print(f"COST mode={mode} nodes={nodes} server_watches={watches} "
              f"({watches / nodes:.2f}/node) client_bytes_per_node={used / nodes:.0f}")
        await tree.close()
        await reader.close()
    # Persistent: one watch for the tree (mntr counts a persistent recursive watch in
    # both the data and the child watch tables: 2). One-shot: a data watch per node plus a child
    # watch per node above max_depth (the leaves have none).
    assert round(measured["persistent"][0] * nodes) <= 2
    assert measured["one-shot"][0] * nodes == nodes + 1 + fanout
    assert measured["one-shot"][1] < 8000  # bytes per watched node, view included


async def test_no_sync_when_reconnecting_to_the_same_member(
    make_client: Any, zk_path: str, fault_proxy: FaultProxy
) -> None:
    client = await make_client(fault_proxy.connect_string, session_timeout=4.0)
    await client.create(f"{zk_path}/s/a", b"1", makepath=True)
    for mode in ("persistent", "one-shot"):
        tree = await TreeCache(client, f"{zk_path}/s", watch_mode=mode,  # type: ignore[arg-type]
                               sync_on_reconnect=True).start(timeout=10)
        resyncs = tree.resyncs
        fault_proxy.reset()
        await until(lambda t=tree, r=resyncs: t.resyncs > r and not t.stale, 10)  # type: ignore[misc]
        assert tree.syncs == 0, mode  # the same member: nothing to catch up with
        await tree.close()


@pytest.mark.parametrize("mode", ["persistent", "one-shot"])
async def test_sync_on_reconnect_to_another_member(
    mode: str, zk_ensemble: ZooKeeperEnsemble, zk_path: str
) -> None:
    leader = zk_ensemble.leader()
    followers = [i for i in range(zk_ensemble.size) if i != leader]
    hosts = ",".join(zk_ensemble.member_connect_string(i) for i in followers)
    writer = AsyncClient(zk_ensemble.member_connect_string(leader), session_timeout=10.0)
    # no tracking: the test moves the client itself and counts the syncs that follows
    client = AsyncClient(hosts, session_timeout=10.0, track_ensemble=False)
    root = f"{zk_path}/sync-{mode}"
    try:
        await writer.start(timeout=20)
        await client.start(timeout=20)
        await writer.create(f"{root}/a", b"1", makepath=True)
        # The client reads from a follower, which may not have applied the create yet.
        await client.sync(root)
        synced = await TreeCache(client, root, watch_mode=mode,  # type: ignore[arg-type]
                                 sync_on_reconnect=True).start(timeout=20)
        plain = await TreeCache(client, root, watch_mode=mode).start(timeout=20)  # type: ignore[arg-type]
        assert synced.syncs == 0  # the first read is not a reconnect

        # What a sync costs on this member, next to a plain read (loopback ensemble).
        rounds = 50
        started = time.perf_counter()
        for _ in range(rounds):
            await client.get(root)
        get_ms = (time.perf_counter() - started) * 1000 / rounds
        started = time.perf_counter()
        for _ in range(rounds):
            await client.sync(root)
        sync_ms = (time.perf_counter() - started) * 1000 / rounds

        current = client.current_host
        assert current is not None
        on = next(i for i in followers
                  if zk_ensemble.member_connect_string(i).endswith(f":{current.port}"))
        await asyncio.to_thread(zk_ensemble.stop_member, on)
        await writer.set(f"{root}/a", b"2")  # acknowledged while the client moves
        await writer.create(f"{root}/b", b"3")
        await until(lambda: client.connected and client.current_host != current, 20)
        await until(lambda: not synced.stale and not plain.stale, 20)
        expected = _key(await truth(writer, root))
        await until(lambda: _key(synced.nodes()) == expected, 10)
        await until(lambda: _key(plain.nodes()) == expected, 10)
        assert synced.syncs == 1 and plain.syncs == 0
        print(f"SYNC mode={mode} get={get_ms:.2f}ms sync={sync_ms:.2f}ms "
              f"sync_before_reread={synced.sync_seconds * 1000:.2f}ms")
        await synced.close()
        await plain.close()
    finally:
        await client.close()
        await writer.close()
