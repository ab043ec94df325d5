"""Captures of other clients' traffic (tcpdump on loopback, a real ZooKeeper): kazoo and
the Java client (through Curator) run a scripted workload; every frame they exchange
with the server decodes, every request is paired with its reply, the decoded requests are
the workload's, and these well-behaved clients are not flagged."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from interop.curator import build_tool
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


def _ops_of(result: DecodeResult, connection: int, direction: str = "request"
           ) -> list[tuple[str, str | None]]:
    return [(f.op, f.path) for f in result.frames
            if f.connection == connection and f.direction == direction and f.op != "ping"]


def _in_order(expected: list[tuple[str, str | None]], seen: list[tuple[str, str | None]]
              ) -> bool:
    """``expected`` is a subsequence of ``seen`` (other frames may come between)."""
    it = iter(seen)
    return all(step in it for step in expected)


def test_curator_workload_decodes_paired_and_unflagged(server: ZooKeeperServer, tmp_path: Path,
                                                       zk_path: str) -> None:
    # Three JVMs, three sessions: a ServiceCache (Curator 5 watches with a persistent
    # recursive addWatch, then reads without watches: no watch-gap there), a registration
    # (ephemeral create2, setData, delete) and a one-shot query (getChildren2, getData).
    tool = build_tool()
    pcap = tmp_path / "curator.pcap"
    base = f"{zk_path}/services"
    web = f"{base}/web"
    instance = f"{web}/a"
    connect = server.connect_string
    with Capture(pcap, server.port):
        with tool.cache(connect, base, "web") as cache:
            assert cache.last == []
            with tool.register(connect, base, "web", "a", "10.0.0.1", 80, None) as inst:
                cache.wait_for(lambda view: [i["id"] for i in view] == ["a"])
                inst.update({"v": 2})
                cache.wait_for(lambda view: bool(view) and view[0]["payload"] == {"v": 2})
                assert inst.data() is not None
                assert [i["id"] for i in tool.query(connect, base, "web")] == ["a"]
                inst.unregister()
                cache.wait_for(lambda view: view == [])

    result = decode_file(str(pcap))
    assert_all_decoded_and_paired(result)
    assert result.findings == []
    assert len(result.connections) == 3
    assert all(c.established for c in result.connections)
    assert len({c.session for c in result.connections}) == 3
    numbers = {c.number for c in result.connections}
    for n in numbers:
        requests = _ops_of(result, n)
        assert requests[0] == ("connect", None) and requests[-1] == ("closeSession", None)
        assert not [op for op, _ in requests if op[0].isdigit() or op == "unknown"]
    by_role: dict[str, int] = {}
    for n in numbers:
        ops_seen = {op for op, _ in _ops_of(result, n)}
        role = "cache" if "addWatch" in ops_seen else "register" if "create2" in ops_seen \
            else "query"
        by_role[role] = n
    assert set(by_role) == {"cache", "register", "query"}
    cache_conn, reg_conn, query_conn = by_role["cache"], by_role["register"], by_role["query"]
    assert _in_order([("createContainer", zk_path), ("createContainer", base),
                      ("createContainer", web), ("addWatch", web),
                      ("getChildren2", web), ("getData", instance), ("getData", instance)],
                     _ops_of(result, cache_conn))
    add_watch = next(f for f in result.frames if f.op == "addWatch")
    assert add_watch.details == {"mode": "persistentRecursive"}
    assert [(f.path, (f.details or {}).get("type")) for f in result.frames
            if f.direction == "event"] == [(instance, "NodeCreated"),
                                           (instance, "NodeDataChanged"),
                                           (instance, "NodeDeleted")]
    assert {f.connection for f in result.frames if f.direction == "event"} == {cache_conn}
    assert _in_order([("create2", instance), ("setData", instance), ("exists", instance),
                      ("getData", instance), ("delete", instance)], _ops_of(result, reg_conn))
    create = next(f for f in result.frames if f.op == "create2" and f.direction == "request")
    assert (create.details or {}).get("flags") == 1  # ephemeral
    assert _in_order([("getChildren2", web), ("getData", instance)],
                     _ops_of(result, query_conn))
    children = next(f for f in result.frames if f.connection == query_conn
                    and f.op == "getChildren2" and f.direction == "reply")
    assert children.details == {"children": 1}
