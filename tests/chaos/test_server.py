"""Case 3: the (single) server restarts. With its data kept the client resumes its
session; with the data wiped the session is LOST and a new one opens by itself."""

from __future__ import annotations

import asyncio
import time

import pytest

from zkwarden import AsyncClient, ClientState, EventType, errors
from zkwarden.testing import ZooKeeperServer

from ._support import (
    CpuMeter,
    LoopErrors,
    StateLog,
    WarningLog,
    anext_within,
    report,
    wait_for,
)

pytestmark = pytest.mark.asyncio


async def test_server_restart_keeps_data_and_session(
    own_server: ZooKeeperServer, zk_path: str, zk_warnings: WarningLog
) -> None:
    loop_errors = LoopErrors().install()
    # Longer than a JVM restart (~1–2 s here), so the session can outlive it.
    session_timeout = 8.0
    client = AsyncClient(own_server.connect_string, session_timeout=session_timeout)
    states = StateLog().attach(client)
    await client.start()
    try:
        session_id = client.session_id
        data, eph = f"{zk_path}/data", f"{zk_path}/eph"
        await client.create(data, b"v0", makepath=True)
        await client.create(eph, ephemeral=True)
        stream = client.watch(data)
        assert (await anext_within(stream, 5)).data == b"v0"
        attempts0 = client.connect_attempts
        cpu = CpuMeter()
        t0 = time.monotonic()
        await asyncio.to_thread(own_server.restart)
        t_up = time.monotonic()
        await wait_for(states.connected_again(t0), session_timeout, "resume after restart")
        t_seen = time.monotonic()
        recovery = t_seen - t_up
        cpu_s = cpu.elapsed()
        # Bounded by one handshake timeout (a connection the server accepted while still
        # starting up may never be answered: ZooKeeper 3.8 fails to close it) plus one
        # backoff step, capped at a third of the session timeout while it may be alive.
        handshake_timeout = max(session_timeout / 3, 0.5)
        assert recovery <= handshake_timeout + session_timeout / 3 + 0.5, recovery

        assert client.session_id == session_id
        assert states.states == [
            ClientState.CONNECTED, ClientState.SUSPENDED, ClientState.CONNECTED
        ], (states.timeline(t0), "up", t_up - t0, "seen", t_seen - t0, client.state)
        assert not states.changes[-1].new_session
        async with AsyncClient(own_server.connect_string, session_timeout=4.0) as other:
            stat = await other.exists(eph)
            assert stat is not None and stat.ephemeral_owner == session_id
            assert (await other.get(data))[0] == b"v0"
            # The watch made before the restart still works.
            await other.set(data, b"v1")
            event = await anext_within(stream, 5)
            assert event.type is EventType.NODE_DATA_CHANGED and event.data == b"v1"
        await stream.aclose()
        assert session_id in own_server.sessions()
        assert not zk_warnings.errors()
        assert not loop_errors.contexts, loop_errors.messages()
        report(
            "3-server-restart",
            session_timeout=session_timeout,
            restart_s=t_up - t0,
            recovery_s=recovery,
            reconnected_after_s=(states.times[-1] - t0),
            cpu_s=cpu_s,
            warnings=len(zk_warnings.between(t0)),
            connect_attempts=client.connect_attempts - attempts0,
        )
    finally:
        await client.close()


async def test_server_wiped_loses_session_then_opens_new_one(
    own_server: ZooKeeperServer, zk_path: str, zk_warnings: WarningLog
) -> None:
    loop_errors = LoopErrors().install()
    session_timeout = 2.0
    client = AsyncClient(own_server.connect_string, session_timeout=session_timeout)
    states = StateLog().attach(client)
    await client.start()
    try:
        old_session = client.session_id
        data, eph = f"{zk_path}/data", f"{zk_path}/eph"
        await client.create(data, b"v0", makepath=True)
        await client.create(eph, ephemeral=True)
        # Enough writes that the client has seen a zxid far ahead of an empty server's.
        for i in range(20):
            await client.set(data, str(i).encode())
        stream = client.watch(data)
        await anext_within(stream, 5)
        ending = asyncio.create_task(anext_within(stream, 30))
        attempts0 = client.connect_attempts
        cpu = CpuMeter()
        t0 = time.monotonic()
        await asyncio.to_thread(own_server.wipe)
        t_up = time.monotonic()
        await wait_for(
            lambda: states.connected_again(t0)() and client.session_id != old_session,
            session_timeout + 10.0 + 2.0, "new session on the wiped server",
        )
        recovery = time.monotonic() - t_up
        cpu_s = cpu.elapsed()
        new_session = client.session_id

        assert states.count(ClientState.LOST) == 1, states.changes
        assert states.states[-1] is ClientState.CONNECTED and states.changes[-1].new_session
        assert states.changes[-1].session_id == new_session
        lost = next(c for c in states.changes if c.state is ClientState.LOST)
        assert lost.session_id == old_session
        with pytest.raises(errors.SessionExpiredError):
            await ending
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        # The server is empty; the client works on it with its new session.
        assert await client.exists(zk_path) is None
        await client.create(eph, ephemeral=True, makepath=True)
        stat = await client.exists(eph)
        assert stat is not None and stat.ephemeral_owner == new_session
        assert old_session not in own_server.sessions()
        assert not zk_warnings.errors()
        assert not loop_errors.contexts, loop_errors.messages()
        report(
            "3-server-wiped",
            session_timeout=session_timeout,
            wipe_s=t_up - t0,
            reconnected_after_s=(states.times[-1] - t0),
            lost_confirmed=lost.confirmed,
            lost_after_s=(states.first_time(ClientState.LOST) or t0) - t0,
            recovery_s=recovery,
            cpu_s=cpu_s,
            warnings=len(zk_warnings.between(t0)),
            connect_attempts=client.connect_attempts - attempts0,
        )
    finally:
        await client.close()
