from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from zkwarden import AsyncClient


@pytest.fixture
async def zk(zk_hosts: str) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(zk_hosts, session_timeout=4.0)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def zk2(zk_hosts: str) -> AsyncIterator[AsyncClient]:
    """A second, independent client (another session) on the same server."""
    client = AsyncClient(zk_hosts, session_timeout=4.0)
    await client.start()
    try:
        yield client
    finally:
        await client.close()
