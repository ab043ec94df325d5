"""get_many: many reads sent at once, answered into one batch (no future per read). Per
path the (data, Stat) or that path's own error, in order; a connection or session error
raises; a call made while disconnected waits for the connection; a cancelled call leaves
the client working."""

from __future__ import annotations

import asyncio
import logging

import pytest

from zkwarden import AsyncClient, ClientState, errors
from zkwarden.testing import FaultProxy

BOUND = 10.0


async def test_results_in_order_with_each_paths_own_error(zk: AsyncClient, zk_path: str) -> None:
    await zk.ensure_path(zk_path)
    for i in range(0, 300, 3):
        await zk.create(f"{zk_path}/n{i}", f"v{i}".encode())
    paths = [f"{zk_path}/n{i}" for i in range(300)]
    async with asyncio.timeout(BOUND):
        many = await zk.get_many(paths)
    assert len(many) == 300
    for i, item in enumerate(many):
        if i % 3 == 0:
            assert not isinstance(item, BaseException) and item[0] == f"v{i}".encode()
            assert item[1].data_length == len(f"v{i}")
        else:
            assert isinstance(item, errors.NoNodeError)
    assert await zk.get_many([]) == []
    with pytest.raises(errors.InvalidPathError):
        await zk.get_many([f"{zk_path}/n0", "relative"])
    await zk.delete(zk_path, recursive=True)


async def _proxied(proxy: FaultProxy) -> AsyncClient:
    zk = AsyncClient(proxy.connect_string, session_timeout=4.0, track_ensemble=False)
    await zk.start()
    return zk


async def test_connection_lost_with_reads_in_flight_raises_connection_loss(
        fault_proxy: FaultProxy, zk_path: str) -> None:
    zk = await _proxied(fault_proxy)
    try:
        await zk.create(zk_path, b"x")
        fault_proxy.blackhole("downstream")
        call = asyncio.ensure_future(zk.get_many([zk_path] * 100))
        await asyncio.sleep(0.2)
        assert not call.done()
        fault_proxy.reset()  # the held replies go with the connection
        with pytest.raises(errors.ConnectionLossError):
            async with asyncio.timeout(BOUND):
                await call
        fault_proxy.pass_through()
        async with asyncio.timeout(BOUND):
            await zk.wait_connected()
            assert [item[0] for item in await zk.get_many([zk_path] * 3)] == [b"x"] * 3
        await zk.delete(zk_path)
    finally:
        await zk.close()


async def test_a_call_made_while_disconnected_waits_for_the_connection(
        fault_proxy: FaultProxy, zk_path: str) -> None:
    zk = await _proxied(fault_proxy)
    try:
        await zk.create(zk_path, b"x")
        changes = zk.state_changes()
        fault_proxy.refuse_connections()
        fault_proxy.reset()
        async with asyncio.timeout(BOUND):
            async for change in changes:
                if change.state is not ClientState.CONNECTED:
                    break
        call = asyncio.ensure_future(zk.get_many([zk_path, f"{zk_path}/absent"]))
        await asyncio.sleep(0.3)
        assert not call.done()
        fault_proxy.refuse_connections(False)
        async with asyncio.timeout(BOUND):
            data_stat, absent = await call
        assert not isinstance(data_stat, BaseException) and data_stat[0] == b"x"
        assert isinstance(absent, errors.NoNodeError)
        await zk.delete(zk_path)
    finally:
        await zk.close()


async def test_a_cancelled_call_leaves_the_client_working(
        fault_proxy: FaultProxy, zk_path: str, caplog: pytest.LogCaptureFixture) -> None:
    zk = await _proxied(fault_proxy)
    try:
        await zk.create(zk_path, b"x")
        fault_proxy.delay(0.3)
        call = asyncio.ensure_future(zk.get_many([zk_path] * 50))
        await asyncio.sleep(0.1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        fault_proxy.delay(0)
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            async with asyncio.timeout(BOUND):
                assert (await zk.get_many([zk_path]))[0][0] == b"x"  # type: ignore[index]
                await asyncio.sleep(0.5)  # the late replies of the cancelled call arrive
            assert zk.state is ClientState.CONNECTED
        assert not [r for r in caplog.records if r.name == "asyncio"], caplog.records
        await zk.delete(zk_path)
    finally:
        await zk.close()
