"""``zkwarden lock PATH -- COMMAND`` and ``zkwarden leader PATH`` as real processes against a
real server: concurrent runs never overlap (a guard node the command creates), exit codes
(passed through, timeout, not found, lost), interrupted runs leave no node, and ``leader``
reads latches and elections made by the Python API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from zkwarden import Client
from zkwarden.cli import exitcodes
from zkwarden.recipes.sync import LeaderLatch, Lock
from zkwarden.testing import FaultProxy

from ._support import REPO, Cli, Proc, subprocess_env

ZKW = [sys.executable, "-m", "zkwarden"]


def _lock_run(hosts: str, *argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*ZKW, "--hosts", hosts, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=subprocess_env(), cwd=REPO)


def _wait_children(zk: Client, path: str, count: int, timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        children = zk.get_children(path) if zk.exists(path) else []
        if len(children) == count:
            return children
        assert time.monotonic() < deadline, f"{path}: {children}, expected {count}"
        time.sleep(0.05)


@pytest.fixture
def held_lock(zk: Client, zk_path: str) -> Iterator[Lock]:
    lock = Lock(zk, f"{zk_path}/lock", identifier="python-holder")
    assert lock.acquire(timeout=5.0)
    yield lock
    lock.release()


def test_concurrent_runs_never_overlap(zk: Client, zk_hosts: str, zk_path: str) -> None:
    """Three `zkwarden lock` runs at once, each running a command that holds an ephemeral
    guard node for 0.6 s (`zkwarden create -e`, which exits 4 on NodeExists): all exit 0,
    so no two commands ever ran at once, and the lock path is empty afterwards."""
    guard = f"{zk_path}/guard"
    zk.ensure_path(zk_path)
    command = [*ZKW, "--hosts", zk_hosts, "create", guard, "held", "-e", "--duration", "0.6"]
    runs = [_lock_run(zk_hosts, "lock", f"{zk_path}/lock", "--identifier", f"run-{i}",
                      "--", *command) for i in range(3)]
    results = [(p.wait(timeout=90), p.stderr.read().decode() if p.stderr else "")
               for p in runs]
    assert [code for code, _ in results] == [0, 0, 0], results
    assert zk.get_children(f"{zk_path}/lock") == []
    assert zk.exists(guard) is None


def test_exit_codes(zk: Client, zk_hosts: str, zk_path: str, held_lock: Lock,
                    tmp_path: Path) -> None:
    free = f"{zk_path}/free"
    cases = [
        (["lock", free, "--", "sh", "-c", "exit 7"], 7),
        (["lock", free, "--", "sh", "-c", "kill -TERM $$"], 128 + signal.SIGTERM),
        (["lock", free, "--", "no-such-command-zkw"], exitcodes.COMMAND_NOT_FOUND),
        (["lock", free, "--", str(tmp_path)], exitcodes.COMMAND_NOT_EXECUTABLE),
        (["lock", free], exitcodes.USAGE),
        (["--timeout", "0.5", "lock", f"{zk_path}/lock", "--", "touch", str(tmp_path / "x")],
         exitcodes.LOCK_TIMEOUT),
    ]
    procs = [(_lock_run(zk_hosts, *argv), code) for argv, code in cases]
    for proc, code in procs:
        assert proc.wait(timeout=60) == code, (proc.args, proc.stderr.read() if proc.stderr
                                               else b"")
    assert not (tmp_path / "x").exists()  # the command did not run without the lock
    # The timed-out waiter left nothing: only the Python holder's node is queued.
    assert held_lock.contenders() == ["python-holder"]
    assert zk.get_children(free) == []


def test_json_report_and_environment(zk_hosts: str, zk_path: str) -> None:
    done = subprocess.run(
        [*ZKW, "--hosts", zk_hosts, "--json", "lock", f"{zk_path}/lock", "--id", "cron",
         "--", "sh", "-c", "echo node=$ZKWARDEN_LOCK_NODE token=$ZKWARDEN_FENCING_TOKEN"],
        capture_output=True, timeout=60, env=subprocess_env(), cwd=REPO)
    assert done.returncode == 0, done.stderr
    first, last = done.stdout.decode().splitlines()
    report = json.loads(last)
    assert first == f"node={report['node']} token={report['fencing_token']}"
    assert report["acquired"] is True and report["exit_code"] == 0
    assert report["command_exit"] == 0 and report["lost"] is None
    assert report["node"].startswith(f"{zk_path}/lock/_c_") and "-lock-" in report["node"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_forwards_the_signal_and_leaves_no_node(
    zk: Client, zk_hosts: str, zk_path: str, spawn: Callable[..., Proc], sig: int
) -> None:
    proc = spawn("--hosts", zk_hosts, "-v", "lock", f"{zk_path}/lock", "--",
                 "sh", "-c", "trap 'echo got-signal; exit 3' INT TERM; echo started; "
                 "while :; do sleep 0.05; done")
    proc.wait_for(r"^started$", timeout=30)
    assert len(zk.get_children(f"{zk_path}/lock")) == 1
    proc.popen.send_signal(sig)
    assert proc.finish(30) == 3  # the command's own exit code, after its trap ran
    assert "got-signal" in proc.output
    assert zk.get_children(f"{zk_path}/lock") == []


def test_interrupted_while_waiting_leaves_no_node(
    zk: Client, zk_hosts: str, zk_path: str, held_lock: Lock, spawn: Callable[..., Proc],
    tmp_path: Path,
) -> None:
    proc = spawn("--hosts", zk_hosts, "lock", f"{zk_path}/lock", "--", "touch",
                 str(tmp_path / "ran"))
    _wait_children(zk, f"{zk_path}/lock", 2)  # queued behind the holder
    assert proc.interrupt(30) == exitcodes.INTERRUPTED
    assert held_lock.contenders() == ["python-holder"]
    assert not (tmp_path / "ran").exists()


def test_lock_lost_terminates_the_command(
    zk: Client, zk_path: str, fault_proxy: FaultProxy, spawn: Callable[..., Proc],
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "pid"
    proc = spawn("--hosts", fault_proxy.connect_string, "--session-timeout", "2", "-v",
                 "lock", f"{zk_path}/lock", "--kill-after", "1", "--",
                 "sh", "-c", f"echo $$ > {pidfile}; echo started; exec sleep 60")
    proc.wait_for(r"^started$", timeout=30)
    pid = int(pidfile.read_text())
    began = time.monotonic()
    fault_proxy.blackhole()
    assert proc.finish(30) == exitcodes.LOCK_LOST
    took = time.monotonic() - began
    assert took < 10.0, took
    assert "lost" in proc.output and "terminat" in proc.output
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the command is gone
    # The server expires the session: the node goes with it.
    _wait_children(zk, f"{zk_path}/lock", 0, timeout=15.0)


def test_leader_reads_a_latch_and_an_election(zk: Client, zk_path: str, cli: Cli) -> None:
    a = LeaderLatch(zk, f"{zk_path}/latch", identifier="alpha")
    b = LeaderLatch(zk, f"{zk_path}/latch", identifier="beta")
    a.start()
    assert a.wait_leader(10.0)
    b.start()
    r = cli("leader", f"{zk_path}/latch")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0] == f"latch {zk_path}/latch: leader 'alpha', 2 participant(s)"
    assert lines[2].startswith("*  alpha") and lines[3].startswith("   beta")
    r = cli("--json", "leader", f"{zk_path}/latch")
    doc = r.json()
    assert doc["layout"] == "latch" and doc["leader"] == "alpha"
    assert [p["id"] for p in doc["participants"]] == ["alpha", "beta"]
    assert [p["leader"] for p in doc["participants"]] == [True, False]
    a.close()
    assert b.wait_leader(10.0)
    assert cli("--json", "leader", f"{zk_path}/latch").json()["leader"] == "beta"
    b.close()
    r = cli("leader", f"{zk_path}/latch")
    assert r.code == exitcodes.NO_LEADER
    # An election (LeaderSelector) has the mutex layout: lock- nodes.
    first = Lock(zk, f"{zk_path}/election", identifier="one")
    second = Lock(zk, f"{zk_path}/election", identifier="two")
    assert first.acquire(timeout=5.0)
    import threading

    waiter = threading.Thread(target=second.acquire, kwargs={"timeout": 10.0})
    waiter.start()
    _wait_children(zk, f"{zk_path}/election", 2)
    doc = cli("--json", "leader", f"{zk_path}/election").json()
    assert doc["layout"] == "election" and doc["leader"] == "one"
    assert [p["id"] for p in doc["participants"]] == ["one", "two"]
    first.release()
    waiter.join(10.0)
    second.release()
    r = cli("--json", "leader", f"{zk_path}/missing")  # a reaped container: nobody leads
    assert r.code == exitcodes.NO_LEADER and r.json()["layout"] == "missing"
