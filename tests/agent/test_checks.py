"""Health checks: results, timeouts that kill, and the rise/fall rule."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from zkwarden.agent.checks import CheckResult, HealthState, make_check
from zkwarden.agent.config import CheckConfig
from zkwarden.testing import free_port


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def web_server() -> AsyncIterator[int]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="fine")

    async def boom(request: web.Request) -> web.Response:
        return web.Response(status=503, text="down for maintenance")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    app = web.Application()
    for path, handler in (("/ok", ok), ("/boom", boom), ("/moved", moved), ("/slow", slow)):
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await runner.cleanup()


def _http(port: int, path: str, timeout: float = 1.0) -> CheckConfig:
    return CheckConfig(type="http", url=f"http://127.0.0.1:{port}{path}", timeout=timeout)


async def test_http_check(session: aiohttp.ClientSession, web_server: int) -> None:
    ok = await make_check(_http(web_server, "/ok"), session).run()
    assert ok.ok and ok.output == "HTTP 200: fine"
    down = await make_check(_http(web_server, "/boom"), session).run()
    assert not down.ok and down.output == "HTTP 503: down for maintenance"
    moved = await make_check(_http(web_server, "/moved"), session).run()
    assert not moved.ok and moved.output.startswith("HTTP 302")
    started = time.monotonic()
    slow = await make_check(_http(web_server, "/slow", timeout=0.3), session).run()
    assert not slow.ok and "timed out" in slow.output
    assert time.monotonic() - started < 1.5
    refused = await make_check(_http(free_port(), "/ok"), session).run()
    assert not refused.ok and refused.output


async def test_tcp_check(session: aiohttp.ClientSession, web_server: int) -> None:
    ok = await make_check(CheckConfig(type="tcp", host="127.0.0.1", port=web_server), session).run()
    assert ok.ok
    refused = await make_check(
        CheckConfig(type="tcp", host="127.0.0.1", port=free_port()), session
    ).run()
    assert not refused.ok and refused.output


async def test_command_check(session: aiohttp.ClientSession) -> None:
    ok = await make_check(CheckConfig(type="command", command=("true",)), session).run()
    assert ok.ok and ok.output == "exit code 0"
    bad = await make_check(
        CheckConfig(type="command", command=("sh", "-c", "echo not ready; exit 3")), session
    ).run()
    assert not bad.ok and bad.output == "exit code 3: not ready"
    missing = await make_check(
        CheckConfig(type="command", command=("/nonexistent/check",)), session
    ).run()
    assert not missing.ok and "not found" in missing.output


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


async def test_command_timeout_kills_the_process_group(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 30 & echo $! > {pids}; echo $$ >> {pids}; wait"
    check = make_check(
        CheckConfig(type="command", command=("sh", "-c", script), timeout=0.5), session
    )
    started = time.monotonic()
    result = await check.run()
    assert not result.ok and "timed out" in result.output
    assert time.monotonic() - started < 2.0
    children = [int(p) for p in pids.read_text().split()]
    assert len(children) == 2
    deadline = time.monotonic() + 3
    while not all(_gone(p) for p in children):
        assert time.monotonic() < deadline, f"left behind: {children}"
        await asyncio.sleep(0.05)


async def test_command_check_does_not_block_the_loop(session: aiohttp.ClientSession) -> None:
    check = make_check(
        CheckConfig(type="command", command=("sleep", "0.5"), timeout=2.0), session
    )
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    result = await check.run()
    task.cancel()
    assert result.ok
    assert ticks > 20  # the loop kept running while the command did


def test_rise_and_fall() -> None:
    ok, bad = CheckResult(True, "", 0.0), CheckResult(False, "", 0.0)
    h = HealthState(rise=2, fall=3)
    assert h.status == "unknown"
    assert not h.record(ok) and h.status == "unknown"
    assert h.record(ok) and h.status == "passing"
    assert not h.record(bad) and not h.record(bad) and h.status == "passing"
    assert not h.record(ok)  # a success in between starts the failures over
    assert not h.record(bad) and not h.record(bad)
    assert h.record(bad) and h.status == "failing"
    assert not h.record(ok) and h.status == "failing"
    assert h.record(ok) and h.status == "passing"
    fresh = HealthState(rise=1, fall=1)
    assert fresh.record(bad) and fresh.status == "failing"


def test_pids_module_sanity() -> None:
    assert not _gone(os.getpid())
