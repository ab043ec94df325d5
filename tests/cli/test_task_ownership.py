"""The CLI's background tasks have owners (issue 11): ``discover --watch``'s consumer and
the demo fleet's cache consumers end with their owner, and an ended stream is reported,
never waited on forever. Real ZooKeeper throughout."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import pytest
from _tasks_support import package_dirs, tasks_running_code_of

import zkwarden.cli as cli_pkg
import zkwarden.discovery as discovery_pkg
from zkwarden import AsyncClient
from zkwarden.cli.demo.fleet import DemoConfig, Fleet
from zkwarden.cli.demo.report import Report
from zkwarden.cli.output import Output
from zkwarden.cli.services import LiveView, _live
from zkwarden.discovery import ServiceDiscovery, ServiceInstance, ServiceRegistry
from zkwarden.errors import ClientClosedError

pytestmark = pytest.mark.asyncio

OWNED_DIRS = package_dirs(cli_pkg, discovery_pkg)


def owned_tasks() -> list[asyncio.Task[Any]]:
    """Pending tasks running code of zkwarden.cli or zkwarden.discovery."""
    return tasks_running_code_of(OWNED_DIRS)


async def until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class Captured(Output):
    """Text output into a buffer (not a terminal: changes are reported line by line)."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = io.StringIO()

    @property
    def stdout(self) -> Any:
        return self.buffer


async def test_live_view_reports_the_end_of_its_stream(zk_hosts: str, zk_path: str) -> None:
    base = f"{zk_path}/services"
    async with AsyncClient(zk_hosts, session_timeout=2.0) as zk:
        reg = ServiceRegistry(zk, base)
        disc = ServiceDiscovery(zk, base)
        await reg.register(ServiceInstance(name="web", id="a", address="h", port=1))
        cache = await disc.cache("web")
        out = Captured()
        view = LiveView(out, zk, "web")
        assert not view.redraws
        live = asyncio.create_task(_live(cache, view))
        try:
            async with asyncio.timeout(10):
                await until(lambda: "web: 1 instances" in out.buffer.getvalue())
                await reg.register(ServiceInstance(name="web", id="b", address="h", port=2))
                await until(lambda: len(cache.instances()) == 2)
                await cache.close()
                # Old code: the loop waited forever for a change after the stream ended.
                with pytest.raises(ClientClosedError):
                    await live
        finally:
            live.cancel()
            await asyncio.gather(live, return_exceptions=True)
        # The change that came before the end was reported, not dropped with it.
        assert "+ " in out.buffer.getvalue() and " b  h:2" in out.buffer.getvalue()
        await reg.close()
        await disc.close()
    assert owned_tasks() == []


async def test_fleet_stop_without_close_fleet_leaves_no_task() -> None:
    config = DemoConfig.make(quick=True, instances=4, clients=1, caches=2)
    fleet = Fleet(config, Report(Captured()))
    try:
        async with asyncio.timeout(60):
            await fleet.start()
            assert owned_tasks(), "the caches and their consumers should be running"
    finally:
        # An interrupted demo: stop() alone must end every task the fleet started.
        async with asyncio.timeout(30):
            await fleet.stop()
    assert owned_tasks() == [], [t.get_name() for t in owned_tasks()]
