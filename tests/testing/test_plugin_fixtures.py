"""The pytest plugin's fixtures, as a test suite sees them."""

from __future__ import annotations

import pytest

from zkwarden.testing import FaultProxy, ZooKeeperServer

_seen_paths: set[str] = set()


def test_zk_hosts_is_the_shared_server(zk_hosts: str, zk_server: ZooKeeperServer) -> None:
    assert zk_hosts == zk_server.connect_string
    assert zk_server.running


def test_fresh_server_is_not_the_shared_one(
    zk_fresh_server: ZooKeeperServer, zk_server: ZooKeeperServer
) -> None:
    assert zk_fresh_server.port != zk_server.port
    assert zk_fresh_server.mode() == "standalone"


def test_fault_proxy_fronts_the_shared_server(
    fault_proxy: FaultProxy, zk_server: ZooKeeperServer, raw_zk
) -> None:
    conn = raw_zk(fault_proxy.host, fault_proxy.port)
    session = conn.handshake().session_id
    assert session in zk_server.sessions()


@pytest.mark.parametrize("attempt", range(3))
def test_zk_path_is_unique(zk_path: str, attempt: int) -> None:
    assert zk_path.startswith("/t-") and "/" not in zk_path[1:]
    assert zk_path not in _seen_paths
    _seen_paths.add(zk_path)


def test_plugin_registered_once(pytestconfig: pytest.Config) -> None:
    manager = pytestconfig.pluginmanager
    plugin = manager.get_plugin("zkwarden")
    assert plugin is not None
    assert [p for p in manager.get_plugins() if p is plugin] == [plugin]
