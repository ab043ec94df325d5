"""pytest fixtures for testing against real ZooKeeper servers.

Registered as the ``pytest11`` entry point ``zkwarden``, so installing zkwarden makes the
fixtures available to any test suite.  Under pytest-xdist every worker gets its own
session-scoped server.

Fixtures:

``zk_server``        session-scoped :class:`ZooKeeperServer`, shared by the tests of a worker
``zk_hosts``         its connect string (``"127.0.0.1:PORT"``)
``zk_fresh_server``  function-scoped server, for tests that stop, restart, kill or wipe
``zk_ensemble``      3-member :class:`ZooKeeperEnsemble` living for a module (started on
                     first use); members a test took down are brought back after it
``fault_proxy``      function-scoped :class:`FaultProxy` in front of ``zk_server``
``zk_path``          a unique path prefix (``"/t-<hex>"``) so tests sharing a server never
                     collide; nothing is created on the server
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest

from zkwarden.testing import FaultProxy, ZooKeeperEnsemble, ZooKeeperServer

_log = logging.getLogger("zkwarden.testing")


def _ensure_serving(server: ZooKeeperServer) -> ZooKeeperServer:
    # A test that stopped or killed the shared server by mistake must not break the next.
    if not server.running:
        _log.warning("the shared ZooKeeper server was down; starting it again")
        server.start()
    return server


@pytest.fixture(scope="session")
def zk_server() -> Iterator[ZooKeeperServer]:
    """A real ZooKeeper server shared by all tests of this worker.

    Do not stop, kill, restart or wipe it: use ``zk_fresh_server`` for that.

    Raises:
        ZooKeeperNotFoundError: Java or ZooKeeper is not installed.
        ServerStartError: the server did not start.
    """
    server = ZooKeeperServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def zk_hosts(zk_server: ZooKeeperServer) -> str:
    """Connect string of the shared server, e.g. ``"127.0.0.1:24567"``."""
    return _ensure_serving(zk_server).connect_string


@pytest.fixture
def zk_fresh_server() -> Iterator[ZooKeeperServer]:
    """A real ZooKeeper server of this test alone, stopped and deleted afterwards.

    Raises:
        ZooKeeperNotFoundError: Java or ZooKeeper is not installed.
        ServerStartError: the server did not start.
    """
    server = ZooKeeperServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def _zk_ensemble_module() -> Iterator[ZooKeeperEnsemble]:
    ensemble = ZooKeeperEnsemble(3)
    ensemble.start()
    try:
        yield ensemble
    finally:
        ensemble.stop()


@pytest.fixture
def zk_ensemble(_zk_ensemble_module: ZooKeeperEnsemble) -> Iterator[ZooKeeperEnsemble]:
    """A 3-member ZooKeeper ensemble shared by the tests of one module (started when the
    first test asks for it, stopped after the module).

    Tests may stop or kill members: after each test every member is started again and the
    quorum awaited, so the next test gets all members up.

    Raises:
        ZooKeeperNotFoundError: Java or ZooKeeper is not installed.
        ServerStartError, QuorumError: the ensemble did not form.
    """
    ensemble = _zk_ensemble_module
    ensemble.wait_for_quorum(30.0)
    yield ensemble
    # Bring back whatever the test took down.
    for index, member in enumerate(ensemble.members):
        if not member.running:
            ensemble.start_member(index, wait=False)
    ensemble.wait_for_quorum(30.0)


@pytest.fixture
def fault_proxy(zk_server: ZooKeeperServer) -> Iterator[FaultProxy]:
    """A :class:`FaultProxy` in front of ``zk_server``; connect clients to its
    ``connect_string``.  Closed after the test.

    Raises:
        ProxyError: the proxy could not listen.
    """
    proxy = FaultProxy(_ensure_serving(zk_server).connect_string)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def zk_path() -> str:
    """A path prefix unique to this test, like ``"/t-3f2a…"`` (not created)."""
    return f"/t-{uuid.uuid4().hex}"


# --- client fixtures ---------------------------------------------------------------------
# The AsyncClient/Client fixtures (`client`, `sync_client`, …) are added below this line
# by the client's author; the fixtures above know nothing about clients.
