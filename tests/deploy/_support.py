"""Paths of the deployment files, and the agent.toml of the Kubernetes example."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
UNIT = DEPLOY / "systemd" / "zkwarden-agent.service"
KUBERNETES = DEPLOY / "kubernetes"
MANIFESTS = sorted(KUBERNETES.glob("*.yaml"))


def documents(path: Path) -> list[dict[str, object]]:
    """Every YAML document in ``path``."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def configmap_agent_toml() -> str:
    """The agent.toml that the example ConfigMap mounts."""
    (cm,) = documents(KUBERNETES / "configmap.yaml")
    data = cm["data"]
    assert isinstance(data, dict)
    return str(data["agent.toml"])


def for_test(toml: str, *, hosts: str, base_path: str, listen_port: int, snapshot_dir: str,
             check_url: str) -> str:
    """The example agent.toml pointed at the test's ZooKeeper, port and health service;
    everything else (env placeholders, shutdown timeout, service) as shipped."""
    toml = re.sub(r'(?m)^hosts = ".*"$', f'hosts = "{hosts}"\nbase_path = "{base_path}"', toml)
    toml = re.sub(r'(?m)^listen = ".*"$', f'listen = "127.0.0.1:{listen_port}"', toml)
    toml = re.sub(r'(?m)^snapshot_dir = ".*"$', f'snapshot_dir = "{snapshot_dir}"', toml)
    toml = re.sub(r'(?m)^url = ".*"$', f'url = "{check_url}"', toml)
    return toml


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    """Poll ``predicate`` (sync or async) every 20 ms until true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.02)


class App:
    """The application beside the sidecar: a real HTTP server with ``/healthz``."""

    def __init__(self) -> None:
        self.healthy = True
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok") if self.healthy else web.Response(status=500)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._health)
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
        return f"http://127.0.0.1:{self.port}/healthz"
