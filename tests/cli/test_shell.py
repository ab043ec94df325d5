"""The shell verbs against a real server: text and --json output, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from zkwarden import Client
from zkwarden.cli import exitcodes
from zkwarden.testing import ZooKeeperServer
from zkwarden.types import make_digest_id

from ._support import Cli


def test_create_get_set_stat(cli: Cli, zk: Client, zk_path: str) -> None:
    r = cli("create", zk_path, "hello")
    assert (r.code, r.out) == (0, f"{zk_path}\n")
    assert zk.get(zk_path)[0] == b"hello"

    r = cli("get", zk_path)
    assert (r.code, r.out) == (0, "hello\n")  # text data gets its line ended
    r = cli("get", zk_path, "--raw")
    assert (r.code, r.out) == (0, "hello")
    r = cli("--json", "get", zk_path, "--stat")
    doc = r.json()
    assert doc["data"] == "hello" and doc["base64"] == "aGVsbG8="
    assert doc["stat"]["version"] == 0 and doc["stat"]["data_length"] == 5

    r = cli("set", zk_path, "world", "--version", "0")
    assert (r.code, r.out) == (0, f"{zk_path}: version 1, 5 bytes\n")
    r = cli("set", zk_path, "again", "--version", "0")
    assert "version mismatch" in r.assert_one_line_error(exitcodes.BAD_VERSION)
    r = cli("--json", "set", zk_path, "v2")
    assert r.json()["stat"]["version"] == 2

    r = cli("stat", zk_path)
    assert r.code == 0
    fields = dict(line.split(" = ") for line in r.out.splitlines())
    assert fields["dataVersion"] == "2" and fields["dataLength"] == "2"
    assert fields["numChildren"] == "0" and fields["ephemeralOwner"] == "0x0"
    stat = zk.exists(zk_path)
    assert stat is not None and fields["mZxid"] == f"0x{stat.mzxid:x}"
    r = cli("stat", zk_path, "--json")
    assert r.json()["stat"]["mzxid"] == stat.mzxid


def test_set_from_file_and_get_with_stat(
    cli: Cli, zk: Client, zk_path: str, tmp_path: Path
) -> None:
    source = tmp_path / "config.txt"
    source.write_text("line one\nline two\n")
    assert cli("create", zk_path).code == 0
    assert cli("set", zk_path, "--file", str(source)).code == 0
    assert zk.get(zk_path)[0] == b"line one\nline two\n"
    r = cli("get", zk_path, "-s")
    assert r.out.startswith("line one\nline two\ncZxid = 0x")


def test_create_modes(cli: Cli, zk: Client, zk_path: str) -> None:
    assert cli("create", zk_path).code == 0
    r = cli("create", f"{zk_path}/job-", "x", "--sequence")
    assert r.code == 0 and r.out.strip() == f"{zk_path}/job-0000000000"
    r = cli("--json", "create", f"{zk_path}/a/b/c", "deep", "--parents")
    assert r.json() == {"path": f"{zk_path}/a/b/c", "ephemeral": False}
    assert zk.get(f"{zk_path}/a/b/c")[0] == b"deep"
    assert cli("create", f"{zk_path}/box", "--container").code == 0
    assert cli("create", f"{zk_path}/ttl", "--ttl", "60").code == 0
    assert zk.exists(f"{zk_path}/ttl") is not None
    r = cli("create", f"{zk_path}/x/y")
    assert "no such node" in r.assert_one_line_error(exitcodes.NO_NODE)
    r = cli("create", zk_path)
    assert r.assert_one_line_error(exitcodes.NODE_EXISTS) == (
        f"zkwarden: error: node already exists: {zk_path}"
    )
    r = cli("create", f"{zk_path}/bad", "--container", "--ttl", "5")
    r.assert_one_line_error(exitcodes.USAGE)


def test_ls_and_recursive(cli: Cli, zk: Client, zk_path: str) -> None:
    for node in ("b", "a", "a/x", "a/x/y", "c"):
        zk.create(f"{zk_path}/{node}", makepath=True)
    r = cli("ls", zk_path)
    assert (r.code, r.out) == (0, "a\nb\nc\n")
    assert cli("ls", zk_path, "--json").json() == {"path": zk_path, "children": ["a", "b", "c"]}
    r = cli("ls", "-R", zk_path)
    assert r.out.splitlines() == [f"{zk_path}/{p}" for p in ("a", "a/x", "a/x/y", "b", "c")]
    doc = cli("--json", "ls", "-R", zk_path).json()
    assert doc["descendants"][-1] == f"{zk_path}/c"
    cli_missing = cli("ls", f"{zk_path}/nope")
    cli_missing.assert_one_line_error(exitcodes.NO_NODE)
    cli("ls", "-R", f"{zk_path}/nope").assert_one_line_error(exitcodes.NO_NODE)


def test_rm(cli: Cli, zk: Client, zk_path: str) -> None:
    zk.create(f"{zk_path}/a/b", b"", makepath=True)
    zk.create(f"{zk_path}/v", b"")
    r = cli("rm", zk_path)
    assert "use -r" in r.assert_one_line_error(exitcodes.NOT_EMPTY)
    cli("rm", f"{zk_path}/v", "--version", "3").assert_one_line_error(exitcodes.BAD_VERSION)
    assert cli("rm", f"{zk_path}/v", "--version", "0").out == f"deleted {zk_path}/v\n"
    cli("rm", f"{zk_path}/v").assert_one_line_error(exitcodes.NO_NODE)
    r = cli("--json", "rm", "-r", zk_path)
    assert r.json() == {"deleted": [zk_path]}
    assert zk.exists(zk_path) is None
    cli("rm", "-r", zk_path).assert_one_line_error(exitcodes.NO_NODE)
    cli("rm", "/").assert_one_line_error(exitcodes.USAGE)


def test_tree_sizes_and_counts(cli: Cli, zk: Client, zk_path: str) -> None:
    zk.create(zk_path, b"root")
    zk.create(f"{zk_path}/svc", b"")
    for i in range(3):
        zk.create(f"{zk_path}/svc/n{i}", b"x" * 10)
    zk.create(f"{zk_path}/eph", b"e", ephemeral=True)
    r = cli("tree", zk_path)
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0] == f"{zk_path}  [4 B, 2 children, 5 below, 31 B]"
    assert lines[1].startswith("├── eph  [1 B, ephemeral 0x")
    assert lines[2] == "└── svc  [0 B, 3 children, 3 below, 30 B]"
    assert lines[3] == "    ├── n0  [10 B]"
    assert lines[5] == "    └── n2  [10 B]"
    assert lines[-1] == "6 nodes, 35 B of data"

    doc = cli("--json", "tree", zk_path).json()
    assert doc["subtree_nodes"] == 6 and doc["subtree_bytes"] == 35
    assert [c["path"] for c in doc["children"]] == [f"{zk_path}/eph", f"{zk_path}/svc"]
    assert doc["children"][1]["num_children"] == 3 and not doc["truncated"]

    r = cli("tree", zk_path, "--depth", "1")
    assert "    └── … 3 more not shown" in r.out.splitlines()
    r = cli("tree", zk_path, "--max-nodes", "2")
    assert r.out.splitlines()[-1].endswith("(stopped at --max-nodes 2)")
    cli("tree", f"{zk_path}/none").assert_one_line_error(exitcodes.NO_NODE)


def test_acl_and_auth(cli: Cli, zk: Client, zk_path: str) -> None:
    zk.create(zk_path, b"secret")
    r = cli("acl", "get", zk_path)
    assert (r.code, r.out) == (0, "world:anyone:cdrwa\n")
    assert cli("--json", "acl", "get", zk_path).json()["acl"] == [
        {"scheme": "world", "id": "anyone", "perms": "cdrwa"}
    ]
    r = cli("--auth", "digest:alice:pw", "acl", "set", zk_path, "auth::cdrwa,world:anyone:r")
    assert r.code == 0
    assert r.out.splitlines() == [
        f"digest:{make_digest_id('alice', 'pw').id}:cdrwa", "world:anyone:r",
    ]
    # Read allowed to anyone, writes only to alice.
    assert cli("get", zk_path).out == "secret\n"
    r = cli("set", zk_path, "mine")
    assert "not authorized" in r.assert_one_line_error(exitcodes.NO_AUTH)
    r = cli("set", zk_path, "mine", "--auth", "digest:alice:pw")
    assert r.code == 0
    r = cli("acl", "set", zk_path, "world:anyone:cdrwa", "--auth", "digest:bob:pw")
    r.assert_one_line_error(exitcodes.NO_AUTH)
    r = cli("acl", "set", zk_path, "world:anyone:q", "--auth", "digest:alice:pw")
    assert "unknown permission" in r.assert_one_line_error(exitcodes.USAGE)
    r = cli("--json", "acl", "set", zk_path, "world:anyone:cdrwa", "--auth", "digest:alice:pw",
            "--version", "1")
    assert r.json()["aversion"] == 2


def test_whoami(cli: Cli) -> None:
    r = cli("whoami")
    assert (r.code, r.out) == (0, "ip: 127.0.0.1\n")
    doc = cli("--json", "--auth", "digest:carol:pw", "whoami").json()
    assert isinstance(doc, dict)  # an object, like every other verb's --json
    assert {"scheme": "digest", "user": "carol"} in doc["identities"]
    cli("--auth", "nocolon", "whoami").assert_one_line_error(exitcodes.USAGE)


def test_mntr(cli: Cli, zk_server: ZooKeeperServer) -> None:
    r = cli("mntr")
    assert r.code == 0
    metrics = dict(line.split(None, 1) for line in r.out.splitlines())
    assert metrics["zk_server_state"] == "standalone"
    doc = cli("--json", "mntr", zk_server.connect_string, hosts=None).json()
    assert doc[zk_server.connect_string]["zk_server_state"] == "standalone"


@pytest.mark.parametrize("argv", [["ls", "/"], ["mntr"]])
def test_unreachable_is_one_line_and_exit_8(cli: Cli, argv: list[str]) -> None:
    from zkwarden.testing import free_port

    r = cli("--timeout", "0.5", *argv, hosts=f"127.0.0.1:{free_port()}")
    line = r.assert_one_line_error(exitcodes.UNREACHABLE)
    assert line.startswith("zkwarden: error: cannot reach")


def test_json_errors_and_invalid_path(cli: Cli, zk_path: str) -> None:
    r = cli("--json", "get", f"{zk_path}/missing")
    assert r.code == exitcodes.NO_NODE
    assert r.out == ""
    import json

    err = json.loads(r.err)["error"]
    assert err == {"type": "NoNodeError", "message": f"no such node: {zk_path}/missing",
                   "exit_code": 3, "path": f"{zk_path}/missing"}
    r = cli("get", "no-slash")
    assert "path" in r.assert_one_line_error(exitcodes.USAGE)


def test_hosts_from_environment_and_options_after_the_verb(
    cli: Cli, zk_hosts: str, zk_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZOOKEEPER_HOSTS", zk_hosts)
    assert cli("create", zk_path, "env", hosts=None).code == 0
    r = cli("get", zk_path, "--json", "--timeout", "5", hosts=None)
    assert r.json()["data"] == "env"
    monkeypatch.setenv("ZOOKEEPER_HOSTS", f"{zk_hosts}{zk_path}")  # a chroot
    assert cli("ls", "/", hosts=None).code == 0
    assert cli("get", "/", "--json", hosts=None).json()["data"] == "env"
