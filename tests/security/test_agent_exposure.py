"""The agent's HTTP API lets no one in by accident: loopback by default, a non-loopback
address only when asked for (and logged), bearer tokens, a Unix socket, GET only."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from zkwarden.agent import Agent, parse_config
from zkwarden.agent.config import DEFAULT_LISTEN
from zkwarden.errors import ConfigurationError

TOKEN = "tok-0123456789abcdef-SECRET"


def config(zk_hosts: str, zk_path: str, **agent: Any) -> dict[str, Any]:
    return {"zookeeper": {"hosts": zk_hosts, "session_timeout": "2s",
                          "base_path": f"{zk_path}/services"},
            "agent": {"listen": "127.0.0.1:0", **agent}}


@pytest.fixture
async def agents() -> AsyncIterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        await agent.stop()


async def start(agents: list[Agent], doc: dict[str, Any]) -> Agent:
    agent = Agent(parse_config(doc, source="test"))
    agents.append(agent)
    await agent.start()
    return agent


def test_default_listen_is_loopback() -> None:
    assert DEFAULT_LISTEN.startswith("127.0.0.1:")
    cfg = parse_config({}, source="t")
    assert cfg.agent.listen_host == "127.0.0.1" and not cfg.agent.allow_remote


@pytest.mark.parametrize("listen", ["0.0.0.0:8731", ":8731", "[::]:8731", "10.1.2.3:80",
                                    "example.com:80"])
def test_non_loopback_needs_allow_remote(listen: str) -> None:
    with pytest.raises(ConfigurationError, match="allow_remote"):
        parse_config({"agent": {"listen": listen}}, source="t")
    cfg = parse_config({"agent": {"listen": listen, "allow_remote": True}}, source="t")
    assert cfg.agent.allow_remote


async def test_remote_listen_is_logged(
    agents: list[Agent], zk_hosts: str, zk_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="zkwarden.agent"):
        await start(agents, config(zk_hosts, zk_path, listen="0.0.0.0:0", allow_remote=True))
    assert any("reachable from other hosts" in r.getMessage() for r in caplog.records)


async def test_bearer_token(
    agents: list[Agent], zk_hosts: str, zk_path: str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with caplog.at_level(logging.DEBUG):
        agent = await start(agents, config(zk_hosts, zk_path, token_file=str(token_file)))
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"Authorization": "Bearer wrong"},
                            {"Authorization": f"Basic {TOKEN}"},
                            {"Authorization": "Bearer " + "x" * 10_000}):
                for route in ("/v1/health", "/v1/services", "/metrics", "/nope"):
                    async with http.get(agent.base_url + route, headers=headers) as r:
                        if r.status == 431:  # the oversized one, refused by the parser
                            continue
                        assert r.status == 401, (route, headers.keys())
                        assert r.headers["WWW-Authenticate"].startswith("Bearer")
                        assert TOKEN not in await r.text()
            ok = {"Authorization": f"Bearer {TOKEN}"}
            async with http.get(agent.base_url + "/v1/health", headers=ok) as r:
                assert r.status in (200, 503)
                assert TOKEN not in await r.text()
    assert TOKEN not in caplog.text


async def test_short_or_missing_token_file_refuses_to_start(
    agents: list[Agent], zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    short = tmp_path / "short"
    short.write_text("abc")
    with pytest.raises(ConfigurationError, match="shorter") as info:
        await start(agents, config(zk_hosts, zk_path, token_file=str(short)))
    assert "abc" not in str(info.value).replace(str(tmp_path), "")
    with pytest.raises(ConfigurationError, match="cannot read"):
        await start(agents, config(zk_hosts, zk_path, token_file=str(tmp_path / "none")))


async def test_unix_socket_serves_the_api_with_the_token(
    agents: list[Agent], zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    sock = tmp_path / "agent.sock"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    await start(agents, config(zk_hosts, zk_path, unix_socket=str(sock),
                               token_file=str(token_file)))
    assert oct(sock.stat().st_mode & 0o777) == "0o660"
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as http:
        async with http.get("http://agent/v1/health") as r:
            assert r.status == 401
        async with http.get("http://agent/v1/health",
                            headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            assert r.status in (200, 503)
            assert "zookeeper" in (await r.json())


async def test_a_file_at_the_socket_path_is_not_deleted(
    agents: list[Agent], zk_hosts: str, zk_path: str, tmp_path: Path
) -> None:
    precious = tmp_path / "precious"
    precious.write_text("keep me")
    with pytest.raises(OSError):
        await start(agents, config(zk_hosts, zk_path, unix_socket=str(precious)))
    assert precious.read_text() == "keep me"


async def test_no_method_changes_anything(agents: list[Agent], zk_hosts: str,
                                          zk_path: str) -> None:
    agent = await start(agents, config(zk_hosts, zk_path))
    async with aiohttp.ClientSession() as http:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            for route in ("/v1/services", "/v1/services/web", "/v1/health"):
                async with http.request(method, agent.base_url + route, data=b"{}") as r:
                    assert r.status == 405, (method, route)


def test_sasl_table_reads_the_password_from_a_file_or_env(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("hunter2-very-secret\n")
    cfg = parse_config({"zookeeper": {"sasl": {"mechanism": "DIGEST-MD5", "username": "agent",
                                               "password_file": str(pw)}}}, source="t")
    assert cfg.zookeeper.sasl is not None and cfg.zookeeper.sasl.username == "agent"
    assert "hunter2" not in repr(cfg)
    with pytest.raises(ConfigurationError, match="password_file") as info:
        parse_config({"zookeeper": {"sasl": {"username": "agent",
                                             "password": "hunter2-very-secret"}}}, source="t")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigurationError, match="zookeeper.sasl"):
        parse_config({"zookeeper": {"sasl": {"mechanism": "GSSAPI", "username": "x"}}},
                     source="t")
    cfg = parse_config({"zookeeper": {"sasl": {"mechanism": "GSSAPI",
                                               "principal": "agent@R"}}}, source="t")
    assert cfg.zookeeper.sasl is not None and cfg.zookeeper.sasl.mechanism == "GSSAPI"
