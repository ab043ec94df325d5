"""Every background task of the agent has an owner (issue 11).

The agent (reloads, reconfigures, removals, view changes), each local service (check
loop, registrar) and each view (the task following its cache) own their tasks: after
``stop()`` none is left pending, and a background task that fails has its exception
logged by zkwarden, not lost. Real ZooKeeper throughout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from _tasks_support import package_dirs, tasks_running_code_of

import zkwarden.agent as agent_pkg
import zkwarden.discovery as discovery_pkg
from zkwarden.agent import parse_config
from zkwarden.discovery import ServiceInstance

from .conftest import HealthService, service_entry, until

OWNED_DIRS = package_dirs(agent_pkg, discovery_pkg)


def agent_tasks() -> list[asyncio.Task[Any]]:
    """Pending tasks running code of zkwarden.agent or zkwarden.discovery."""
    return tasks_running_code_of(OWNED_DIRS)


class Boom(RuntimeError):
    """A bug in a background task (not a ZooKeeper outcome)."""


def logged(caplog: Any) -> list[logging.LogRecord]:
    """ERROR records of zkwarden's loggers carrying a Boom (not asyncio's GC report)."""
    return [
        r for r in caplog.records
        if r.name.startswith("zkwarden") and r.levelno >= logging.ERROR
        and r.exc_info and isinstance(r.exc_info[1], Boom)
    ]


def with_services(agent: Any, services: list[dict[str, Any]], watch: list[str]) -> Any:
    """The agent's config with other services and watched names."""
    doc = {
        "zookeeper": {
            "hosts": agent.config.zookeeper.hosts,
            "session_timeout": "2s",
            "base_path": agent.config.zookeeper.base_path,
        },
        "agent": {"listen": "127.0.0.1:0", "watch": watch},
        "service": services,
    }
    new = parse_config(doc, source="test")
    return dataclasses.replace(new, agent=dataclasses.replace(
        new.agent, listen_host=agent.config.agent.listen_host,
        listen_port=agent.config.agent.listen_port,
    ))


async def test_stop_with_work_in_flight_leaves_no_task(
    make_agent: Any, make_client: Any, health_service: HealthService, zk_path: str
) -> None:
    base = f"{zk_path}/services"
    check = {"type": "http", "url": health_service.url}
    a = service_entry("web", "a", health_service.port, check)
    b = service_entry("web", "b", health_service.port)  # no check: registered at once
    agent = await make_agent([a, b], watch=["web"])
    watcher = await make_client()
    await until(lambda: _is(watcher.get_children(f"{base}/web"), ["a", "b"]), 10,
                "both registered")
    c = service_entry("api", "c", health_service.port)
    b2 = dict(b, port=health_service.port + 1)  # changed in place: a reconfigure
    async with asyncio.timeout(20):
        # Removal of "a", addition of "c", reconfigure of "b", a new watched view and
        # a dropped one: all of it still in flight when stop() begins.
        assert await agent.reload(with_services(agent, [b2, c], ["api"]))
        agent.request_reload()  # a reload task of its own (no file: rejected)
        assert agent_tasks(), "the agent should have background work running"
        await agent.stop()
    assert agent_tasks() == [], [t.get_name() for t in agent_tasks()]
    assert await watcher.exists(f"{base}/web/a") is None
    assert await watcher.exists(f"{base}/web/b") is None


async def _is(value: Any, expected: Any) -> bool:
    try:
        return sorted(await value) == expected
    except Exception:
        return False


async def test_registrar_failure_is_logged_and_retried(
    make_agent: Any, make_client: Any, health_service: HealthService, zk_path: str,
    caplog: Any, monkeypatch: Any,
) -> None:
    base = f"{zk_path}/services"
    agent = await make_agent([])
    watcher = await make_client()
    real_register = agent.registry.register
    calls = 0

    async def register(instance: ServiceInstance, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls <= 1:
            raise Boom("register failed in a way ZooKeeper never reports")
        await real_register(instance, **kwargs)

    monkeypatch.setattr(agent.registry, "register", register)
    caplog.set_level(logging.ERROR, logger="zkwarden")
    async with asyncio.timeout(15):
        cfg = with_services(agent, [service_entry("web", "w", health_service.port)], [])
        assert await agent.reload(cfg)
        # Old code: the registrar task died of Boom, silently; nothing was registered.
        await until(lambda: logged(caplog), 5, "registrar failure logged")
        await until(lambda: watcher.exists(f"{base}/web/w"), 5, "registered on retry")
        await agent.stop()
    assert agent_tasks() == []


async def test_failing_background_task_is_logged(
    make_agent: Any, caplog: Any, monkeypatch: Any
) -> None:
    agent = await make_agent([])

    async def open_view(name: str, *, pinned: bool) -> Any:
        raise Boom(f"cannot open a view of {name}")

    monkeypatch.setattr(agent.views, "open", open_view)
    caplog.set_level(logging.ERROR, logger="zkwarden")
    async with asyncio.timeout(10):
        assert await agent.reload(with_services(agent, [], ["api"]))
        # Old code: a fire-and-forget task; its exception was never retrieved.
        await until(lambda: logged(caplog), 5, "background failure logged")
        await agent.stop()
    assert agent_tasks() == []
    assert "watch api" in logged(caplog)[0].getMessage()
