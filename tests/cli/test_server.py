"""``zkwarden server``: a real ZooKeeper (or ensemble) in the foreground."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

from zkwarden.cli import exitcodes
from zkwarden.testing import ZooKeeperServer, free_port

from ._support import Cli, Proc, run_module


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_server_serves_until_ctrl_c(spawn: Callable[..., Proc]) -> None:
    port = free_port()
    proc = spawn("server", "--port", str(port))
    proc.wait_for(rf"^ZooKeeper [\d.]+ serving on 127\.0\.0\.1:{port} \(started in ", timeout=60)
    proc.wait_for(rf"^  export ZOOKEEPER_HOSTS=127\.0\.0\.1:{port}$")
    proc.wait_for("Ctrl-C to stop")
    done = run_module("--hosts", f"127.0.0.1:{port}", "create", "/hello", "world")
    assert done.returncode == 0, done.stderr
    done = run_module("--hosts", f"127.0.0.1:{port}", "get", "/hello")
    assert done.stdout == b"world\n"  # text data: its line ended
    assert proc.interrupt(timeout=30) == 0
    assert "stopped; temporary data removed" in proc.output
    assert not _port_open(port)


def test_server_ensemble_json(cli: Cli) -> None:
    port = free_port()
    while not all(_free(port + i) for i in range(3)):
        port = free_port()
    r = cli("--json", "server", "--ensemble", "3", "--port", str(port), "--duration", "0.5",
            hosts=None)
    assert r.code == 0, r.err
    events = [json.loads(line) for line in r.out.splitlines()]
    assert [e["event"] for e in events] == ["serving", "stopped"]
    serving = events[0]
    members = [f"127.0.0.1:{port + i}" for i in range(3)]
    assert serving["connect_string"] == ",".join(members)
    assert sorted(s["mode"] for s in serving["servers"]) == ["follower", "follower", "leader"]
    assert not any(_port_open(port + i) for i in range(3))


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_server_port_in_use(cli: Cli, zk_server: ZooKeeperServer) -> None:
    r = cli("server", "--port", str(zk_server.port), hosts=None)
    line = r.assert_one_line_error(exitcodes.ERROR)
    assert "already in use" in line and "--port" in line
    cli("server", "--ensemble", "0", hosts=None).assert_one_line_error(exitcodes.USAGE)
    cli("server", "--ensemble", "2", "--data-dir", "/tmp/x", hosts=None).assert_one_line_error(
        exitcodes.USAGE)
