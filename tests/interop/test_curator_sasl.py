"""SASL ACLs across clients: a node zkwarden creates for ``sasl:alice`` is read by Curator
(the Java ZooKeeper client logged in with DIGEST-MD5 from a JAAS file), the reverse, and
neither an anonymous client nor another SASL user gets in."""

from __future__ import annotations

import asyncio
import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from zkwarden import ACL, AsyncClient, Perms, SASLOptions
from zkwarden.errors import NoAuthError
from zkwarden.testing import ZooKeeperServer

from .curator import CuratorTool, CuratorToolError, _java_env

USERS = {"alice": "pw-alice-interop", "bob": "pw-bob-interop"}
ALICE_ALL = ACL.sasl("alice", Perms.ALL)
_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def sasl_server() -> Iterator[ZooKeeperServer]:
    # sasl: ACLs need the server's SASL provider; sessions without SASL are still let in,
    # so an anonymous client is refused by the ACL itself (NoAuth), not at login.
    with ZooKeeperServer(sasl_users=USERS, max_session_timeout=10.0) as server:
        yield server


def jaas(tmp_path: Path, user: str) -> Path:
    """A JAAS file whose ``Client`` section the Java ZooKeeper client logs in with."""
    path = tmp_path / f"jaas-{user}.conf"
    path.write_text(
        "Client {\n"
        "  org.apache.zookeeper.server.auth.DigestLoginModule required\n"
        f'  username="{user}"\n'
        f'  password="{USERS[user]}";\n'
        "};\n"
    )
    return path


def java(tool: CuratorTool, jaas_file: Path | None, *args: str) -> str:
    """Run ``CuratorTool args`` as the JAAS file's user (None: no SASL at all).

    Raises:
        CuratorToolError: the tool exited non-zero (the message has its output).
    """
    command = tool.command(*args)
    if jaas_file is not None:
        # JVM options go before the class path: the same tool, a logged-in client.
        command[1:1] = [f"-Djava.security.auth.login.config={jaas_file}",
                        "-Dzookeeper.sasl.client=true"]
    else:
        command[1:1] = ["-Dzookeeper.sasl.client=false"]
    result = subprocess.run(command, capture_output=True, env=_java_env(), timeout=_TIMEOUT)
    if result.returncode != 0:
        raise CuratorToolError(f"CuratorTool {args[0]} exited {result.returncode}: "
                               f"{result.stdout.decode(errors='replace')}"
                               f"{result.stderr.decode(errors='replace')}")
    return result.stdout.decode("utf-8").strip()


def client(server: ZooKeeperServer, user: str | None) -> AsyncClient:
    sasl = SASLOptions(username=user, password=USERS[user]) if user is not None else None
    return AsyncClient(server.connect_string, sasl=sasl, session_timeout=5.0)


async def test_curator_reads_what_zkwarden_protected(
    sasl_server: ZooKeeperServer, curator_tool: CuratorTool, tmp_path: Path
) -> None:
    path = "/zkw-for-alice"
    async with client(sasl_server, "alice") as zk:
        assert ("sasl", "alice") in {(i.auth_scheme, i.user) for i in await zk.whoami()}
        await zk.create(path, b"from zkwarden", acl=[ALICE_ALL])
    connect = sasl_server.connect_string

    out = await asyncio.to_thread(java, curator_tool, jaas(tmp_path, "alice"),
                                  "get", connect, path)
    assert out == "DATA " + base64.b64encode(b"from zkwarden").decode()
    for who in (None, "bob"):
        with pytest.raises(CuratorToolError, match="NoAuth"):
            await asyncio.to_thread(java, curator_tool,
                                    jaas(tmp_path, who) if who else None, "get", connect, path)


async def test_zkwarden_reads_what_curator_protected(
    sasl_server: ZooKeeperServer, curator_tool: CuratorTool, tmp_path: Path
) -> None:
    path = "/java-for-alice/node"
    out = await asyncio.to_thread(java, curator_tool, jaas(tmp_path, "alice"), "create",
                                  sasl_server.connect_string, path, "from curator",
                                  "sasl:alice:cdrwa")
    assert out == f"CREATED {path}"
    async with client(sasl_server, "alice") as zk:
        assert (await zk.get(path))[0] == b"from curator"
        for node in (path, "/java-for-alice"):
            assert (await zk.get_acl(node))[0] == [ALICE_ALL], node
    for who in (None, "bob"):
        async with client(sasl_server, who) as zk:
            with pytest.raises(NoAuthError):
                await zk.get(path)
