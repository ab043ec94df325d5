"""Captures of real traffic (tcpdump on loopback, a real ZooKeeper): every frame decodes,
every request is paired, the decoded sequence is the workload's, each incident pattern is
flagged on a capture made to show it, and clean captures are not flagged."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zkwarden import Client
from zkwarden.decode import DecodeResult, decode_file
from zkwarden.protocol import ops
from zkwarden.testing import FaultProxy, ZooKeeperServer, expire_session

from ._capture import Capture, RawClient, assert_all_decoded_and_paired


@pytest.fixture
def server(zk_server: ZooKeeperServer) -> ZooKeeperServer:
    return zk_server


def _frames(result: DecodeResult) -> list[tuple[str, str, str | None]]:
    return [(f.direction, f.op, f.path) for f in result.frames if f.direction != "note"]


def _names(result: DecodeResult) -> list[str]:
    return [f.name for f in result.findings]


def test_zkwarden_and_raw_client_workload_decodes_clean(server: ZooKeeperServer,
                                                        tmp_path: Path, zk_path: str) -> None:
    pcap = tmp_path / "clean.pcap"
    with Capture(pcap, server.port):
        with Client(server.connect_string, session_timeout=10.0) as zk:
            zk.ensure_path(zk_path)
            created = zk.create(f"{zk_path}/n", b"v1", sequence=True)
            zk.get(created)
            zk.set(created, b"v2")
            zk.get_children(zk_path)
            zk.exists(f"{zk_path}/missing")
            with zk.transaction() as t:
                t.create(f"{zk_path}/tx", b"")
                t.check(created, 1)
            # a raw client doing it right: notified, re-reads WITH a watch
            raw = RawClient(server.host, server.port)
            raw.call(ops.GetData(created, watch=True))
            zk.set(created, b"v3")
            raw.wait_event()
            raw.call(ops.GetData(created, watch=True))
            raw.close()
            zk.delete(created)
            zk.delete(f"{zk_path}/tx")
            zk.delete(zk_path)
    result = decode_file(str(pcap))
    assert_all_decoded_and_paired(result)
    assert _names(result) == [], result.findings
    seen = _frames(result)
    expected = [("request", "connect", None), ("reply", "connect", None),
                ("request", "create", created), ("request", "getData", created),
                ("request", "setData", created), ("request", "getChildren2", zk_path),
                ("request", "exists", f"{zk_path}/missing"), ("request", "multi", None),
                ("event", "notification", created), ("request", "delete", created),
                ("request", "closeSession", None)]
    it = iter(seen)
    for step in expected:  # in this order, with other frames between
        if step[1] == "create":
            assert any(s[:2] == ("request", "create") or s[:2] == ("request", "create2")
                       for s in it), step
            continue
        if step[1] == "getChildren2":
            assert any(s[0] == "request" and s[1].startswith("getChildren") and s[2] == step[2]
                       for s in it), step
            continue
        assert step in it, (step, seen)
    exists = next(f for f in result.frames if f.op == "exists" and f.direction == "reply")
    assert exists.err == -101 and exists.latency_ms is not None


def test_missed_watch_pattern_is_a_watch_gap(server: ZooKeeperServer, tmp_path: Path,
                                             zk_path: str) -> None:
    pcap = tmp_path / "gap.pcap"
    with Client(server.connect_string) as zk:
        zk.ensure_path(zk_path)
        with Capture(pcap, server.port):
            raw = RawClient(server.host, server.port)
            raw.call(ops.GetChildren(zk_path, watch=True))
            zk.create(f"{zk_path}/a")
            raw.wait_event()
            raw.call(ops.GetChildren(zk_path, watch=False))  # the bug: no watch
            zk.create(f"{zk_path}/b")  # ... so this one is never notified
            raw.close()
        zk.delete(zk_path, recursive=True)
    result = decode_file(str(pcap))
    assert_all_decoded_and_paired(result)
    assert _names(result) == ["watch-gap"]
    finding = result.findings[0]
    assert zk_path in finding.message and "without a watch" in finding.message
    event, read = (next(f for f in result.frames if f.index == i) for i in finding.frames)
    assert event.direction == "event" and read.op == "getChildren"


def test_notification_never_followed_is_flagged(server: ZooKeeperServer, tmp_path: Path,
                                                 zk_path: str) -> None:
    pcap = tmp_path / "unfollowed.pcap"
    with Client(server.connect_string) as zk:
        zk.create(zk_path, b"1")
        with Capture(pcap, server.port):
            raw = RawClient(server.host, server.port)
            raw.call(ops.GetData(zk_path, watch=True))
            zk.set(zk_path, b"2")
            raw.wait_event()
            time.sleep(1.5)  # the client sits on the notification, then goes on elsewhere
            raw.call(ops.Exists("/zookeeper"))
            raw.close()
        zk.delete(zk_path)
    result = decode_file(str(pcap))
    assert _names(result) == ["unfollowed-notification"]
    assert "NodeDataChanged" in result.findings[0].message


def test_accept_then_close_is_a_reconnect_storm(server: ZooKeeperServer,
                                                tmp_path: Path) -> None:
    pcap = tmp_path / "storm.pcap"
    with FaultProxy(server.connect_string) as proxy:
        proxy.accept_then_close()
        with Capture(pcap, proxy.port):
            zk = Client(proxy.connect_string, session_timeout=4.0)
            zk.start(wait=False)
            time.sleep(6.0)
            zk.close()
    result = decode_file(str(pcap))
    assert set(_names(result)) == {"reconnect-storm"}
    failed = [c for c in result.connections if c.established is False]
    assert len(failed) >= 5
    assert "never established a session" in result.findings[0].message


def test_expired_session_reattach_is_flagged(server: ZooKeeperServer, tmp_path: Path) -> None:
    pcap = tmp_path / "expired.pcap"
    with Capture(pcap, server.port):
        with Client(server.connect_string, session_timeout=4.0) as zk:
            first = zk.session_id
            assert first
            expire_session(zk)
            deadline = time.monotonic() + 20
            while zk.session_id in (first, None):
                assert time.monotonic() < deadline, "no new session after the expiry"
                time.sleep(0.1)
            zk.exists("/")
    result = decode_file(str(pcap))
    names = _names(result)
    assert names == ["expired-reattach"], result.findings
    finding = result.findings[0]
    assert finding.session == first and f"0x{first:x}" in finding.message
    reply = next(f for f in result.frames if f.index == finding.frames[-1])
    assert reply.op == "connect" and reply.details and reply.details["expired"] is True


def test_oversize_request_is_flagged(server: ZooKeeperServer, tmp_path: Path,
                                     zk_path: str) -> None:
    pcap = tmp_path / "oversize.pcap"
    with Capture(pcap, server.port):
        raw = RawClient(server.host, server.port)
        raw.send(ops.SetData(zk_path, b"x" * (0xFFFFF + 10)))
        with pytest.raises((ConnectionError, OSError)):
            raw.read_frame()  # the server drops the connection without a reply
        raw.sock.close()
    result = decode_file(str(pcap))
    assert _names(result) == ["oversize"]
    big = next(f for f in result.frames if f.op == "setData")
    assert big.size > 0xFFFFF and big.path == zk_path


@pytest.fixture(scope="module")
def six_second_server() -> Iterator[ZooKeeperServer]:
    """The shared server grants at most 2 s (read timeout 1.3 s), less than a 1.6 s ping
    round trip: the client would rightly reconnect before the slow answer arrives."""
    with ZooKeeperServer(max_session_timeout=6.0) as server:
        yield server


def test_stalled_server_answers_pings_slowly(six_second_server: ZooKeeperServer,
                                             tmp_path: Path) -> None:
    pcap = tmp_path / "slow.pcap"
    with FaultProxy(six_second_server.connect_string) as proxy:
        with Client(proxy.connect_string, session_timeout=6.0) as zk:
            zk.exists("/")
            with Capture(pcap, proxy.port):
                proxy.delay(0.8)
                # pings go out after 2 s idle and each takes ~1.6 s now: 7 s hold at
                # least two whole ones even when the capture started next to a ping
                time.sleep(7.0)
                proxy.delay(0)
                zk.exists("/")
    result = decode_file(str(pcap))
    seen = [(round(f.time % 100, 3), f.direction, f.op, f.xid) for f in result.frames]
    assert "slow-ping" in _names(result), seen
    assert set(_names(result)) == {"slow-ping"}, seen
