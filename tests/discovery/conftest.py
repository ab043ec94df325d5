from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from zkwarden import AsyncClient

ClientFactory = Callable[..., Awaitable[AsyncClient]]


@pytest.fixture
async def make_client(zk_hosts: str) -> AsyncIterator[ClientFactory]:
    """Start clients on demand (default: the shared server); all closed at the end."""
    made: list[AsyncClient] = []

    async def make(hosts: str | None = None, **kwargs: object) -> AsyncClient:
        kwargs.setdefault("session_timeout", 2.0)
        client = AsyncClient(hosts or zk_hosts, **kwargs)  # type: ignore[arg-type]
        made.append(client)
        await client.start()
        return client

    yield make
    for client in made:
        await client.close()
