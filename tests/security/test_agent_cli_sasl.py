"""SASL beyond the client: the agent's ``[zookeeper.sasl]``/``acl``/``tls``, the CLI's
``--sasl-*`` options, and the recipes' ``acl=``, against a real server that accepts only
SASL-authenticated sessions (DIGEST-MD5)."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from zkwarden import ACL, AsyncClient, Client, Perms, SASLOptions
from zkwarden.agent import Agent, parse_config
from zkwarden.cli.app import main
from zkwarden.errors import (
    ConfigurationError,
    NoAuthError,
    SessionClosedRequireSaslAuthError,
)
from zkwarden.recipes import Lock, ReadWriteLock, SharedCount
from zkwarden.recipes import sync as sync_recipes
from zkwarden.testing import ZooKeeperServer

PASSWORD = "pw-alice-0xSECRET"
BOB_PASSWORD = "pw-bob-0xSECRET"
ALICE_ALL = ACL.sasl("alice", Perms.ALL)


@pytest.fixture(scope="module")
def sasl_only() -> Iterator[ZooKeeperServer]:
    """Every session must log in with SASL before its first request."""
    with ZooKeeperServer(sasl_users={"alice": PASSWORD, "bob": BOB_PASSWORD},
                         extra_config={"sessionRequireClientSASLAuth": "true"}) as server:
        yield server


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "zk-password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


def alice() -> SASLOptions:
    return SASLOptions(username="alice", password=PASSWORD)


def bob() -> SASLOptions:
    return SASLOptions(username="bob", password=BOB_PASSWORD)


async def refused_to(server: ZooKeeperServer, path: str) -> None:
    """Neither an anonymous session nor another SASL user can read ``path``."""
    with pytest.raises(SessionClosedRequireSaslAuthError):
        async with AsyncClient(server.connect_string, session_timeout=3.0) as anon:
            async with asyncio.timeout(10):
                await anon.get(path)
    async with AsyncClient(server.connect_string, sasl=bob(), session_timeout=3.0) as other:
        with pytest.raises(NoAuthError):
            await other.get(path)


# --- the agent --------------------------------------------------------------------------


async def appears(zk: AsyncClient, path: str, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout), aclosing(zk.watch(path, "exists")) as events:
        async for event in events:
            if event.stat is not None:
                return


def agent_doc(server: ZooKeeperServer, base: str, password_file: Path,
              **zookeeper: Any) -> dict[str, Any]:
    return {
        "zookeeper": {"hosts": server.connect_string, "session_timeout": "3s",
                      "base_path": base,
                      "sasl": {"mechanism": "DIGEST-MD5", "username": "alice",
                               "password_file": str(password_file)},
                      **zookeeper},
        "agent": {"listen": "127.0.0.1:0"},
        "service": [{"name": "web", "id": "web-1", "address": "127.0.0.1", "port": 8080}],
    }


async def test_agent_registers_over_sasl_with_the_configured_acl(
    sasl_only: ZooKeeperServer, password_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = "/agent-sasl/services"
    doc = agent_doc(sasl_only, base, password_file, acl=["sasl:alice:cdrwa"])
    agent = Agent(parse_config(doc, source="agent.toml"))
    with caplog.at_level(logging.DEBUG):
        await agent.start()
        try:
            async with AsyncClient(sasl_only.connect_string, sasl=alice(),
                                   session_timeout=3.0) as zk:
                node = f"{base}/web/web-1"
                await appears(zk, node)
                for path in (node, f"{base}/web", base):
                    acl, _ = await zk.get_acl(path)
                    assert acl == [ALICE_ALL], (path, acl)
                assert b"web-1" in (await zk.get(node))[0]
            await refused_to(sasl_only, node)
        finally:
            await agent.stop()
    assert "0xSECRET" not in caplog.text


async def test_agent_without_an_acl_uses_the_open_default(
    sasl_only: ZooKeeperServer, password_file: Path
) -> None:
    base = "/agent-sasl-open/services"
    agent = Agent(parse_config(agent_doc(sasl_only, base, password_file), source="t"))
    await agent.start()
    try:
        async with AsyncClient(sasl_only.connect_string, sasl=bob(), session_timeout=3.0) as zk:
            await appears(zk, f"{base}/web/web-1")
            acl, _ = await zk.get_acl(f"{base}/web/web-1")
            assert acl == [ACL.world(Perms.ALL)]
    finally:
        await agent.stop()


@pytest.mark.parametrize("acl, message", [
    ([], "non-empty list"),
    ("sasl:alice:cdrwa", "non-empty list"),
    (["sasl:alice"], "scheme:id:perms"),
    (["sasl:alice:rx"], "unknown permission 'x'"),
    ([3], "must be a string"),
])
def test_agent_acl_config_errors_name_the_key(acl: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        parse_config({"zookeeper": {"acl": acl}}, source="agent.toml")
    assert "agent.toml: zookeeper.acl" in str(info.value)


async def test_agent_tls_goes_through_tls_context(tmp_path: Path) -> None:
    # A missing CA file is a ConfigurationError naming the file and the key, raised
    # before anything is bound or started; check_hostname=false reaches the context.
    doc = {"zookeeper": {"tls": {"ca_file": str(tmp_path / "nope.pem")}},
           "agent": {"listen": "127.0.0.1:0"}}
    agent = Agent(parse_config(doc, source="agent.toml"))
    with pytest.raises(ConfigurationError, match=r"agent\.toml: zookeeper\.tls: cannot load "
                                                 r"the CA file .*nope\.pem"):
        await agent.start()
    from zkwarden.agent.config import TLSConfig
    from zkwarden.agent.runner import _ssl_context

    ctx = _ssl_context(TLSConfig(check_hostname=False))
    assert ctx is not None and not ctx.check_hostname
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    default = _ssl_context(TLSConfig())
    assert default is not None and default.check_hostname


async def test_agent_unreadable_password_file_is_a_config_error(
    sasl_only: ZooKeeperServer, password_file: Path
) -> None:
    agent = Agent(parse_config(agent_doc(sasl_only, "/x", password_file), source="agent.toml"))
    await asyncio.to_thread(password_file.unlink)  # gone between the parse and the start
    with pytest.raises(ConfigurationError) as info:
        await agent.start()
    assert "agent.toml" in str(info.value) and "zk-password" in str(info.value)


# --- the CLI ----------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_whoami_with_a_password_file(
    sasl_only: ZooKeeperServer, password_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "--hosts", sasl_only.connect_string, "--sasl-user",
                             "alice", "--sasl-password-file", str(password_file), "whoami")
    assert code == 0, err
    assert "sasl: alice" in out.splitlines()
    code, out, err = run_cli(capsys, "whoami", "--json", "--hosts", sasl_only.connect_string,
                             "--sasl-mechanism", "digest-md5", "--sasl-user", "alice",
                             "--sasl-password-file", str(password_file))
    assert code == 0, err
    assert {"scheme": "sasl", "user": "alice"} in json.loads(out)["identities"]


def test_cli_password_from_the_environment(
    sasl_only: ZooKeeperServer, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ZKWARDEN_SASL_PASSWORD", PASSWORD)
    code, out, err = run_cli(capsys, "--hosts", sasl_only.connect_string,
                             "--sasl-user", "alice", "whoami")
    assert code == 0, err
    assert "sasl: alice" in out.splitlines()


@pytest.mark.parametrize("verbose", [[], ["-vv"], ["--json"]])
def test_cli_wrong_password_is_exit_7_without_the_secret(
    sasl_only: ZooKeeperServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    verbose: list[str],
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("0xSECRET-wrong\n")
    code, out, err = run_cli(capsys, *verbose, "--hosts", sasl_only.connect_string,
                             "--timeout", "5", "--sasl-user", "alice",
                             "--sasl-password-file", str(wrong), "whoami")
    assert code == 7, (code, out, err)
    assert "0xSECRET" not in out + err
    assert "Traceback" not in err
    if not verbose:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        assert "authentication failed" in lines[0]


@pytest.mark.parametrize("argv, message", [
    (["--sasl-user", "alice"], "--sasl-password-file FILE or $ZKWARDEN_SASL_PASSWORD"),
    (["--sasl-password-file", "/nonexistent"], "needs --sasl-user"),
    (["--sasl-password", "0xSECRET-on-the-command-line"], "--sasl-password is not accepted"),
    (["--sasl-mechanism", "PLAIN"], "invalid choice"),
    (["--sasl-mechanism", "GSSAPI", "--sasl-password-file", "/f"], "GSSAPI uses kinit"),
])
def test_cli_sasl_usage_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    argv: list[str], message: str,
) -> None:
    monkeypatch.delenv("ZKWARDEN_SASL_PASSWORD", raising=False)
    code, out, err = run_cli(capsys, "--hosts", "127.0.0.1:1", *argv, "whoami")
    assert code == 2, (code, out, err)
    assert message in err
    assert "0xSECRET" not in out + err


def test_cli_unreadable_password_file_names_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_cli(capsys, "--hosts", "127.0.0.1:1", "--sasl-user", "alice",
                           "--sasl-password-file", str(tmp_path / "missing"), "whoami")
    assert code == 2, err
    assert "missing" in err and len(err.strip().splitlines()) == 1


# --- recipes: acl= ----------------------------------------------------------------------


async def test_lock_nodes_carry_the_acl(sasl_only: ZooKeeperServer) -> None:
    async with AsyncClient(sasl_only.connect_string, sasl=alice(), session_timeout=3.0) as zk:
        lock = Lock(zk, "/acl-locks/orders", acl=[ALICE_ALL])
        async with asyncio.timeout(10):
            async with lock as lease:
                for path in (lease.node_path, "/acl-locks/orders", "/acl-locks"):
                    acl, _ = await zk.get_acl(path)
                    assert acl == [ALICE_ALL], (path, acl)
                await refused_to(sasl_only, lease.node_path)
                # the other identity cannot even queue for it
                async with AsyncClient(sasl_only.connect_string, sasl=bob(),
                                       session_timeout=3.0) as other:
                    with pytest.raises(NoAuthError):
                        await Lock(other, "/acl-locks/orders").acquire(timeout=5)


async def test_other_recipes_pass_the_acl_on(sasl_only: ZooKeeperServer) -> None:
    acl = [ALICE_ALL, ACL.world(Perms.READ)]
    async with AsyncClient(sasl_only.connect_string, sasl=alice(), session_timeout=3.0) as zk:
        async with asyncio.timeout(15):
            rw = ReadWriteLock(zk, "/acl-rw/x", acl=acl)
            async with rw.write as lease:
                assert (await zk.get_acl(lease.node_path))[0] == acl
            await rw.close()
            count = SharedCount(zk, "/acl-count/c", 5, acl=acl)
            await count.start()
            assert (await zk.get_acl("/acl-count/c"))[0] == acl
            assert (await zk.get_acl("/acl-count"))[0] == acl
            await count.close()


def test_sync_lock_passes_the_acl_on(sasl_only: ZooKeeperServer) -> None:
    with Client(sasl_only.connect_string, sasl=alice(), session_timeout=3.0) as zk:
        lock = sync_recipes.Lock(zk, "/acl-sync-locks/a", acl=[ALICE_ALL])
        with lock as lease:
            assert zk.get_acl(lease.node_path)[0] == [ALICE_ALL]
            assert zk.get_acl("/acl-sync-locks/a")[0] == [ALICE_ALL]
        counter = sync_recipes.AtomicCounter(zk, "/acl-sync-counter/n", acl=[ALICE_ALL])
        assert counter.increment(timeout=10).succeeded
        assert zk.get_acl("/acl-sync-counter/n")[0] == [ALICE_ALL]
        assert zk.get_acl(counter.marker_path)[0] == [ALICE_ALL]
        counter.close()
