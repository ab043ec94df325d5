"""Sessions: expiry, reconnect backoff, close(), resume across an ensemble."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from typing import Any

import pytest

from zkwarden import AsyncClient, ClientState, ClientStateChange, errors
from zkwarden._aio.retry import backoff_delay
from zkwarden.testing import expire_session_async

pytestmark = pytest.mark.asyncio


async def test_expiry_reports_lost_once_and_opens_new_session(
    zk_hosts: str, zk_path: str, zk2: Any
) -> None:
    client = AsyncClient(zk_hosts, session_timeout=2.0)
    changes: list[ClientStateChange] = []
    client.add_listener(changes.append)
    await client.start()
    old_id = client.session_id
    await client.create(f"{zk_path}/eph", ephemeral=True, makepath=True)
    stream = client.watch(f"{zk_path}/eph")
    await stream.__anext__()
    waiter = asyncio.create_task(stream.__anext__())
    await expire_session_async(client)
    deadline = time.monotonic() + 10
    while not (client.connected and client.session_id not in (None, old_id)):
        assert time.monotonic() < deadline, f"no new session: {changes}"
        await asyncio.sleep(0.05)
    states = [c.state for c in changes]
    assert states.count(ClientState.LOST) == 1
    lost = next(c for c in changes if c.state is ClientState.LOST)
    assert lost.session_id == old_id
    reconnected = changes[-1]
    assert reconnected.state is ClientState.CONNECTED and reconnected.new_session
    assert reconnected.session_id == client.session_id != old_id
    with pytest.raises(errors.SessionExpiredError):
        await asyncio.wait_for(waiter, 5)
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    # The old session's ephemeral is gone; the client works on its new session.
    assert await zk2.exists(f"{zk_path}/eph") is None
    await client.create(f"{zk_path}/eph2", ephemeral=True)
    await client.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_backoff_schedule_cpu_and_log_volume(caplog: pytest.LogCaptureFixture) -> None:
    port = _free_port()  # nothing listens there
    client = AsyncClient(f"127.0.0.1:{port}", session_timeout=4.0)
    seed = 1234
    client._supervisor.rng = random.Random(seed)
    caplog.set_level(logging.WARNING, logger="zkwarden")
    cpu0 = time.process_time()
    await client.start(wait=False)
    await asyncio.sleep(10.0)
    attempts = client.connect_attempts
    cpu = time.process_time() - cpu0
    await client.close()
    # The same seeded schedule, computed: how many attempts start within 10 s.
    rng = random.Random(seed)
    t, expected, attempt = 0.0, 0, 0
    while True:
        t += backoff_delay(attempt, 0.1, 10.0, rng)
        if t > 10.0:
            break
        expected += 1
        attempt += 1
    assert abs(attempts - expected) <= 1, (attempts, expected)
    assert attempts < 20  # capped exponential, not a fixed-interval storm
    assert cpu < 0.2, f"CPU {cpu:.3f}s while waiting to reconnect"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 8, [r.getMessage() for r in warnings]


async def test_close_fails_pending_and_is_idempotent(zk_hosts: str, fault_proxy: Any,
                                                     zk_path: str) -> None:
    client = AsyncClient(fault_proxy.connect_string, session_timeout=4.0)
    await client.start()
    fault_proxy.blackhole()
    pending = [asyncio.create_task(client.get("/")) for _ in range(20)]
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    await asyncio.gather(client.close(), client.close())
    assert time.monotonic() - t0 < 5.0
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert all(isinstance(r, errors.ClientClosedError) for r in results), results
    await client.close()
    assert client.state is ClientState.CLOSED
    with pytest.raises(errors.ClientClosedError):
        await client.get("/")


async def test_close_from_watch_consumer_removes_session_and_ephemerals(
    zk_server: Any, zk_hosts: str, zk_path: str, zk2: Any
) -> None:
    client = AsyncClient(zk_hosts, session_timeout=4.0)
    await client.start()
    session_id = client.session_id
    await client.create(f"{zk_path}/mine", ephemeral=True, makepath=True)
    assert session_id in zk_server.sessions()

    async def consume() -> None:
        async for event in client.watch(f"{zk_path}/trigger"):
            if event.exists:
                await client.close()  # from inside the consumer of a stream

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    await zk2.create(f"{zk_path}/trigger", b"")
    with pytest.raises(errors.ClientClosedError):
        await asyncio.wait_for(task, 5)
    # Gone at once, not after a session timeout.
    assert await zk2.exists(f"{zk_path}/mine") is None
    assert session_id not in zk_server.sessions()


async def test_resume_on_another_ensemble_member(zk_ensemble: Any, zk_path: str) -> None:
    client = AsyncClient(zk_ensemble.connect_string, session_timeout=6.0)
    await client.start()
    other = AsyncClient(zk_ensemble.connect_string, session_timeout=6.0)
    await other.start()
    try:
        session_id = client.session_id
        await client.create(f"{zk_path}/eph", b"", ephemeral=True, makepath=True)
        await other.create(f"{zk_path}/watched", b"0")
        stream = client.watch(f"{zk_path}/watched")
        await stream.__anext__()
        host = client.current_host
        assert host is not None
        index = next(i for i, m in enumerate(zk_ensemble.members) if m.port == host.port)
        in_flight = [asyncio.create_task(client.get(f"{zk_path}/watched")) for _ in range(200)]
        await asyncio.to_thread(zk_ensemble.stop_member, index)
        results = await asyncio.wait_for(asyncio.gather(*in_flight, return_exceptions=True), 15)
        assert all(
            isinstance(r, (tuple, errors.ConnectionLossError)) for r in results
        ), {type(r) for r in results}
        deadline = time.monotonic() + 15
        while not client.connected:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert client.session_id == session_id
        assert client.current_host is not None and client.current_host.port != host.port
        assert await other.exists(f"{zk_path}/eph") is not None
        await other.set(f"{zk_path}/watched", b"1")
        event = await asyncio.wait_for(stream.__anext__(), 10)
        assert event.data == b"1"
    finally:
        await client.close()
        await other.close()
        await asyncio.to_thread(zk_ensemble.start_member, index)


async def test_close_whose_close_session_is_lost_still_closes_the_session(
    fault_proxy: Any, zk_server: Any, zk_path: str, zk2: Any
) -> None:
    client = AsyncClient(fault_proxy.connect_string, session_timeout=4.0)
    await client.start()
    session_id = client.session_id
    await client.create(f"{zk_path}/eph", ephemeral=True, makepath=True)
    fault_proxy.blackhole(discard=True)  # the CloseSession bytes are lost for good
    closing = asyncio.create_task(client.close())
    await asyncio.sleep(0.3)
    fault_proxy.pass_through()  # the network is back while close() waits for a reply
    await asyncio.wait_for(closing, 10)
    # The client closed the session from a new connection: gone now, not after a timeout.
    assert session_id not in zk_server.sessions()
    assert await zk2.exists(f"{zk_path}/eph") is None
