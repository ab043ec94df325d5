"""Reconnects through a FaultProxy: resume, SetWatches catch-up, state reporting."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from zkwarden import AsyncClient, ClientState, ClientStateChange, EventType, errors

pytestmark = pytest.mark.asyncio


async def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_change_during_disconnect_is_delivered_after_resume(
    fault_proxy: Any, zk2: Any, zk_path: str
) -> None:
    client = AsyncClient(fault_proxy.connect_string, session_timeout=4.0)
    changes: list[ClientStateChange] = []
    client.add_listener(changes.append)
    await client.start()
    session_id = client.session_id
    await client.create(f"{zk_path}/w", b"before", makepath=True)
    await client.create(f"{zk_path}/eph", ephemeral=True)
    data_stream = client.watch(f"{zk_path}/w")
    child_stream = client.watch(zk_path, "children")
    await data_stream.__anext__()
    await child_stream.__anext__()

    fault_proxy.accept_then_close(True)
    fault_proxy.reset()
    await _wait_for(lambda: client.state is ClientState.SUSPENDED)
    await zk2.set(f"{zk_path}/w", b"during")
    await zk2.create(f"{zk_path}/new-child", b"")
    await asyncio.sleep(0.3)
    fault_proxy.accept_then_close(False)
    fault_proxy.pass_through()

    event = await asyncio.wait_for(data_stream.__anext__(), 10)
    assert event.type is EventType.NODE_DATA_CHANGED and event.data == b"during"
    child_event = await asyncio.wait_for(child_stream.__anext__(), 10)
    assert "new-child" in child_event.children
    assert client.session_id == session_id
    assert [c.state for c in changes] == [
        ClientState.CONNECTED, ClientState.SUSPENDED, ClientState.CONNECTED
    ]
    assert changes[-1].new_session is False
    assert await zk2.exists(f"{zk_path}/eph") is not None
    await client.close()


async def test_server_closing_socket_is_a_disconnect_at_once(
    fault_proxy: Any, zk_path: str
) -> None:
    client = AsyncClient(fault_proxy.connect_string, session_timeout=10.0)
    await client.start()
    fault_proxy.accept_then_close(True)
    t0 = time.monotonic()
    fault_proxy.reset()
    await _wait_for(lambda: client.state is ClientState.SUSPENDED, 2.0)
    # Far sooner than the read timeout (2/3 of 10 s).
    assert time.monotonic() - t0 < 1.0
    fault_proxy.accept_then_close(False)
    await _wait_for(lambda: client.connected, 10.0)
    await client.close()


async def test_in_flight_requests_fail_with_connection_loss_on_blackhole(
    fault_proxy: Any,
) -> None:
    client = AsyncClient(fault_proxy.connect_string, session_timeout=3.0)
    await client.start()
    fault_proxy.blackhole()
    t0 = time.monotonic()
    with pytest.raises(errors.ConnectionLossError):
        await asyncio.wait_for(client.get("/"), 10)
    # Detected by the read timeout: 2/3 of the negotiated 3 s.
    elapsed = time.monotonic() - t0
    assert 1.0 < elapsed < 3.5, elapsed
    fault_proxy.pass_through()
    await _wait_for(lambda: client.connected, 10.0)
    await client.close()


async def test_connected_means_persistent_watches_are_restored(
    fault_proxy: Any, zk2: Any, zk_path: str
) -> None:
    client = AsyncClient(fault_proxy.connect_string, session_timeout=4.0)
    await client.start()
    await client.ensure_path(f"{zk_path}/p")
    stream = await client.add_watch(f"{zk_path}/p", recursive=True)
    assert (await stream.__anext__()).type is EventType.NONE
    fault_proxy.delay(0.05)  # SetWatches2 takes a while to reach the server
    writes: list[asyncio.Task[Any]] = []

    def on_change(change: ClientStateChange) -> None:
        if change.state is ClientState.CONNECTED:
            # Another client changes the subtree the moment we report CONNECTED.
            writes.append(asyncio.create_task(zk2.create(f"{zk_path}/p/right-after", b"")))

    client.add_listener(on_change)
    fault_proxy.reset()
    await _wait_for(lambda: bool(writes), 10)
    await writes[0]
    seen = []
    while not any(e.path == f"{zk_path}/p/right-after" for e in seen):
        seen.append(await asyncio.wait_for(stream.__anext__(), 5))
    assert seen[0].type is EventType.NONE  # the reconnect marker comes first
    await client.close()
