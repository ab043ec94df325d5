"""The sharp edges a new user hit, each pinned: bad timeouts and connect strings exit 2
with one clear line, an unresolvable host is named, writes under /zookeeper need --force,
get ends text with a newline, every --json is an object with numbers as numbers, Ctrl-C
under --json is JSON, rpcx/Dubbo registrations print the id discover shows, --meta is
refused naming the right flag, a missing chroot is named."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from zkwarden import Client
from zkwarden.cli import exitcodes
from zkwarden.testing import FaultProxy, ZooKeeperServer

from ._support import Cli, Proc, Result

# --- timeouts and connect strings -----------------------------------------------------------


def _usage_error(r: Result) -> str:
    """Exit 2 and the error line (argparse prints its usage above it); no traceback."""
    assert r.code == exitcodes.USAGE, (r.code, r.err)
    assert "Traceback" not in r.err and "Overflow" not in r.err and r.out == ""
    return r.err.strip().splitlines()[-1]


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "0", "1e9", "2147483.648", "1e7"])
def test_session_timeout_out_of_range_exits_2(cli: Cli, value: str) -> None:
    assert "session" in _usage_error(cli("--session-timeout", value, "ls", "/"))


@pytest.mark.parametrize("value", ["inf", "nan", "1e9"])
def test_connect_timeout_out_of_range_exits_2(cli: Cli, value: str) -> None:
    assert "timeout" in _usage_error(cli("--timeout", value, "ls", "/"))


def test_largest_session_timeout_the_wire_carries_works(cli: Cli) -> None:
    # The server clamps it to its maxSessionTimeout: the session comes up.
    assert cli("--session-timeout", "2147483.647", "ls", "/").code == 0


@pytest.mark.parametrize("hosts", ["garbage::", "zz::zz", "zk 1:2181", "[zz::1]:2181"])
def test_bad_connect_strings_exit_2_at_once(cli: Cli, hosts: str) -> None:
    started = time.monotonic()
    r = cli("--timeout", "5", "ls", "/", hosts=hosts)
    line = r.assert_one_line_error(exitcodes.USAGE)
    assert "bad" in line and time.monotonic() - started < 2  # no connection attempted


def test_unresolvable_host_is_named_without_verbose(cli: Cli) -> None:
    r = cli("--timeout", "1", "ls", "/", hosts="no-such-host.invalid:2181")
    line = r.assert_one_line_error(exitcodes.UNREACHABLE)
    assert "cannot resolve host name 'no-such-host.invalid'" in line


def test_missing_chroot_is_named(cli: Cli, zk_hosts: str, zk_path: str) -> None:
    r = cli("ls", "/", hosts=f"{zk_hosts}{zk_path}")
    line = r.assert_one_line_error(exitcodes.NO_NODE)
    assert f"chroot {zk_path}" in line and "does not exist" in line
    r = cli("--json", "get", "/x", hosts=f"{zk_hosts}{zk_path}")
    assert json.loads(r.err)["error"]["path"] == zk_path


# --- /zookeeper -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["rm", "-r", "/zookeeper"],
        ["rm", "/zookeeper/quota"],
        ["create", "/zookeeper/mine", "x"],
        ["set", "/zookeeper/quota", "x"],
        ["acl", "set", "/zookeeper/quota", "world:anyone:r"],
    ],
    ids=lambda a: " ".join(a),
)
def test_writes_under_zookeeper_need_force(cli: Cli, zk: Client, argv: list[str]) -> None:
    before = sorted(zk.get_children("/zookeeper"))
    r = cli(*argv)
    line = r.assert_one_line_error(exitcodes.USAGE)
    assert "/zookeeper" in line and "--force" in line
    assert sorted(zk.get_children("/zookeeper")) == before


def test_force_and_chroot_allow_writes_to_a_zookeeper_path(
    cli: Cli, zk: Client, zk_hosts: str, zk_path: str
) -> None:
    r = cli("create", "/zookeeper/zkw-forced", "x", "--force")
    try:
        assert r.code == 0, r.err
    finally:
        zk.delete("/zookeeper/zkw-forced")
    # Under a chroot, /zookeeper is an ordinary node of the application.
    zk.create(zk_path)
    r = cli("create", "/zookeeper", "app", hosts=f"{zk_hosts}{zk_path}")
    assert r.code == 0, r.err
    assert zk.get(f"{zk_path}/zookeeper")[0] == b"app"


# --- output ---------------------------------------------------------------------------------


def test_get_ends_text_with_a_newline_binary_stays_exact(
    cli: Cli, zk: Client, zk_path: str
) -> None:
    zk.create(zk_path, b"value")
    assert cli("get", zk_path).out == "value\n"
    assert cli("get", zk_path, "--raw").out == "value"
    zk.set(zk_path, b"ends\n")
    assert cli("get", zk_path).out == "ends\n"


def test_every_json_answer_is_an_object(cli: Cli, zk_path: str) -> None:
    base = f"{zk_path}/services"
    for argv in (["whoami"], ["discover", "--base-path", base],
                 ["discover", "none", "--base-path", base], ["ls", "/"]):
        doc = cli("--json", *argv).json()
        assert isinstance(doc, dict), (argv, doc)


def test_mntr_json_numbers_are_numbers(cli: Cli, zk_server: ZooKeeperServer) -> None:
    doc = cli("--json", "mntr", zk_server.connect_string, hosts=None).json()
    metrics = doc[zk_server.connect_string]
    assert isinstance(metrics["zk_znode_count"], int)
    assert isinstance(metrics["zk_avg_latency"], int | float)
    assert isinstance(metrics["zk_server_state"], str)
    assert isinstance(metrics["zk_version"], str)


def test_ctrl_c_under_json_prints_json(spawn: Callable[..., Proc], zk_hosts: str) -> None:
    with FaultProxy(zk_hosts) as proxy:
        proxy.blackhole()
        proc = spawn("--hosts", proxy.connect_string, "--timeout", "60", "--json", "ls", "/")
        deadline = time.monotonic() + 30
        while proxy.stats().accepted == 0:
            assert time.monotonic() < deadline and proc.popen.poll() is None
            time.sleep(0.05)
        code = proc.interrupt()
    assert code == exitcodes.INTERRUPTED
    lines = [line for line in proc.output.splitlines() if line.strip()]
    assert lines, proc.output
    for line in lines:  # every line is JSON: nothing in plain text
        json.loads(line)
    assert json.loads(lines[-1])["error"]["exit_code"] == exitcodes.INTERRUPTED


# --- registration formats -------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "port"), [("rpcx", "8972"), ("dubbo", "20880")])
def test_registered_id_is_the_one_discover_shows(
    spawn: Callable[..., Proc], cli: Cli, zk_hosts: str, zk_path: str, fmt: str, port: str
) -> None:
    base = f"{zk_path}/{fmt}"
    proc = spawn("--hosts", zk_hosts, "register", "Arith", "--format", fmt, "--base-path", base,
                 "--address", "10.0.0.7", "--port", port, "--duration", "20")
    try:
        line = proc.wait_for(r"^registered ")
        registered_id = line.split()[1].split("/", 1)[1]
        found = cli("--json", "discover", "Arith", "--format", fmt, "--base-path", base).json()
        assert found["name"] == "Arith"
        ids = [i["id"] for i in found["instances"]]
        assert ids == [registered_id]
    finally:
        proc.interrupt()


@pytest.mark.parametrize(
    ("meta", "flag"),
    [("weight=5", "--weight"), ("zone=a", "--zone"), ("group=g", "--tag"), ("state=x", "state")],
)
def test_rpcx_meta_refusal_names_the_flag(cli: Cli, zk_path: str, meta: str, flag: str) -> None:
    r = cli("register", "Arith", "--format", "rpcx", "--base-path", f"{zk_path}/rpcx",
            "--address", "10.0.0.7", "--port", "8972", "--meta", meta, "--duration", "1")
    line = r.assert_one_line_error(exitcodes.USAGE)
    assert f"--meta {meta.split('=')[0]}" in line and flag in line


def test_rpcx_refuses_what_it_cannot_store(cli: Cli, zk_path: str) -> None:
    r = cli("register", "Arith", "--format", "rpcx", "--base-path", f"{zk_path}/rpcx",
            "--address", "10.0.0.7", "--port", "8972", "--payload", '{"a": 1}')
    assert "--payload" in r.assert_one_line_error(exitcodes.USAGE)
