"""``zkwarden watch``: events until Ctrl-C, through reconnects and session expiry."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from zkwarden import Client
from zkwarden.testing import FaultProxy

from ._support import Proc


def test_watch_recursive_text_until_ctrl_c(
    spawn: Callable[..., Proc], zk: Client, zk_hosts: str, zk_path: str
) -> None:
    proc = spawn("--hosts", zk_hosts, "watch", "-r", zk_path, "--data")
    proc.wait_for(rf"watching {zk_path} \(persistent recursive watch\); Ctrl-C to stop")
    zk.create(zk_path, b"top")
    proc.wait_for(rf"NODE_CREATED +{zk_path}  'top' v0$")
    zk.create(f"{zk_path}/child", b"c")
    proc.wait_for(rf"NODE_CREATED +{zk_path}/child  'c' v0$")
    zk.set(f"{zk_path}/child", b"d")
    proc.wait_for(rf"NODE_DATA_CHANGED +{zk_path}/child  'd' v1$")
    zk.delete(zk_path, recursive=True)
    proc.wait_for(rf"NODE_DELETED +{zk_path}/child$")
    proc.wait_for(rf"NODE_DELETED +{zk_path}$")
    assert proc.interrupt() == 0
    assert f"stopped watching {zk_path}" in proc.output


def test_watch_json_lines(spawn: Callable[..., Proc], zk: Client, zk_hosts: str,
                          zk_path: str) -> None:
    proc = spawn("--hosts", zk_hosts, "--json", "watch", zk_path)
    first = json.loads(proc.wait_for(r'"watching"'))
    assert first["watching"] == zk_path and first["recursive"] is False
    zk.create(zk_path, b"")
    zk.create(f"{zk_path}/kid", b"")  # a plain persistent watch sees children change
    zk.delete(f"{zk_path}/kid")
    zk.delete(zk_path)
    events = [json.loads(proc.wait_for(r'"event"')) for _ in range(4)]
    assert [e["event"] for e in events] == [
        "NODE_CREATED", "NODE_CHILDREN_CHANGED", "NODE_CHILDREN_CHANGED", "NODE_DELETED",
    ]
    assert {e["path"] for e in events} == {zk_path}
    assert proc.interrupt() == 0


def test_watch_survives_reconnect_and_expiry_and_says_so(
    spawn: Callable[..., Proc], zk: Client, zk_hosts: str, zk_path: str
) -> None:
    with FaultProxy(zk_hosts) as proxy:
        proc = spawn("--hosts", proxy.connect_string, "--session-timeout", "1.5",
                     "watch", zk_path)
        proc.wait_for("watching")
        zk.create(zk_path, b"1")
        proc.wait_for(rf"NODE_CREATED +{zk_path}$")

        proxy.reset()  # connection cut: the session survives
        proc.wait_for(r"^-- .* disconnected; reconnecting \(session 0x[0-9a-f]+ may still be alive\)")
        proc.wait_for(r"^-- .* reconnected on 127\.0\.0\.1:\d+, session 0x[0-9a-f]+ resumed; "
                      r"watch kept")
        # Persistent watches are re-armed by the reconnect (SetWatches) without a replay of
        # what changed meanwhile; give the server a moment to apply it before changing.
        time.sleep(0.5)
        zk.set(zk_path, b"2")
        proc.wait_for(rf"NODE_DATA_CHANGED +{zk_path}$")

        proxy.blackhole()  # silence longer than the session: it expires
        proc.wait_for(r"^-- .* disconnected", timeout=10)
        time.sleep(2.5)
        proxy.pass_through()
        proc.wait_for(r"^-- .* session 0x[0-9a-f]+ (presumed )?expired", timeout=10)
        proc.wait_for(r"^-- .* connected on .*, new session 0x[0-9a-f]+; subscribing again",
                      timeout=10)
        proc.wait_for(rf"^-- .* watching {zk_path} again on session 0x[0-9a-f]+ ")
        zk.set(zk_path, b"3")
        proc.wait_for(rf"NODE_DATA_CHANGED +{zk_path}$")
        assert proc.interrupt() == 0
    assert "Traceback" not in proc.output
