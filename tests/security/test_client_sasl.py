"""AsyncClient(sasl=...) end to end against real servers (needs the engine's SASL
integration): identity, ACL access, wrong credentials, reconnect and restart re-auth,
the registry on an ACL-protected base path, Kerberos."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator

import pytest

from zkwarden import ACL, AsyncClient, Perms, SASLOptions
from zkwarden.discovery import ServiceInstance, ServiceRegistry
from zkwarden.errors import AuthFailedError, NoAuthError
from zkwarden.testing import ZooKeeperServer
from zkwarden.testing.kdc import KerberosKDC

PASSWORD = "pw-alice-0xSECRET"


@pytest.fixture(scope="module")
def sasl_server() -> Iterator[ZooKeeperServer]:
    # Sessions of up to 10 s (the harness's default is 2 s): the restart test's session must
    # outlive a server restart, which takes longer than 2 s on a loaded machine.
    with ZooKeeperServer(sasl_users={"alice": PASSWORD, "bob": "pw-bob"},
                         max_session_timeout=10.0) as server:
        yield server


def alice() -> SASLOptions:
    return SASLOptions(mechanism="DIGEST-MD5", username="alice", password=PASSWORD)


async def identities(zk: AsyncClient) -> set[tuple[str, str]]:
    return {(i.auth_scheme, i.user) for i in await zk.whoami()}


async def test_digest_identity_and_acl(sasl_server: ZooKeeperServer) -> None:
    async with AsyncClient(sasl_server.connect_string, sasl=alice(), session_timeout=3.0) as zk:
        assert ("sasl", "alice") in await identities(zk)
        await zk.create("/alice-only", b"mine", acl=[ACL.sasl("alice", Perms.ALL)])
        assert (await zk.get("/alice-only"))[0] == b"mine"
    bob = SASLOptions(username="bob", password="pw-bob")
    async with AsyncClient(sasl_server.connect_string, sasl=bob, session_timeout=3.0) as zk:
        with pytest.raises(NoAuthError):
            await zk.get("/alice-only")


async def test_wrong_password_fails_once_without_a_flood(
    sasl_server: ZooKeeperServer, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = SASLOptions(username="alice", password="0xSECRET-wrong")
    client = AsyncClient(sasl_server.connect_string, sasl=wrong, session_timeout=2.0)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(AuthFailedError):
            await client.start(timeout=5.0)
        await asyncio.sleep(1.0)
        await client.close()
    assert "0xSECRET" not in caplog.text
    attempts = [r for r in caplog.records if "auth" in r.getMessage().lower()
                and r.levelno >= logging.WARNING]
    assert len(attempts) <= 3, [r.getMessage() for r in attempts]


async def test_reauthenticated_after_a_server_restart(sasl_server: ZooKeeperServer) -> None:
    async with AsyncClient(sasl_server.connect_string, sasl=alice(),
                           session_timeout=10.0) as zk:
        await zk.create("/restart-acl", b"x", acl=[ACL.sasl("alice", Perms.ALL)],
                        ephemeral=True)
        await asyncio.to_thread(sasl_server.restart)
        async with asyncio.timeout(20):
            await zk.wait_connected(20)
        assert ("sasl", "alice") in await identities(zk)
        assert (await zk.get("/restart-acl"))[0] == b"x"


async def test_registry_on_a_protected_base_path(sasl_server: ZooKeeperServer) -> None:
    acl = [ACL.sasl("alice", Perms.ALL), ACL.world(Perms.READ)]
    async with AsyncClient(sasl_server.connect_string, sasl=alice(), session_timeout=3.0) as zk:
        await zk.create("/protected", b"", acl=acl)
        registry = ServiceRegistry(zk, base_path="/protected", acl=acl)
        try:
            inst = ServiceInstance(name="web", address="10.0.0.1", port=80)
            async with asyncio.timeout(10):
                await registry.register(inst)
        finally:
            await registry.close()


async def test_kerberos_end_to_end(monkeypatch: pytest.MonkeyPatch) -> None:
    with KerberosKDC() as kdc:
        keytab = kdc.add_principal("alice")
        with ZooKeeperServer(kerberos=kdc.server_setup()) as server:
            for key, value in kdc.client_env().items():
                monkeypatch.setenv(key, value)
            opts = SASLOptions(mechanism="GSSAPI", principal=kdc.principal("alice"),
                               keytab=keytab, server_name="localhost")
            async with AsyncClient(server.connect_string, sasl=opts, session_timeout=3.0) as zk:
                assert ("sasl", kdc.principal("alice")) in await identities(zk)
    assert os.environ.get("KRB5_CONFIG")
