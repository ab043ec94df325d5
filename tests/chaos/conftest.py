"""Fixtures of the resilience suite.

The shared ``zk_server`` caps sessions at 2 s (20 ticks); the chaos cases need longer
sessions too (a blackhole *shorter* than the session timeout must still be longer than
the 2/3 read timeout, with room to spare), so they share a server of their own that
allows up to 20 s. Every test gets its own proxy and paths, so tests can run in
parallel under pytest-xdist (one server per worker).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from zkwarden import AsyncClient
from zkwarden.testing import FaultProxy, ZooKeeperServer

from ._support import WarningLog, capture_warnings


@pytest.fixture(scope="package")
def chaos_server() -> Iterator[ZooKeeperServer]:
    """A ZooKeeper server (tick 0.1 s) granting session timeouts of 0.2–20 s."""
    server = ZooKeeperServer(max_session_timeout=20.0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def chaos_proxy(chaos_server: ZooKeeperServer) -> Iterator[FaultProxy]:
    """A FaultProxy of this test alone in front of ``chaos_server``."""
    if not chaos_server.running:
        chaos_server.start()
    with FaultProxy(chaos_server.connect_string) as proxy:
        yield proxy


@pytest.fixture
def own_server() -> Iterator[ZooKeeperServer]:
    """A server of this test alone (to restart or wipe), sessions up to 20 s.

    Like ``zk_fresh_server``, but that one caps sessions at 2 s: shorter than a JVM
    restart, so no session could ever be resumed across one.
    """
    server = ZooKeeperServer(max_session_timeout=20.0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def observer(chaos_server: ZooKeeperServer) -> AsyncIterator[AsyncClient]:
    """A client connected straight to ``chaos_server``: the outside view of the truth."""
    client = AsyncClient(chaos_server.connect_string, session_timeout=10.0)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def zk_warnings() -> Iterator[WarningLog]:
    """WARNING+ records of the ``zkwarden`` loggers during the test."""
    with capture_warnings() as handler:
        yield handler
