"""Read-only mode against a real ensemble that lost its quorum; close at interpreter exit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from zkwarden import AsyncClient, ClientState, errors
from zkwarden.testing import ZooKeeperEnsemble


@pytest.mark.asyncio
async def test_read_only_server_gives_read_only_state() -> None:
    # A read-only server can only open local sessions (creating a global one is a write).
    ensemble = ZooKeeperEnsemble(
        3, read_only_mode=True, extra_config={"localSessionsEnabled": "true"}
    )
    await asyncio.to_thread(ensemble.start)
    try:
        async with AsyncClient(ensemble.connect_string, session_timeout=4.0) as writer:
            await writer.create("/ro-data", b"kept")
        survivor = 0
        for index in (1, 2):
            await asyncio.to_thread(ensemble.stop_member, index)
        client = AsyncClient(ensemble.member_connect_string(survivor), session_timeout=4.0,
                             read_only=True)
        states: list[ClientState] = []
        client.add_listener(lambda change: states.append(change.state))
        await client.start(timeout=30)
        try:
            deadline = time.monotonic() + 30
            while client.state is not ClientState.READ_ONLY:
                assert time.monotonic() < deadline, states
                await asyncio.sleep(0.1)
            data, _ = await client.get("/ro-data")
            assert data == b"kept"
            with pytest.raises(errors.NotReadOnlyError):
                await client.create("/ro-write", b"")
            # The server refuses a write at once, ahead of the reads sent before it: the
            # refusal may overtake their replies, and that is no broken connection.
            reconnects = client.reconnects
            for _ in range(20):
                read, write = await asyncio.gather(
                    client.get("/ro-data"), client.create("/ro-write", b""),
                    return_exceptions=True)
                assert isinstance(write, errors.NotReadOnlyError), write
                assert not isinstance(read, BaseException) and read[0] == b"kept", read
            assert client.state is ClientState.READ_ONLY and client.reconnects == reconnects
        finally:
            await client.close()
        # Without read_only=True a read-only server is not acceptable: no session.
        strict = AsyncClient(ensemble.member_connect_string(survivor), session_timeout=2.0)
        with pytest.raises(errors.ConnectionLossError):
            await strict.start(timeout=3)
    finally:
        await asyncio.to_thread(ensemble.stop)


def test_client_left_open_is_closed_at_exit(zk_hosts: str, zk_path: str, zk_server: Any) -> None:
    script = textwrap.dedent(f"""
        import asyncio
        from zkwarden import AsyncClient

        async def main():
            zk = AsyncClient({zk_hosts!r}, session_timeout=2.0)
            await zk.start()
            await zk.create({zk_path + "/left-open"!r}, b"", ephemeral=True, makepath=True)
            print(hex(zk.session_id), flush=True)
            # no close(): the interpreter exits with the session open

        asyncio.run(main())
    """)
    t0 = time.monotonic()
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=30, check=True, env=env)
    assert time.monotonic() - t0 < 10
    session_id = int(out.stdout.strip(), 16)
    # Gone at once, not after the session timeout.
    assert session_id not in zk_server.sessions()
    with_children = zk_server.ephemerals()
    assert session_id not in with_children
