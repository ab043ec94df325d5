"""The AsyncFacade test adapter (tests/_sync_adapter.py) behaves like an AsyncClient."""

from __future__ import annotations

import asyncio

import pytest
from _sync_adapter import AsyncFacade

from zkwarden import Client, EventType, errors


async def test_facade_operations_and_streams(zk_hosts: str, zk_path: str) -> None:
    async with AsyncFacade(Client(zk_hosts, session_timeout=4.0)) as zk:
        await zk.create(f"{zk_path}/a", b"1", makepath=True)
        assert (await zk.get(f"{zk_path}/a"))[0] == b"1"
        async with zk.transaction() as t:
            t.set(f"{zk_path}/a", b"2")
        assert t.results is not None and t.results[0].version == 1
        stream = zk.watch(f"{zk_path}/a", "data")
        first = await stream.__anext__()
        assert first.type is EventType.NONE and first.data == b"2"
        persistent = await zk.add_watch(zk_path)
        assert (await persistent.__anext__()).type is EventType.NONE
        await zk.set(f"{zk_path}/a", b"3")
        event = await asyncio.wait_for(stream.__anext__(), 2)
        assert event.type is EventType.NODE_DATA_CHANGED and event.data == b"3"
        changed = await asyncio.wait_for(persistent.__anext__(), 2)
        assert changed.path == f"{zk_path}/a"
        await persistent.aclose()
        with pytest.raises(errors.InvalidPathError):
            zk.watch("bad", "data")
    # Closing ends the stream with one exception, then StopAsyncIteration.
    with pytest.raises(errors.ClientClosedError):
        await asyncio.wait_for(stream.__anext__(), 2)
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
