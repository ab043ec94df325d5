"""ZooKeeperServer against the real ZooKeeper JVM (no mocks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zkwarden.errors import ConfigurationError, ZooKeeperError
from zkwarden.testing import (
    FourLetterWordError,
    ServerStartError,
    ZooKeeperNotFoundError,
    ZooKeeperServer,
    find_zookeeper_classpath,
    four_letter_word,
)

SRC = Path(__file__).resolve().parents[2] / "src"


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


def test_shared_server_serves_and_mntr_parses(zk_server: ZooKeeperServer) -> None:
    assert zk_server.four_letter_word("ruok") == "imok"
    assert zk_server.mode() == "standalone"
    metrics = zk_server.mntr()
    assert metrics["zk_server_state"] == "standalone"
    assert metrics["zk_version"].startswith("3.")
    assert int(metrics["zk_znode_count"]) >= 1
    assert zk_server.connect_string == f"127.0.0.1:{zk_server.port}"
    assert zk_server.host == "127.0.0.1"
    conf = zk_server.four_letter_word("conf")
    assert "tickTime=100\n" in conf
    assert "maxSessionTimeout=2000\n" in conf  # 20 ticks: sessions expire within ~2 s


def test_cons_sessions_and_ephemerals_track_a_raw_session(
    zk_fresh_server: ZooKeeperServer, raw_zk
) -> None:
    server = zk_fresh_server
    assert server.cons() == []
    assert server.alive_connections() == 0
    assert server.sessions() == set()

    conn = raw_zk(server.host, server.port)
    hs = conn.handshake()
    assert hs.timeout == 2000 and hs.session_id != 0
    assert conn.create("/eph", ephemeral=True) == 0
    assert conn.create("/plain") == 0

    cons = server.cons()
    assert len(cons) == 1 and f"sid={hs.session_id:#x}" in cons[0]
    assert server.alive_connections() == 1
    assert server.sessions() == {hs.session_id}
    assert server.ephemerals() == {hs.session_id: ["/eph"]}
    assert server.mntr()["zk_ephemerals_count"] == "1"

    conn.close_session()
    assert server.sessions() == set()
    assert server.ephemerals() == {}


def test_restart_keeps_data_and_sessions_wipe_loses_them(
    zk_fresh_server: ZooKeeperServer, raw_zk
) -> None:
    server = zk_fresh_server
    port, pid = server.port, server.pid
    conn = raw_zk(server.host, server.port)
    hs = conn.handshake()
    conn.create("/kept")
    conn.create("/eph", ephemeral=True)
    nodes = int(server.mntr()["zk_znode_count"])

    server.restart()
    assert server.port == port and server.pid != pid
    assert int(server.mntr()["zk_znode_count"]) == nodes
    assert hs.session_id in server.sessions()  # restored from the transaction log
    assert server.ephemerals() == {hs.session_id: ["/eph"]}

    server.wipe()
    assert server.running and server.port == port
    assert server.sessions() == set()
    assert server.ephemerals() == {}
    assert int(server.mntr()["zk_znode_count"]) == nodes - 2
    check = raw_zk(server.host, server.port)
    check.handshake()
    assert not check.exists("/kept")


def test_kill_then_start_keeps_data(zk_fresh_server: ZooKeeperServer, raw_zk) -> None:
    server = zk_fresh_server
    conn = raw_zk(server.host, server.port)
    conn.handshake()
    conn.create("/survivor")
    pid = server.pid
    assert pid is not None
    server.kill()
    assert not server.running and server.pid is None
    assert _wait_gone(pid, 5.0)
    with pytest.raises(FourLetterWordError):
        server.four_letter_word("ruok", timeout=1.0)
    server.start()
    check = raw_zk(server.host, server.port)
    check.handshake()
    assert check.exists("/survivor")


def test_data_dir_survives_stop(tmp_path: Path, raw_zk) -> None:
    data = tmp_path / "data"
    with ZooKeeperServer(data_dir=data) as server:
        conn = raw_zk(server.host, server.port)
        conn.handshake()
        conn.create("/persisted")
        conn.close()
        workdir = Path(str(server.log_path)).parent
        assert workdir.is_dir()
    assert not workdir.exists()  # the temporary directory is gone ...
    assert (data / "version-2").is_dir()  # ... the caller's data dir is not
    with ZooKeeperServer(data_dir=data) as again:
        check = raw_zk(again.host, again.port)
        check.handshake()
        assert check.exists("/persisted")


def test_stop_is_idempotent_and_cleans_up() -> None:
    server = ZooKeeperServer(tick_time=0.2, min_session_timeout=1.0, max_session_timeout=3.0)
    server.stop()  # never started: a no-op
    server.start()
    conf = server.four_letter_word("conf")
    assert "tickTime=200\n" in conf
    assert "minSessionTimeout=1000\n" in conf and "maxSessionTimeout=3000\n" in conf
    log_path = Path(str(server.log_path))
    assert log_path.is_file() and log_path.stat().st_size > 0
    server.start()  # already running: a no-op
    server.stop()
    server.stop()
    assert not server.running
    assert not log_path.parent.exists()


def test_whitelist_is_honoured_but_harness_words_always_allowed() -> None:
    with ZooKeeperServer(four_letter_words=["srvr"]) as server:
        assert server.four_letter_word("ruok") == "imok"
        with pytest.raises(FourLetterWordError, match="not in the whitelist"):
            server.mntr()
    with pytest.raises(ConfigurationError):
        four_letter_word("127.0.0.1", 1, "toolong")


def test_start_failure_reports_the_log() -> None:
    server = ZooKeeperServer(extra_config={"tickTime": "not-a-number"})
    with pytest.raises(ServerStartError) as info:
        server.start(timeout=20)
    message = str(info.value)
    assert "exited with code" in message
    assert "--- last lines of" in message and "not-a-number" in message
    assert isinstance(info.value, ZooKeeperError)
    assert not server.running
    server.stop()


def test_classpath_lookup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ZOOKEEPER_HOME", raising=False)
    assert "zookeeper" in find_zookeeper_classpath()
    monkeypatch.setenv("ZOOKEEPER_HOME", str(tmp_path))
    with pytest.raises(ZooKeeperNotFoundError, match="ZOOKEEPER_HOME") as info:
        find_zookeeper_classpath()
    assert "apt-get install zookeeper" in str(info.value)
    assert isinstance(info.value, ConfigurationError)
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "zookeeper-3.9.9.jar").write_bytes(b"")
    (tmp_path / "conf").mkdir()
    assert (
        find_zookeeper_classpath() == f"{tmp_path / 'conf'}:{tmp_path / 'lib'}/zookeeper-3.9.9.jar"
    )


def test_option_validation() -> None:
    with pytest.raises(ConfigurationError):
        ZooKeeperServer(tick_time=0)
    with pytest.raises(ConfigurationError):
        ZooKeeperServer(jvm_heap="lots")
    with pytest.raises(ConfigurationError):
        ZooKeeperServer(port=70000)


def test_no_orphan_jvm_when_python_is_killed(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from zkwarden.testing import ZooKeeperServer\n"
        "s = ZooKeeperServer().start()\n"
        "print(s.pid, s.log_path, flush=True)\n"
        "time.sleep(60)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(SRC))
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert child.stdout is not None
        pid_text, log_path = child.stdout.readline().split()
        jvm = int(pid_text)
        assert not _gone(jvm)
        child.send_signal(signal.SIGKILL)  # no atexit: only the watchdog can help
        child.wait(5)
        assert _wait_gone(jvm, 5.0), "the JVM outlived its Python process"
        deadline = time.monotonic() + 3.0
        while os.path.exists(log_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(log_path)
    finally:
        child.kill()
        child.wait(5)
