"""Fixtures of the recipe tests: one server per package (per xdist worker) allowing
session timeouts of 0.2-20 s, a factory of clients closed at the end of each test, and a
path of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from zkwarden import AsyncClient
from zkwarden.testing import ZooKeeperServer

ClientFactory = Callable[..., Awaitable[AsyncClient]]


@pytest.fixture(scope="package")
def recipe_server() -> Iterator[ZooKeeperServer]:
    """A ZooKeeper server (tick 0.1 s) granting session timeouts of 0.2-20 s."""
    server = ZooKeeperServer(max_session_timeout=20.0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def make_client(recipe_server: ZooKeeperServer) -> AsyncIterator[ClientFactory]:
    """``await make_client(connect_string=None, session_timeout=4.0, **options)``: a started
    client (on ``recipe_server`` unless told otherwise), closed when the test ends."""
    if not recipe_server.running:
        recipe_server.start()
    clients: list[AsyncClient] = []

    async def make(connect_string: str | None = None, session_timeout: float = 4.0,
                   **options: object) -> AsyncClient:
        # The recipe tests count watches on the server: the ensemble tracker's own watch on
        # /zookeeper/config is kept out of them (tests/ensemble covers tracking).
        options.setdefault("track_ensemble", False)
        client = AsyncClient(connect_string or recipe_server.connect_string,
                             session_timeout=session_timeout, **options)  # type: ignore[arg-type]
        clients.append(client)
        await client.start(timeout=10.0)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()
