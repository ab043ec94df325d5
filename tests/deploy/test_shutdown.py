"""The agent run the way the systemd unit and the Kubernetes sidecar run it: the unit's
ExecStartPre/ExecStart command lines with the example ConfigMap's agent.toml and the
environment the pod gives it (POD_IP, POD_NAME, ZK_AUTH), then SIGTERM (what `systemctl
stop` and the kubelet send): exit code 0 and the registration gone from ZooKeeper, while
the app it registered is still up. The unit file passes `systemd-analyze verify`, and
the image's HEALTHCHECK tells the serving agent from the stopped one."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from zkwarden import AsyncClient
from zkwarden.testing import free_port

from ._support import UNIT, App, configmap_agent_toml, for_test, until
from .test_image import run_healthcheck
from .test_manifests import readiness_command

ZKWARDEN = Path(sys.executable).parent / "zkwarden"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"


def _unit_values(key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines()
            if line.startswith(f"{key}=")]


def _unit_command(key: str, config: Path) -> list[str]:
    """The unit's ``key`` command line, run with this checkout's zkwarden and ``config``."""
    (line,) = _unit_values(key)
    argv = shlex.split(line)
    assert argv[0] == "/opt/zkwarden/bin/zkwarden" and "/etc/zkwarden/agent.toml" in argv
    return [str(ZKWARDEN)] + [str(config) if a == "/etc/zkwarden/agent.toml" else a
                              for a in argv[1:]]


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def _probe(port: int) -> int:
    """The Deployment's exec readiness probe, aimed at this test's port."""
    argv = readiness_command()
    assert argv[0] == "python"
    code = argv[2].replace("127.0.0.1:8731", f"127.0.0.1:{port}")
    return subprocess.run([sys.executable, "-c", code], capture_output=True,
                          timeout=30).returncode


@pytest.fixture
async def app() -> AsyncIterator[App]:
    svc = App()
    await svc.start()
    yield svc
    await svc.stop()


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/zkwarden/bin/zkwarden", str(ZKWARDEN)))
    proc = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    # ...and verify does catch a mistake (it only warns, so look at what it says).
    broken = tmp_path / "broken" / UNIT.name
    broken.parent.mkdir()
    broken.write_text(unit.read_text().replace("KillMode=mixed", "KillMode=mixd"))
    proc = subprocess.run([SYSTEMD_ANALYZE, "verify", str(broken)], capture_output=True,
                          text=True, timeout=60)
    assert "mixd" in proc.stderr


def test_unit_stops_with_sigterm_and_does_not_restart_a_bad_config() -> None:
    assert _unit_values("KillSignal") == ["SIGTERM"]
    assert _unit_values("ExecReload") == ["/bin/kill -HUP $MAINPID"]
    assert _unit_values("RestartPreventExitStatus") == ["2"]
    (stop,) = _unit_values("TimeoutStopSec")
    # Past the agent's own bound on its shutdown (the example's and the default: 10 s).
    assert int(stop) > 10


async def test_sigterm_unregisters_and_exits_0(
    tmp_path: Path, zk_hosts: str, zk_path: str, app: App
) -> None:
    port = free_port()
    config = tmp_path / "agent.toml"
    config.write_text(for_test(
        configmap_agent_toml(), hosts=zk_hosts, base_path=f"{zk_path}/services",
        listen_port=port, snapshot_dir=str(tmp_path / "snap"), check_url=app.url,
    ))
    env = dict(os.environ, POD_IP="10.9.8.7", POD_NAME="web-5f6d-x2x9q", ZK_AUTH="agent:pw")
    check = await asyncio.to_thread(_run, _unit_command("ExecStartPre", config), env)
    assert check.returncode == 0, check.stderr
    log = tmp_path / "agent.log"
    node = f"{zk_path}/services/web/web-5f6d-x2x9q"
    proc = _start(_unit_command("ExecStart", config), env, log)
    watcher = AsyncClient(zk_hosts)
    await watcher.start()
    try:
        async def registered() -> bool:
            assert proc.poll() is None, log.read_text()
            return await watcher.exists(node) is not None

        await until(registered, 20, "registered")
        data, _ = await watcher.get(node)
        assert json.loads(data)["address"] == "10.9.8.7"
        url = f"http://127.0.0.1:{port}/v1/health"
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200
        assert await asyncio.to_thread(run_healthcheck, url) == 0
        assert await asyncio.to_thread(_probe, port) == 0  # the pod's readiness probe

        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = await asyncio.to_thread(proc.wait, 20)
        took = time.monotonic() - started
        assert code == 0, log.read_text()
        assert await watcher.exists(node) is None
        assert took < 10, f"stop took {took:.1f}s"
        # The app is still serving: the registration went first.
        async with aiohttp.ClientSession() as http, http.get(app.url) as resp:
            assert resp.status == 200
        assert await asyncio.to_thread(run_healthcheck, url) != 0
        assert await asyncio.to_thread(_probe, port) != 0
        print(f"\nMEASURED sidecar stop: SIGTERM -> exit 0, node deleted, in {took:.2f}s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        await watcher.close()
