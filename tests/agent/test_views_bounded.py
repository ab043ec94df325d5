"""On-demand views are bounded: made-up names cost nothing (no view, watch, metrics series
or snapshot), idle views are evicted LRU, views of deleted services go with their
snapshot, names are length-bounded, and every error the API gives is JSON."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from zkwarden import AsyncClient
from zkwarden.discovery import ServiceInstance, ServiceRegistry
from zkwarden.testing import four_letter_word

from .conftest import get_json, until


def _watched_paths(zk_hosts: str, session_id: int) -> list[str]:
    """The paths the server holds a watch on for ``session_id`` (four-letter word wchc)."""
    host, _, port = zk_hosts.rpartition(":")
    text = four_letter_word(host, int(port), "wchc")
    paths: list[str] = []
    mine = False
    for line in text.splitlines():
        if line.startswith("0x"):
            mine = int(line, 16) == session_id
        elif mine and line.strip():
            paths.append(line.strip())
    return paths


async def _view_series(http: aiohttp.ClientSession, base_url: str) -> set[str]:
    async with http.get(base_url + "/metrics") as resp:
        text = await resp.text()
    return {
        s.labels["service"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if family.name.startswith("zkwarden_agent_cache_") and "service" in s.labels
    }


async def _register(client: AsyncClient, base: str, *names: str) -> ServiceRegistry:
    registry = ServiceRegistry(client, base)
    for name in names:
        await registry.register(
            ServiceInstance(name=name, id=f"{name}-1", address="10.0.0.1", port=80)
        )
    return registry


async def test_made_up_names_leave_nothing_and_real_services_still_work(
    make_agent: Any, make_client: Any, zk_hosts: str, zk_path: str,
    http: aiohttp.ClientSession, tmp_path: Path,
) -> None:
    snap = tmp_path / "snap"
    agent = await make_agent(snapshot_dir=str(snap))
    await until(lambda: agent.connected, 10, "agent connected")
    sem = asyncio.Semaphore(16)

    async def ask(i: int) -> tuple[int, dict[str, Any]]:
        async with sem:
            status, body, _ = await get_json(http, f"{agent.base_url}/v1/services/made-up-{i}")
            return status, body

    # More made-up names than the agent keeps on-demand views (256 by default).
    answers = await asyncio.wait_for(asyncio.gather(*(ask(i) for i in range(300))), 60)
    assert {status for status, _ in answers} == {404}
    assert all("no service named" in body["error"] for _, body in answers)
    assert agent.views.on_demand_count() == 0
    assert await _view_series(http, agent.base_url) == set()
    assert not snap.exists() or os.listdir(snap) == []
    session = agent.client.session_id
    assert not [p for p in _watched_paths(zk_hosts, session) if "made-up" in p]
    # A real service, asked for afterwards, gets its view.
    other = await make_client()
    await _register(other, f"{zk_path}/services", "real")
    status, body, _ = await get_json(http, f"{agent.base_url}/v1/services/real")
    assert status == 200 and [i["id"] for i in body["instances"]] == ["real-1"]
    assert agent.views.on_demand_count() == 1


async def test_least_recently_used_idle_view_makes_room(
    make_agent: Any, make_client: Any, zk_path: str, http: aiohttp.ClientSession
) -> None:
    other = await make_client()
    await _register(other, f"{zk_path}/services", "s0", "s1", "s2", "s3")
    agent = await make_agent(max_on_demand=3)
    url = agent.base_url + "/v1/services/"
    for name in ("s0", "s1", "s2"):
        assert (await get_json(http, url + name))[0] == 200
    assert (await get_json(http, url + "s0"))[0] == 200  # s0 used again: s1 is now the LRU
    status, body, _ = await get_json(http, url + "s3")
    assert status == 200 and body["instances"][0]["id"] == "s3-1"
    assert agent.views.get("s1") is None
    assert {v.name for v in agent.views.all()} == {"s0", "s2", "s3"}
    assert "s1" not in await _view_series(http, agent.base_url)


async def test_views_in_use_are_not_evicted_503_json_until_one_is_free(
    make_agent: Any, make_client: Any, zk_path: str, http: aiohttp.ClientSession
) -> None:
    other = await make_client()
    await _register(other, f"{zk_path}/services", "busy", "next")
    agent = await make_agent(max_on_demand=1)
    url = agent.base_url + "/v1/services/"
    status, body, headers = await get_json(http, url + "busy")
    assert status == 200
    # A blocking query holds the only on-demand view.
    held = asyncio.ensure_future(get_json(http, f"{url}busy?index={body['index']}&wait=2s"))
    await until(lambda: agent.views.get("busy").users == 1, 5, "query held")
    status, body, _ = await get_json(http, url + "next")
    assert status == 503 and "in use" in body["error"]
    await asyncio.wait_for(held, 10)
    status, body, _ = await get_json(http, url + "next")
    assert status == 200 and agent.views.get("busy") is None


async def test_idle_views_are_evicted_by_the_sweeper(
    make_agent: Any, make_client: Any, zk_path: str, http: aiohttp.ClientSession
) -> None:
    other = await make_client()
    await _register(other, f"{zk_path}/services", "idle")
    agent = await make_agent(watch=["pinned"], on_demand_idle="0.4s")
    assert (await get_json(http, agent.base_url + "/v1/services/idle"))[0] == 200
    assert agent.views.get("idle") is not None
    await until(lambda: agent.views.get("idle") is None, 5, "idle view evicted")
    assert agent.views.get("pinned") is not None  # watched views are never evicted
    assert "idle" not in await _view_series(http, agent.base_url)


async def test_view_of_a_deleted_service_goes_with_its_snapshot(
    make_agent: Any, make_client: Any, zk_path: str, http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    snap = tmp_path / "snap"
    other = await make_client()
    registry = await _register(other, f"{zk_path}/services", "doomed")
    agent = await make_agent(snapshot_dir=str(snap))
    assert (await get_json(http, agent.base_url + "/v1/services/doomed"))[0] == 200
    await until(lambda: any("doomed" in f for f in os.listdir(snap)), 5, "snapshot written")
    view = agent.views.get("doomed")
    await registry.close()  # unregisters doomed-1
    await other.delete(f"{zk_path}/services/doomed")
    await until(lambda: view.instances() == [], 5, "instance gone from the view")
    # Recently used, so not idle: it goes because the service does not exist any more.
    assert await agent.views.sweep(agent.service_exists) == ["doomed"]
    assert agent.views.get("doomed") is None
    assert [f for f in os.listdir(snap) if "doomed" in f] == []
    assert "doomed" not in await _view_series(http, agent.base_url)


async def test_long_names_and_unknown_routes_get_json_errors(
    make_agent: Any, http: aiohttp.ClientSession
) -> None:
    agent = await make_agent()
    base = agent.base_url
    status, body, _ = await get_json(http, base + "/v1/services/" + "n" * 201)
    assert status == 400 and "longer than 200" in body["error"]
    assert agent.views.on_demand_count() == 0
    async with http.get(base + "/nothing/here") as resp:
        assert resp.status == 404 and resp.content_type == "application/json"
        assert "no such endpoint" in (await resp.json())["error"]
    async with http.post(base + "/v1/services") as resp:
        assert resp.status == 405 and resp.content_type == "application/json"
        assert "GET" in resp.headers["Allow"] and "POST" in (await resp.json())["error"]
    # Over-long URL and header: rejected by the HTTP parser, still in JSON.
    async with http.get(base + "/v1/services/" + "x" * 20000) as resp:
        assert resp.status == 414 and resp.content_type == "application/json"
        assert "error" in await resp.json()
    async with http.get(base + "/v1/health", headers={"X-Big": "y" * 20000}) as resp:
        assert resp.status == 431 and resp.content_type == "application/json"
        assert "error" in await resp.json()
