"""Case 8 (rules 4 and 5): close() while a reconnect is in progress, and while an
ephemeral create is in flight through a slow link. Afterwards the node does not exist
and the server knows no session of the client (dump/cons and another client agree)."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import pytest

from zkwarden import AsyncClient, ClientState, errors
from zkwarden.testing import FaultProxy, ZooKeeperServer

from ._support import LoopErrors, StateLog, WarningLog, report, wait_for

pytestmark = pytest.mark.asyncio

SESSION_TIMEOUT = 4.0
#: close() must return within this, whatever the network does (rule 4).
CLOSE_BOUND = 5.0


async def _assert_nothing_left(
    server: ZooKeeperServer, observer: AsyncClient, session_id: int, path: str
) -> None:
    assert await observer.exists(path) is None
    assert session_id not in server.sessions()
    assert session_id not in server.ephemerals()
    assert not [line for line in server.cons() if f"sid=0x{session_id:x}" in line]


@pytest.mark.parametrize("phase", ["backoff", "handshake"])
async def test_close_while_reconnecting(
    chaos_server: ZooKeeperServer,
    chaos_proxy: FaultProxy,
    observer: AsyncClient,
    zk_path: str,
    zk_warnings: WarningLog,
    phase: Literal["backoff", "handshake"],
) -> None:
    loop_errors = LoopErrors().install()
    client = AsyncClient(chaos_proxy.connect_string, session_timeout=SESSION_TIMEOUT)
    states = StateLog().attach(client)
    await client.start()
    session_id = client.session_id
    assert session_id is not None
    eph = f"{zk_path}/eph"
    await client.create(eph, ephemeral=True, makepath=True)
    assert session_id in chaos_server.sessions()
    attempts0 = client.connect_attempts
    accepted0 = chaos_proxy.stats().accepted

    if phase == "backoff":
        # Connections are accepted and closed at once: the client fails, backs off, retries.
        chaos_proxy.accept_then_close(True)
        chaos_proxy.reset()
        await wait_for(lambda: client.connect_attempts >= attempts0 + 3, SESSION_TIMEOUT,
                       "a few failed reconnect attempts")
    else:
        # A slow link: the reconnect's handshake is still on its way when close() comes.
        chaos_proxy.delay(0.4)
        chaos_proxy.reset()
        await wait_for(lambda: chaos_proxy.stats().accepted > accepted0, 2,
                       "the reconnect's TCP connection")
    waiting = asyncio.create_task(client.get(eph))
    await asyncio.sleep(0)
    # The network lets the close through again; nothing runs on this loop between that
    # and close() (the proxy calls block it), so the client is still reconnecting.
    if phase == "backoff":
        chaos_proxy.accept_then_close(False)
    assert client.state is ClientState.SUSPENDED and not client.connected
    t0 = time.monotonic()
    await asyncio.wait_for(client.close(), CLOSE_BOUND + 1)
    close_s = time.monotonic() - t0
    assert close_s <= CLOSE_BOUND, close_s

    with pytest.raises(errors.ClientClosedError):
        await asyncio.wait_for(waiting, 1)
    assert client.state is ClientState.CLOSED
    assert states.states[-1] is ClientState.CLOSED
    assert ClientState.LOST not in states.states
    await _assert_nothing_left(chaos_server, observer, session_id, eph)
    assert not zk_warnings.errors()
    assert not loop_errors.contexts, loop_errors.messages()
    report(
        f"8-close-while-reconnecting-{phase}",
        close_s=close_s,
        connect_attempts=client.connect_attempts - attempts0,
        warnings=len(zk_warnings.between(t0)),
    )


@pytest.mark.parametrize("delay", [0.3, 0.9])
async def test_close_with_ephemeral_create_in_flight(
    chaos_server: ZooKeeperServer,
    chaos_proxy: FaultProxy,
    observer: AsyncClient,
    zk_path: str,
    zk_warnings: WarningLog,
    delay: float,
) -> None:
    loop_errors = LoopErrors().install()
    client = AsyncClient(chaos_proxy.connect_string, session_timeout=SESSION_TIMEOUT)
    await client.start()
    session_id = client.session_id
    assert session_id is not None
    await observer.ensure_path(zk_path)
    eph = f"{zk_path}/eph"
    chaos_proxy.delay(delay)
    create = asyncio.create_task(client.create(eph, b"x", ephemeral=True))
    await wait_for(lambda: client._engine.machine.pending_count >= 1, 2, "create sent")
    await asyncio.sleep(0)  # the batched writer flushes it to the socket
    t0 = time.monotonic()
    await asyncio.wait_for(client.close(), CLOSE_BOUND + 1)
    close_s = time.monotonic() - t0
    assert close_s <= CLOSE_BOUND, close_s

    # The create either landed before the close (and then went with the session) or
    # failed because of the close; nothing else, and nothing hangs.
    outcome = await asyncio.wait_for(asyncio.gather(create, return_exceptions=True), 1)
    assert outcome[0] == eph or isinstance(outcome[0], errors.ClientClosedError), outcome
    chaos_proxy.pass_through()
    await _assert_nothing_left(chaos_server, observer, session_id, eph)
    assert not zk_warnings.errors()
    assert not loop_errors.contexts, loop_errors.messages()
    report(
        f"8-close-create-in-flight-delay-{delay}",
        close_s=close_s,
        create_outcome=type(outcome[0]).__name__,
        warnings=len(zk_warnings.between(t0)),
    )
