"""Case 6: a corrupted or truncated frame from the server. The connection is dropped
(ProtocolError internally), the session resumes on a new one, the callers of the
affected operations get ConnectionLossError, and nothing crashes."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import pytest

from zkwarden import AsyncClient, ClientState, errors
from zkwarden.testing import FaultProxy

from ._support import LoopErrors, StateLog, WarningLog, report, wait_for

pytestmark = pytest.mark.asyncio

Fault = Literal["payload", "length", "truncate"]
SESSION_TIMEOUT = 4.0


def _arm(proxy: FaultProxy, fault: Fault) -> None:
    if fault == "truncate":
        proxy.truncate_next_frame()
    else:
        proxy.corrupt_next_frame(fault)


async def _connected_client(proxy: FaultProxy, path: str) -> tuple[AsyncClient, StateLog]:
    client = AsyncClient(proxy.connect_string, session_timeout=SESSION_TIMEOUT)
    states = StateLog().attach(client)
    await client.start()
    await client.create(f"{path}/data", b"payload", makepath=True)
    await client.create(f"{path}/eph", ephemeral=True)
    return client, states


async def _assert_resumed(
    client: AsyncClient, states: StateLog, session_id: int | None, path: str
) -> None:
    assert client.session_id == session_id
    assert states.states == [
        ClientState.CONNECTED, ClientState.SUSPENDED, ClientState.CONNECTED
    ], states.changes
    assert not states.changes[-1].new_session
    data, _ = await asyncio.wait_for(client.get(f"{path}/data"), 5)
    assert data == b"payload"
    stat = await client.exists(f"{path}/eph")
    assert stat is not None and stat.ephemeral_owner == session_id


@pytest.mark.parametrize("fault", ["payload", "length", "truncate"])
async def test_bad_reply_frame(
    chaos_proxy: FaultProxy, zk_path: str, zk_warnings: WarningLog, fault: Fault
) -> None:
    loop_errors = LoopErrors().install()
    client, states = await _connected_client(chaos_proxy, zk_path)
    try:
        session_id = client.session_id
        # Nothing is in flight now, so the next server frame is the first reply below.
        await client.exists("/")
        _arm(chaos_proxy, fault)
        t0 = time.monotonic()
        affected = [asyncio.create_task(client.get(f"{zk_path}/data")) for _ in range(10)]
        results = await asyncio.wait_for(
            asyncio.gather(*affected, return_exceptions=True), SESSION_TIMEOUT
        )
        failed_after = time.monotonic() - t0
        assert all(isinstance(r, errors.ConnectionLossError) for r in results), results
        await wait_for(states.connected_again(t0), SESSION_TIMEOUT, "reconnect")
        recovery = time.monotonic() - t0
        await _assert_resumed(client, states, session_id, zk_path)
        protocol_errors = zk_warnings.matching("protocol error")
        if fault == "truncate":
            # Half a frame, then FIN: a plain disconnect, seen at once.
            assert failed_after < 1.0, failed_after
        else:
            assert len(protocol_errors) == 1, zk_warnings.between(t0)
        assert not zk_warnings.errors()
        assert not loop_errors.contexts, loop_errors.messages()
        report(
            f"6-bad-reply-{fault}",
            callers_failed=len(results),
            failed_after_s=failed_after,
            recovery_s=recovery,
            protocol_errors=len(protocol_errors),
            warnings=len(zk_warnings.between(t0)),
        )
    finally:
        await client.close()


@pytest.mark.parametrize("fault", ["payload", "length", "truncate"])
async def test_bad_handshake_frame(
    chaos_proxy: FaultProxy, zk_path: str, zk_warnings: WarningLog, fault: Fault
) -> None:
    """The reply to a reconnect's ConnectRequest is the bad frame: that attempt fails,
    the next one resumes the session."""
    loop_errors = LoopErrors().install()
    client, states = await _connected_client(chaos_proxy, zk_path)
    try:
        session_id = client.session_id
        attempts0 = client.connect_attempts
        _arm(chaos_proxy, fault)
        t0 = time.monotonic()
        chaos_proxy.reset()
        await wait_for(states.reached(ClientState.SUSPENDED), 1, "SUSPENDED")
        await wait_for(states.connected_again(t0), SESSION_TIMEOUT, "reconnect")
        recovery = time.monotonic() - t0
        attempts = client.connect_attempts - attempts0
        assert attempts == 2, attempts  # the spoiled one, then the good one
        assert client._engine.supervisor is not None and not client._engine.supervisor.done()
        await _assert_resumed(client, states, session_id, zk_path)
        assert not zk_warnings.errors()
        assert not loop_errors.contexts, loop_errors.messages()
        report(
            f"6-bad-handshake-{fault}",
            recovery_s=recovery,
            connect_attempts=attempts,
            warnings=len(zk_warnings.between(t0)),
        )
    finally:
        await client.close()
