from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from zkwarden import AsyncClient, Client


async def _started(kind: str, hosts: str) -> Any:
    # These tests look at the client's own watch tables ("nothing left behind"): the
    # ensemble tracker's watch on /zookeeper/config (tests/ensemble covers it) stays out.
    if kind == "sync":
        # The same test bodies through the blocking facade (tests/_sync_adapter.py).
        from _sync_adapter import AsyncFacade

        facade = AsyncFacade(Client(hosts, session_timeout=4.0, track_ensemble=False))
        await facade.start()
        return facade
    client = AsyncClient(hosts, session_timeout=4.0, track_ensemble=False)
    await client.start()
    return client


@pytest.fixture
def client_kind() -> str:
    """Which client the ``zk``/``zk2`` fixtures give; test_operations runs both."""
    return "async"


@pytest.fixture
async def zk(zk_hosts: str, client_kind: str) -> AsyncIterator[Any]:
    client = await _started(client_kind, zk_hosts)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def zk2(zk_hosts: str, client_kind: str) -> AsyncIterator[Any]:
    """A second, independent client (another session) on the same server."""
    client = await _started(client_kind, zk_hosts)
    try:
        yield client
    finally:
        await client.close()
