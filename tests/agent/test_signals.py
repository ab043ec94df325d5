"""The agent as a process: SIGTERM cleans up at once and exits 0; SIGHUP applies the
difference without touching unchanged registrations."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from zkwarden.discovery import Added, CacheChange, Removed, ServiceDiscovery, Updated
from zkwarden.testing import FaultProxy, ZooKeeperServer

from .conftest import FALL, INTERVAL, RISE, get_json, until, write_config


@pytest.fixture
async def tcp_service() -> AsyncIterator[int]:
    """A TCP port that accepts connections (what the tcp checks probe)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def _svc(sid: str, port: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": "web", "id": sid, "address": "127.0.0.1", "port": port, **extra,
        "check": {"type": "tcp", "interval": INTERVAL, "rise": RISE, "fall": FALL},
    }


def _signed(session_id: int) -> int:
    return session_id - (1 << 64) if session_id >= 1 << 63 else session_id


def _events(log: str) -> list[dict[str, Any]]:
    found = []
    for line in log.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))  # every line of the JSON format parses
    return found


async def test_sigterm_unregisters_at_once_and_exits_0(
    agent_process: Any, make_client: Any, zk_server: ZooKeeperServer, zk_hosts: str,
    zk_path: str, tmp_path: Path, tcp_service: int, listen_port: int,
    http: aiohttp.ClientSession,
) -> None:
    base = f"{zk_path}/services"
    config = tmp_path / "agent.toml"
    write_config(config, hosts=zk_hosts, base_path=base, listen_port=listen_port,
                 services=[_svc("term-1", tcp_service)], watch=["web"])
    proc = agent_process(config, listen_port)
    await proc.wait_serving(http)
    watcher = await make_client()
    node = f"{base}/web/term-1"
    await until(lambda: watcher.exists(node), 15, "registered")
    _, health, _ = await get_json(http, proc.base_url + "/v1/health")
    session = int(health["zookeeper"]["session_id"], 16)
    assert _signed(session) in zk_server.sessions()

    proc.signal(signal.SIGTERM)
    signalled = time.monotonic()

    async def gone() -> bool:
        return await watcher.exists(node) is None

    removed = await until(gone, 5, "node deleted")
    code = await proc.wait(10)
    exited = time.monotonic() - signalled
    print(f"\nMEASURED SIGTERM: node gone after {removed * 1000:.0f} ms, process exited "
          f"after {exited * 1000:.0f} ms (session timeout 2000 ms)")
    assert code == 0, proc.log()
    assert removed < 1.0  # explicit delete, not the 2 s session timeout
    assert exited < 5.0
    await until(lambda: _signed(session) not in zk_server.sessions(), 2, "session closed")
    events = _events(proc.log())
    names = [e["event"] for e in events]
    assert "agent_started" in names and "stop_requested" in names and names[-1] == "agent_stopped"


