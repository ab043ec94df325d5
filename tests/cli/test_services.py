"""``register``, ``discover`` and ``create --ephemeral``: held until interrupted."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from zkwarden import Client
from zkwarden.cli import exitcodes
from zkwarden.discovery import ServiceInstance, get_format
from zkwarden.testing import FaultProxy

from ._support import Cli, Proc


def _register(zk: Client, base: str, inst: ServiceInstance) -> str:
    fmt = get_format("curator")
    path = fmt.instance_path(base, inst)
    zk.create(path, fmt.encode(inst), makepath=True)
    return path


def test_register_until_ctrl_c_then_unregister(
    spawn: Callable[..., Proc], cli: Cli, zk: Client, zk_hosts: str, zk_path: str
) -> None:
    base = f"{zk_path}/services"
    proc = spawn("--hosts", zk_hosts, "register", "web", "--address", "10.1.2.3", "--port",
                 "8080", "--id", "one", "--payload", '{"zone": "a"}', "--base-path", base)
    proc.wait_for(rf"^registered web/one at {base}/web/one \(curator\)$")
    proc.wait_for("Ctrl-C to unregister")
    data, stat = zk.get(f"{base}/web/one")
    assert stat.ephemeral_owner != 0 and json.loads(data)["address"] == "10.1.2.3"

    r = cli("discover", "--base-path", base)
    assert (r.code, r.out) == (0, "web\n")
    r = cli("discover", "web", "--base-path", base)
    assert r.out.splitlines() == [
        "ID   ENDPOINT       DETAILS",
        'one  10.1.2.3:8080  {"zone":"a"}',
    ]
    doc = cli("--json", "discover", "web", "--base-path", base).json()["instances"]
    assert doc[0]["id"] == "one" and doc[0]["port"] == 8080 and doc[0]["payload"] == {"zone": "a"}
    assert doc[0]["service_type"] == "DYNAMIC"

    assert proc.interrupt() == 0
    assert "unregistered web/one" in proc.output
    assert zk.exists(f"{base}/web/one") is None


def test_register_keeps_the_registration_through_expiry(
    spawn: Callable[..., Proc], zk: Client, zk_hosts: str, zk_path: str
) -> None:
    base = f"{zk_path}/services"
    with FaultProxy(zk_hosts) as proxy:
        proc = spawn("--hosts", proxy.connect_string, "--session-timeout", "1.5", "register",
                     "api", "--address", "h", "--port", "1", "--id", "x", "--base-path", base)
        proc.wait_for("^registered api/x")
        proxy.blackhole()
        proc.wait_for(r"^-- .* disconnected", timeout=10)
        time.sleep(2.5)
        assert zk.exists(f"{base}/api/x") is None  # the server expired the session
        proxy.pass_through()
        proc.wait_for(r"new session 0x[0-9a-f]+; registering again", timeout=10)
        proc.wait_for(rf"^-- .* registered again at {base}/api/x \(", timeout=10)
        stat = zk.exists(f"{base}/api/x")
        assert stat is not None and stat.ephemeral_owner != 0
        assert proc.interrupt() == 0
    assert zk.exists(f"{base}/api/x") is None


def test_register_refuses_an_id_another_session_owns(cli: Cli, zk: Client, zk_path: str) -> None:
    base = f"{zk_path}/services"
    fmt = get_format("curator")
    inst = ServiceInstance("web", id="taken", address="h", port=1)
    zk.create(fmt.instance_path(base, inst), fmt.encode(inst), ephemeral=True, makepath=True)
    r = cli("register", "web", "--id", "taken", "--address", "h", "--port", "2",
            "--base-path", base)
    assert "another live session" in r.assert_one_line_error(exitcodes.NODE_EXISTS)


def test_register_formats_and_json(cli: Cli, zk_path: str) -> None:
    r = cli("--json", "register", "echo", "--address", "10.0.0.9", "--port", "8972",
            "--format", "rpcx", "--base-path", f"{zk_path}/rpcx", "--duration", "0.2")
    assert r.code == 0, r.err
    events = [json.loads(line) for line in r.out.splitlines()]
    assert [e["event"] for e in events] == ["registered", "unregistered"]
    assert events[0]["path"] == f"{zk_path}/rpcx/echo/tcp@10.0.0.9:8972"
    r = cli("register", "com.example.Echo", "--address", "10.0.0.9", "--port", "20880",
            "--format", "dubbo", "--meta", "version=1.0", "--base-path", f"{zk_path}/dubbo",
            "--duration", "0.2")
    assert r.code == 0, r.err
    assert r.out.startswith("registered com.example.Echo/") and "/providers/dubbo%3A%2F%2F" in r.out
    cli("register", "x", "--address", "a", "--port", "1", "--payload", "[1]").\
        assert_one_line_error(exitcodes.USAGE)
    cli("register", "x", "--address", "a", "--port", "1", "--payload", "{").\
        assert_one_line_error(exitcodes.USAGE)
    cli("register", "x", "--address", "a", "--port", "99999").assert_one_line_error(
        exitcodes.USAGE)
    cli("register", "x", "--address", "a", "--port", "1", "--meta", "novalue").\
        assert_one_line_error(exitcodes.USAGE)


def test_discover_watch_lines(
    spawn: Callable[..., Proc], zk: Client, zk_hosts: str, zk_path: str
) -> None:
    base = f"{zk_path}/services"
    _register(zk, base, ServiceInstance("web", id="a", address="h1", port=1))
    proc = spawn("--hosts", zk_hosts, "discover", "web", "--watch", "--base-path", base)
    proc.wait_for(r"^web: 1 instances$")
    proc.wait_for(r"^a +h1:1")
    path_b = _register(zk, base, ServiceInstance("web", id="b", address="h2", port=2))
    proc.wait_for(r"^\+ \S+ b  h2:2")
    fmt = get_format("curator")
    zk.set(path_b, fmt.encode(ServiceInstance("web", id="b", address="h2", port=3)))
    proc.wait_for(r"^~ \S+ b  h2:3")
    zk.delete(f"{base}/web/a")
    proc.wait_for(r"^- \S+ a  h1:1")
    assert proc.interrupt() == 0


def test_discover_watch_json(
    spawn: Callable[..., Proc], zk: Client, zk_hosts: str, zk_path: str
) -> None:
    base = f"{zk_path}/services"
    proc = spawn("--hosts", zk_hosts, "--json", "discover", "web", "--watch", "--base-path", base)
    first = json.loads(proc.wait_for(r'"resynced"'))
    assert first["instances"] == []
    _register(zk, base, ServiceInstance("web", id="a", address="h1", port=1))
    added = json.loads(proc.wait_for(r'"added"'))
    assert added["instance"]["id"] == "a" and added["instance"]["address"] == "h1"
    assert proc.interrupt() == 0


def test_create_ephemeral_held_until_ctrl_c(
    spawn: Callable[..., Proc], zk: Client, zk_hosts: str, zk_path: str
) -> None:
    proc = spawn("--hosts", zk_hosts, "create", "--ephemeral", zk_path, "mine")
    proc.wait_for(rf"^{zk_path}$")
    proc.wait_for("Ctrl-C to release it")
    stat = zk.exists(zk_path)
    assert stat is not None and stat.ephemeral_owner != 0
    assert proc.interrupt() == 0
    assert f"released {zk_path}" in proc.output
    assert zk.exists(zk_path) is None  # CloseSession: gone at once, not after a timeout
