"""A first load of more nodes than a subscriber may queue (found by bench --scale) costs
no warning and no copy of the view per subscriber: the subscriber gets one Resynced."""

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