async def test_sighup_applies_the_difference_without_flapping(
    agent_process: Any, make_client: Any, zk_hosts: str, zk_path: str, tmp_path: Path,
    tcp_service: int, listen_port: int, http: aiohttp.ClientSession,
) -> None:
    base = f"{zk_path}/services"
    config = tmp_path / "agent.toml"
    before = [_svc("keep", tcp_service), _svc("drop", tcp_service),
              _svc("upd", tcp_service, weight=1)]
    write_config(config, hosts=zk_hosts, base_path=base, listen_port=listen_port,
                 services=before, watch=["web"])
    proc = agent_process(config, listen_port)
    await proc.wait_serving(http)

    watcher = await make_client()
    cache = await ServiceDiscovery(watcher, base).cache("web")
    log: list[CacheChange] = []

    async def follow() -> None:
        async for change in cache.changes():
            log.append(change)

    follower = asyncio.create_task(follow())
    try:
        await until(lambda: {i.id for i in cache.instances()} == {"keep", "drop", "upd"}, 15,
                    "all registered")
        keep_stat = await watcher.exists(f"{base}/web/keep")
        upd_stat = await watcher.exists(f"{base}/web/upd")
        assert keep_stat is not None and upd_stat is not None
        seen = len(log)

        after = [_svc("keep", tcp_service), _svc("upd", tcp_service, weight=5),
                 _svc("add", tcp_service)]
        write_config(config, hosts=zk_hosts, base_path=base, listen_port=listen_port,
                     services=after, watch=["web", "db"])
        proc.signal(signal.SIGHUP)
        await until(lambda: {i.id for i in cache.instances()} == {"keep", "upd", "add"}
                    and {i.id: i.weight for i in cache.instances()}["upd"] == 5, 15,
                    "reload applied")
        await asyncio.sleep(3 * INTERVAL)  # room for a late flap to show up
    finally:
        follower.cancel()
    changes = log[seen:]
    flapped = [c for c in changes if isinstance(c, Added | Removed)
               and c.instance.id in ("keep", "upd")]
    assert flapped == [], changes
    assert any(isinstance(c, Removed) and c.instance.id == "drop" for c in changes)
    assert any(isinstance(c, Added) and c.instance.id == "add" for c in changes)
    assert any(isinstance(c, Updated) and c.new.id == "upd" and c.new.weight == 5
               for c in changes)
    # The same nodes, never re-created.
    keep_now = await watcher.exists(f"{base}/web/keep")
    upd_now = await watcher.exists(f"{base}/web/upd")
    assert keep_now is not None and keep_now.czxid == keep_stat.czxid
    assert keep_now.mzxid == keep_stat.mzxid  # not even rewritten
    assert upd_now is not None and upd_now.czxid == upd_stat.czxid
    # The new watch list is applied too.
    status, listing, _ = await get_json(http, proc.base_url + "/v1/services")
    assert listing["services"]["db"]["watched"] is True

    # A broken file on SIGHUP is rejected; the agent keeps running as it was.
    config.write_text("[agent\n")
    proc.signal(signal.SIGHUP)
    await until(lambda: "reload_rejected" in proc.log(), 5, "rejected reload logged")
    status, health, _ = await get_json(http, proc.base_url + "/v1/health")
    assert status == 200 and len(health["checks"]) == 3

    proc.signal(signal.SIGINT)
    assert await proc.wait(10) == 0, proc.log()
    await until(lambda: not cache.instances(), 2, "all unregistered")
    events = {e["event"] for e in _events(proc.log())}
    assert {"config_reloaded", "reload_rejected", "agent_stopped"} <= events


async def test_sigterm_while_zookeeper_unreachable_exits_0_in_bounded_time(
    agent_process: Any, make_client: Any, fault_proxy: FaultProxy, zk_path: str,
    tmp_path: Path, tcp_service: int, listen_port: int, http: aiohttp.ClientSession,
) -> None:
    base = f"{zk_path}/services"
    config = tmp_path / "agent.toml"
    write_config(config, hosts=fault_proxy.connect_string, base_path=base,
                 listen_port=listen_port, services=[_svc("dark", tcp_service)])
    proc = agent_process(config, listen_port)
    await proc.wait_serving(http)
    watcher = await make_client()
    node = f"{base}/web/dark"
    await until(lambda: watcher.exists(node), 15, "registered")
    fault_proxy.blackhole()
    proc.signal(signal.SIGTERM)
    signalled = time.monotonic()
    code = await proc.wait(15)
    exited = time.monotonic() - signalled
    print(f"\nMEASURED SIGTERM with ZooKeeper blackholed: exited after {exited * 1000:.0f} ms "
          f"(shutdown_timeout 5 s)")
    assert code == 0, proc.log()
    assert exited < 5.0 + 3.0  # the budget, plus the client's bounded close
    fault_proxy.pass_through()

    async def gone() -> bool:
        return await watcher.exists(node) is None

    await until(gone, 5, "the session's node went with the session")
