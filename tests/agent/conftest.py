"""Fixtures for the agent tests: a real HTTP service to health-check, in-process agents,
subprocess agents, and watcher clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from zkwarden import AsyncClient
from zkwarden.agent import Agent, parse_config
from zkwarden.testing import free_port

SRC = str(Path(__file__).resolve().parents[2] / "src")

# The check timing the tests use (DESIGN: short intervals, rise 2, fall 2).
INTERVAL = 0.2
RISE = 2
FALL = 2


async def until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> float:
    """Poll ``predicate`` (sync or async) every 10 ms; return the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - started
        assert time.monotonic() < deadline, f"condition not met within {timeout}s: {what}"
        await asyncio.sleep(0.01)


class HealthService:
    """A real HTTP service whose ``/health`` answers 200 or 500 as the test says."""

    def __init__(self) -> None:
        self.healthy = True
        self.hits = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _health(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.healthy:
            return web.Response(text="ok")
        return web.Response(status=500, text="unhealthy")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"


@pytest.fixture
async def health_service() -> AsyncIterator[HealthService]:
    svc = HealthService()
    await svc.start()
    yield svc
    await svc.stop()


def service_entry(
    name: str, sid: str, port: int, check: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "id": sid, "address": "127.0.0.1", "port": port}
    entry.update(extra)
    if check is not None:
        entry["check"] = {"interval": INTERVAL, "rise": RISE, "fall": FALL, **check}
    return entry


AgentFactory = Callable[..., Awaitable[Agent]]


@pytest.fixture
async def make_agent(zk_hosts: str, zk_path: str) -> AsyncIterator[AgentFactory]:
    """Start in-process agents on a free port under ``zk_path``; all stopped afterwards."""
    agents: list[Agent] = []

    async def make(
        services: list[dict[str, Any]] = (),  # type: ignore[assignment]
        *,
        watch: list[str] = (),  # type: ignore[assignment]
        hosts: str | None = None,
        snapshot_dir: str | None = None,
        **agent_opts: Any,
    ) -> Agent:
        doc: dict[str, Any] = {
            "zookeeper": {
                "hosts": hosts or zk_hosts,
                "session_timeout": "2s",
                "base_path": f"{zk_path}/services",
            },
            "agent": {"listen": "127.0.0.1:0", "watch": list(watch), **agent_opts},
            "service": list(services),
        }
        if snapshot_dir is not None:
            doc["agent"]["snapshot_dir"] = snapshot_dir
        agent = Agent(parse_config(doc, source="test"))
        agents.append(agent)
        await agent.start()
        return agent

    yield make
    for agent in agents:
        await agent.stop()


@pytest.fixture
async def make_client(zk_hosts: str) -> AsyncIterator[Callable[..., Awaitable[AsyncClient]]]:
    made: list[AsyncClient] = []

    async def make(hosts: str | None = None, **kwargs: Any) -> AsyncClient:
        kwargs.setdefault("session_timeout", 2.0)
        client = AsyncClient(hosts or zk_hosts, **kwargs)
        made.append(client)
        await client.start()
        return client

    yield make
    for client in made:
        await client.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def get_json(
    http: aiohttp.ClientSession, url: str, **kwargs: Any
) -> tuple[int, dict[str, Any], Any]:
    async with http.get(url, **kwargs) as resp:
        return resp.status, await resp.json(), resp.headers


# --- subprocess agents -------------------------------------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def write_config(
    path: Path,
    *,
    hosts: str,
    base_path: str,
    listen_port: int,
    services: list[dict[str, Any]] = (),  # type: ignore[assignment]
    watch: list[str] = (),  # type: ignore[assignment]
    log_format: str = "json",
) -> None:
    lines = [
        "[zookeeper]",
        f"hosts = {toml_value(hosts)}",
        'session_timeout = "2s"',
        f"base_path = {toml_value(base_path)}",
        "",
        "[agent]",
        f'listen = "127.0.0.1:{listen_port}"',
        f"watch = {toml_value(list(watch))}",
        'shutdown_timeout = "5s"',
        "",
        "[log]",
        f"format = {toml_value(log_format)}",
        "",
    ]
    for svc in services:
        lines.append("[[service]]")
        for key, value in svc.items():
            if key != "check":
                lines.append(f"{key} = {toml_value(value)}")
        if "check" in svc:
            lines.append("[service.check]")
            for key, value in svc["check"].items():
                lines.append(f"{key} = {toml_value(value)}")
        lines.append("")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, path)


class AgentProcess:
    """``python -m zkwarden.agent -c <file>`` as a child process."""

    def __init__(self, config_path: Path, port: int, log_path: Path) -> None:
        self.config_path = config_path
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "zkwarden.agent", "-c", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    async def wait_serving(self, http: aiohttp.ClientSession, timeout: float = 15.0) -> None:
        async def serving() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, f"agent exited early:\n{self.log()}"
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(self.base_url + "/v1/health") as resp:
                    return resp.status == 200
            return False

        await until(serving, timeout, "agent serving")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float) -> int:
        assert self.proc is not None
        await until(lambda: self.proc is not None and self.proc.poll() is not None, timeout,
                    "agent exit")
        return self.proc.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def agent_process(tmp_path: Path) -> Any:
    made: list[AgentProcess] = []

    def make(config_path: Path, port: int) -> AgentProcess:
        proc = AgentProcess(config_path, port, tmp_path / f"agent-{len(made)}.log")
        made.append(proc)
        proc.start()
        return proc

    yield make
    for proc in made:
        proc.kill()


@pytest.fixture
def listen_port() -> int:
    return free_port()
