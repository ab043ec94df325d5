"""Process life: fork() detection, and interpreter exit with a client left open."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sync_helpers import no_new_threads, wait_until, zk_threads

from zkwarden import Client, ClientState
from zkwarden._aio.retry import Backoff
from zkwarden.sync import client as sync_client
from zkwarden.testing import FaultProxy

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_fork_child_gets_forked_client_error(zk: Client, zk_path: str) -> None:
    node = zk.create(zk_path, b"parent", ephemeral=True)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report what each call raises, never run pytest's exit code
        try:
            os.close(read_end)
            outcomes = []
            for call in (lambda: zk.get(node), lambda: zk.watch(node, "data", print),
                         lambda: zk.transaction(), lambda: zk.add_listener(print)):
                try:
                    call()
                    outcomes.append("no error")
                except BaseException as exc:  # noqa: BLE001
                    outcomes.append(type(exc).__name__)
            zk.close()  # a no-op in the child: the session is the parent's
            outcomes.append("closed quietly")
            os.write(write_end, ",".join(outcomes).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert report == ",".join(["ForkedClientError"] * 4 + ["closed quietly"])
    # The parent's client and session are untouched.
    assert zk.get(node)[0] == b"parent"


def _run_script(body: str, hosts: str, path: str) -> tuple[str, subprocess.CompletedProcess[str],
                                                              float]:
    """Run ``body``; return its first stdout line (printed when it is ready to exit), the
    finished process, and how long it took to exit after that line."""
    script = textwrap.dedent(body)
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", script, hosts, path], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    ready_at = time.monotonic()
    out, err = proc.communicate(timeout=30)
    exited_after = time.monotonic() - ready_at
    assert line.startswith("ready"), (line, out, err)
    return line.strip(), subprocess.CompletedProcess(proc.args, proc.returncode, out, err), \
        exited_after


EXIT_WITHOUT_CLOSE = """
    import sys, threading, time
    from zkwarden import Client
    hosts, path = sys.argv[1], sys.argv[2]
    zk = Client(hosts, session_timeout=30.0)
    zk.start()
    zk.create(path, b"", ephemeral=True)
    zk.watch(path, "data", lambda ev: None)
    zk.add_listener(lambda change: None)
    {extra}
    print("ready", flush=True)
    # no close(): the interpreter exits with the client open
"""


@pytest.mark.parametrize("extra", [
    "",
    # A callback blocked forever must not hold the process either.
    "zk.watch(path, 'exists', lambda ev: time.sleep(3600)); time.sleep(0.2)",
    # Nor a non-daemon user thread that ends on its own.
    "threading.Thread(target=time.sleep, args=(0.2,)).start()",
], ids=["plain", "blocked-callback", "user-thread"])
def test_exit_without_close_drops_the_session(
    zk_hosts: str, zk_path: str, observer: Client, extra: str
) -> None:
    # session_timeout=30: if the session were left to expire, the node would stay for 30 s.
    _, result, exited_after = _run_script(EXIT_WITHOUT_CLOSE.format(extra=extra), zk_hosts,
                                       zk_path)
    assert result.returncode == 0, result.stderr
    assert exited_after < 5.0
    assert observer.exists(zk_path) is None
    assert "Traceback" not in result.stderr, result.stderr


def test_forked_child_exit_keeps_parent_session(
    zk_hosts: str, zk_path: str, observer: Client
) -> None:
    # A child that exits normally runs the atexit hooks it inherited: they must not close
    # the parent's session. The parent still owns its node until it exits itself.
    script = """
        import os, sys, warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        from zkwarden import Client
        hosts, path = sys.argv[1], sys.argv[2]
        zk = Client(hosts, session_timeout=30.0)
        zk.start()
        zk.create(path, b"", ephemeral=True)
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # atexit hooks run here
        os.waitpid(pid, 0)
        alive = zk.exists(path) is not None and zk.connected
        print("ready", "alive" if alive else "gone", flush=True)
    """
    line, result, exited_after = _run_script(script, zk_hosts, zk_path)
    assert result.returncode == 0, result.stderr
    assert line == "ready alive"
    assert exited_after < 5.0
    assert observer.exists(zk_path) is None



def test_exit_hook_closes_a_disconnected_session(
    fault_proxy: FaultProxy, zk_path: str, observer: Client
) -> None:
    # Disconnected when the interpreter exits: the session is closed from a plain socket
    # (asyncio.to_thread, which the AsyncClient would use, is refused during exit).
    zk = Client(fault_proxy.connect_string, session_timeout=30.0,
                backoff=Backoff(initial=5.0, maximum=10.0))
    zk.start()
    before = set(zk_threads()) - {t for t in zk_threads() if t.name.startswith(zk._name + "-")}
    node = zk.create(zk_path, b"", ephemeral=True)
    fault_proxy.refuse_connections(True)
    fault_proxy.reset()
    assert wait_until(lambda: zk.state is ClientState.SUSPENDED, 5.0)
    fault_proxy.refuse_connections(False)
    t0 = time.monotonic()
    assert not zk.connected
    zk._close(sync_client._EXIT_CLOSE_TIMEOUT, join_callbacks=False, at_exit=True)
    assert time.monotonic() - t0 < 3.0
    assert observer.exists(node) is None
    assert no_new_threads(before)
