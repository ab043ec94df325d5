from __future__ import annotations

from collections.abc import Iterator

import pytest

from zkwarden import Client


@pytest.fixture
def zk(zk_hosts: str) -> Iterator[Client]:
    client = Client(zk_hosts, session_timeout=4.0)
    client.start()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def observer(zk_hosts: str) -> Iterator[Client]:
    """A second, independent client that checks what the first one left on the server."""
    client = Client(zk_hosts, session_timeout=4.0)
    client.start()
    try:
        yield client
    finally:
        client.close()
