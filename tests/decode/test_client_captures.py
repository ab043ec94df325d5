"""Captures of other clients' traffic (tcpdump on loopback, a real ZooKeeper): kazoo and
the Java client (through Curator) run a scripted workload; every frame they exchange
with the server decodes, every request is paired with its reply, the decoded requests are
the workload's, and these well-behaved clients are not flagged."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.states import WatchedEvent

from zkwarden.decode import DecodeResult, decode_file
from zkwarden.testing import ZooKeeperServer

from ._capture import Capture, assert_all_decoded_and_paired


@pytest.fixture(scope="module")
def server() -> Iterator[ZooKeeperServer]:
    """A server of its own granting 10 s sessions: a JVM starting beside it on a loaded
    2-core machine stalls longer than the default 2 s maximum session tolerates, and a
    session lost to that would put a reconnect in a capture meant to be clean."""
    with ZooKeeperServer(max_session_timeout=10.0) as zk:
        yield zk


def _requests(result: DecodeResult) -> list[tuple[str, str | None]]:
    """The client's requests in order, without the keep-alive pings."""
    return [(f.op, f.path) for f in result.frames
            if f.direction == "request" and f.op != "ping"]


def test_kazoo_workload_decodes_paired_and_unflagged(server: ZooKeeperServer, tmp_path: Path,
                                                     zk_path: str) -> None:
    pcap = tmp_path / "kazoo.pcap"
    node = f"{zk_path}/n"
    fired = threading.Event()
    events: list[WatchedEvent] = []

    def watcher(event: WatchedEvent) -> None:
        events.append(event)
        fired.set()

    with Capture(pcap, server.port):
        kz = KazooClient(hosts=server.connect_string, timeout=10.0)
        kz.start(timeout=15)
        try:
            session = kz.client_id[0]
            kz.create(zk_path, b"")
            kz.create(node, b"v1")
            assert kz.get(node, watch=watcher)[0] == b"v1"
            kz.set(node, b"v2")
            assert fired.wait(10), "kazoo was not notified of its setData"
            # a well-behaved client follows the notification with a read that re-arms
            assert kz.get(node, watch=lambda event: None)[0] == b"v2"
            assert kz.get_children(zk_path) == ["n"]
            kz.delete(node)
            kz.delete(zk_path)
        finally:
            kz.stop()
            kz.close()
    assert [e.type for e in events] == ["CHANGED"]

    result = decode_file(str(pcap))
    assert_all_decoded_and_paired(result)
    assert result.findings == []
    assert _requests(result) == [
        ("connect", None),
        ("create", zk_path), ("create", node),
        ("getData", node), ("setData", node),
        ("getData", node),
        ("getChildren", zk_path),
        ("delete", node), ("delete", zk_path),
        ("closeSession", None),
    ]
    reads = [f for f in result.frames if f.direction == "request" and f.op == "getData"]
    assert [(f.details or {}).get("watch") for f in reads] == [True, True]
    children = next(f for f in result.frames if f.op == "getChildren" and f.direction == "request")
    assert children.details == {"watch": False}
    # the first watch fires on the setData, the re-armed one on the delete
    changed, deleted = [f for f in result.frames if f.direction == "event"]
    assert (changed.path, (changed.details or {}).get("type")) == (node, "NodeDataChanged")
    assert (deleted.path, (deleted.details or {}).get("type")) == (node, "NodeDeleted")
    set_data = next(f for f in result.frames if f.op == "setData")
    delete = next(f for f in result.frames if f.op == "delete")
    assert set_data.index < changed.index < reads[1].index < delete.index < deleted.index
    connect = next(f for f in result.frames if f.direction == "reply" and f.op == "connect")
    assert (connect.details or {}).get("session_id") == session
    assert {c.session for c in result.connections} == {session}
    assert all(f.session == session for f in result.frames if f.op != "connect")
    created = [f for f in result.frames if f.direction == "reply" and f.op == "create"]
    assert [(f.details or {}).get("created") for f in created] == [zk_path, node]
    assert all(f.latency_ms is not None and f.latency_ms >= 0
               for f in result.frames if f.direction == "reply")
