"""Bursts bigger than the queue bounds (found by bench --scale): a first load of more
nodes than a subscriber may queue, and more events in one burst than the client's
``max_queued_events``. Neither may cost a warning, a copy of the view per subscriber, or
a full re-read of the tree: the view is the truth, read once."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from zkwarden.caches import Resynced, TreeCache

from .conftest import data_of, truth, until

pytestmark = pytest.mark.asyncio

BEHIND = "behind"


async def test_first_load_bigger_than_a_subscribers_queue_is_one_resynced(
        make_client: Any, zk_path: str, caplog: pytest.LogCaptureFixture) -> None:
    writer, reader = await make_client(), await make_client()
    root = f"{zk_path}/big"
    await writer.ensure_path(root)
    async with writer.transaction() as t:
        for i in range(40):
            t.create(f"{root}/n{i:02d}", b"x")
    tree = TreeCache(reader, root, max_queued_changes=10)
    seen: list[Any] = []

    async def follow() -> None:
        async for change in tree.changes():
            seen.append(change)

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0)  # subscribed before the first load
    with caplog.at_level(logging.WARNING):
        await tree.start(timeout=10)
        await until(lambda: any(isinstance(c, Resynced) and len(c.nodes) == 41 for c in seen))
    follower.cancel()
    assert data_of(tree.nodes()) == data_of(await truth(writer, root))
    assert not [r for r in caplog.records if BEHIND in r.getMessage()], caplog.records
    await tree.close()


async def test_a_burst_longer_than_max_queued_events_needs_no_full_reread(
        make_client: Any, zk_path: str, caplog: pytest.LogCaptureFixture) -> None:
    writer = await make_client()
    reader = await make_client(max_queued_events=20)
    root = f"{zk_path}/burst"
    await writer.ensure_path(root)
    tree = await TreeCache(reader, root, watch_mode="persistent", max_nodes=1000).start(timeout=10)
    resyncs = tree.resyncs
    with caplog.at_level(logging.WARNING):
        for start in (0, 150):  # two transactions: 300 events, most in one loop turn
            async with writer.transaction() as t:
                for i in range(start, start + 150):
                    t.create(f"{root}/n{i:03d}", b"v")
        expected = await truth(writer, root)
        await until(lambda: data_of(tree.nodes()) == data_of(expected))
    assert tree.resyncs == resyncs, "a full re-read: the stream overflowed"
    assert not [r for r in caplog.records if BEHIND in r.getMessage()], caplog.records
    await tree.close()
