"""``python -m zkwarden`` as a real process: exit codes, help, bytes, Ctrl-C."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from zkwarden import Client
from zkwarden.cli import EXIT_CODES, exitcodes
from zkwarden.testing import FaultProxy, free_port

from ._support import REPO, Cli, Proc, run_module, subprocess_env


def test_help_documents_every_exit_code(cli: Cli) -> None:
    r = cli("--help", hosts=None)
    assert r.code == 0
    assert "exit codes:" in r.out
    for row in EXIT_CODES:
        assert f"{row.code:>3}  {row.name}" in r.out
    for verb in ("ls", "get", "set", "create", "rm", "stat", "tree", "watch", "acl", "whoami",
                 "mntr", "server", "register", "discover", "demo"):
        assert verb in r.out
    r = cli("create", "--help", hosts=None)
    assert "--ephemeral" in r.out and "--ttl" in r.out and r.code == 0


def test_usage_errors_exit_2(cli: Cli) -> None:
    r = cli("frobnicate", hosts=None)
    assert r.code == exitcodes.USAGE and "invalid choice" in r.err and "Traceback" not in r.err
    r = cli("get", hosts=None)
    assert r.code == exitcodes.USAGE and "required" in r.err
    r = cli("--session-timeout", "-1", "ls", hosts=None)
    assert r.code == exitcodes.USAGE
    r = cli("--version", hosts=None)
    assert r.code == 0 and r.out.startswith("zkwarden ")


def test_real_exit_codes(zk: Client, zk_hosts: str, zk_path: str) -> None:
    zk.create(f"{zk_path}/child", b"", makepath=True)
    cases = [
        (["get", f"{zk_path}/missing"], exitcodes.NO_NODE, "no such node"),
        (["create", zk_path], exitcodes.NODE_EXISTS, "node already exists"),
        (["rm", zk_path], exitcodes.NOT_EMPTY, "node has children"),
        (["set", zk_path, "x", "--version", "7"], exitcodes.BAD_VERSION, "version mismatch"),
        (["ls", "relative"], exitcodes.USAGE, "path"),
    ]
    cases += [
        (["--hosts", f"127.0.0.1:{free_port()}", "--timeout", "0.5", "ls", "/"],
         exitcodes.UNREACHABLE, "zkwarden: error: cannot reach ZooKeeper at 127.0.0.1:"),
    ]
    # All at once: each is a whole Python start-up.
    procs = [
        (subprocess.Popen([sys.executable, "-m", "zkwarden", "--hosts", zk_hosts, *argv],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=subprocess_env(), cwd=REPO), argv, code, text)
        for argv, code, text in cases
    ]
    for proc, argv, code, text in procs:
        _, raw_err = proc.communicate(timeout=60)
        err = raw_err.decode()
        assert proc.returncode == code, (argv, proc.returncode, err)
        assert err.count("\n") == 1 and text in err and "Traceback" not in err


def test_binary_data_round_trip(zk: Client, zk_hosts: str, zk_path: str) -> None:
    blob = bytes(range(256))
    done = run_module("--hosts", zk_hosts, "create", zk_path, "-", stdin=blob)
    assert done.returncode == 0, done.stderr
    assert zk.get(zk_path)[0] == blob
    done = run_module("--hosts", zk_hosts, "get", zk_path)
    assert done.returncode == 0 and done.stdout == blob


def test_ctrl_c_exits_130(spawn: Callable[..., Proc], zk_hosts: str) -> None:
    # A proxy that accepts and then says nothing: the command waits for its session.
    with FaultProxy(zk_hosts) as proxy:
        proxy.blackhole()
        proc = spawn("--hosts", proxy.connect_string, "--timeout", "60", "ls", "/")
        deadline = time.monotonic() + 30
        while proxy.stats().accepted == 0:  # connected: main() is running
            assert time.monotonic() < deadline and proc.popen.poll() is None
            time.sleep(0.05)
        code = proc.interrupt()
    assert code == exitcodes.INTERRUPTED
    assert "interrupted" in proc.output and "Traceback" not in proc.output


def test_agent_verb_hands_over_to_the_sidecar(cli: Cli, tmp_path: Path) -> None:
    pytest.importorskip("aiohttp")
    r = cli("agent", "--help", hosts=None)
    assert r.code == 0 and "usage: zkwarden agent" in r.out
    r = cli("agent", "-c", str(tmp_path / "missing.toml"), "--check", hosts=None)
    assert r.code == exitcodes.USAGE and r.err.startswith("zkwarden agent: ")
