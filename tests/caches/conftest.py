"""Fixtures and helpers of the cache tests (real ZooKeeper throughout)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest

from zkwarden import AsyncClient, Stat
from zkwarden.caches import NodeAdded, NodeRemoved, NodeUpdated, Resynced
from zkwarden.errors import NoNodeError

ClientFactory = Callable[..., Awaitable[AsyncClient]]


@pytest.fixture
async def make_client(zk_hosts: str) -> AsyncIterator[ClientFactory]:
    """Start clients on demand (default: the shared server); all closed at the end."""
    made: list[AsyncClient] = []

    async def make(hosts: str | None = None, **kwargs: object) -> AsyncClient:
        kwargs.setdefault("session_timeout", 2.0)
        # The cache tests count watches and reads: the ensemble tracker's own watch and
        # read of /zookeeper/config stay out of them (tests/ensemble covers tracking).
        kwargs.setdefault("track_ensemble", False)
        client = AsyncClient(hosts or zk_hosts, **kwargs)  # type: ignore[arg-type]
        made.append(client)
        await client.start()
        return client

    yield make
    for client in made:
        await client.close()


async def until(predicate: Callable[[], object], timeout: float = 10.0,
                what: str = "condition") -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not met within {timeout}s"
        await asyncio.sleep(0.01)


def replay(changes: list[Any]) -> dict[str, tuple[bytes, Stat]]:
    """The view a subscriber builds from a change stream."""
    view: dict[str, tuple[bytes, Stat]] = {}
    for change in changes:
        if isinstance(change, Resynced):
            view = dict(change.nodes)
        elif isinstance(change, (NodeAdded, NodeUpdated)):
            view[change.path] = (change.data, change.stat)
        elif isinstance(change, NodeRemoved):
            view.pop(change.path, None)
    return view


def data_of(view: Mapping[str, tuple[bytes, Stat]]) -> dict[str, bytes]:
    return {path: node[0] for path, node in view.items()}


async def truth(client: AsyncClient, root: str) -> dict[str, tuple[bytes, Stat]]:
    """A fresh full read of the subtree at ``root`` (what the cache must equal)."""
    out: dict[str, tuple[bytes, Stat]] = {}
    pending = [root]
    while pending:
        path = pending.pop()
        try:
            out[path] = await client.get(path)
            children = await client.get_children(path)
        except NoNodeError:  # deleted between the two reads
            out.pop(path, None)
            continue
        pending.extend(f"{path.rstrip('/')}/{c}" for c in children)
    return out


@pytest.fixture(params=["persistent", "one-shot"])
def mode(request: pytest.FixtureRequest) -> str:
    """The cache's watch mode: both run against the same (3.8) server; one-shot is what
    a cache falls back to on ZooKeeper < 3.6."""
    return str(request.param)
