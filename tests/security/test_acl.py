"""ACL helpers (the server's formats), the CLI's ACL forms, and the registry's acl=."""

from __future__ import annotations

import asyncio

import pytest

from zkwarden import ACL, AsyncClient, Id, Perms
from zkwarden.cli.shell import _split_acls, parse_acl
from zkwarden.discovery import ServiceInstance, ServiceRegistry
from zkwarden.errors import InvalidArgumentError, NoAuthError
from zkwarden.types import CREATOR_ALL_ACL, OPEN_ACL_UNSAFE, READ_ACL_UNSAFE


def test_digest_matches_the_servers_own_tool() -> None:
    # DigestAuthenticationProvider's main printed this for user:password (reference 11.2).
    acl = ACL.digest("user", "password", Perms.READ)
    assert acl == ACL(Perms.READ, Id("digest", "user:tpUq/4Pn5A64fVZyQ0gOJ8ZWqkY="))
    assert "password" not in repr(acl).replace("user:", "")


def test_digest_rejects_a_colon_in_the_user() -> None:
    with pytest.raises(InvalidArgumentError):
        ACL.digest("a:b", "pw")


def test_other_helpers_and_the_well_known_sets() -> None:
    assert ACL.sasl("alice@R", Perms.READ) == ACL(1, Id("sasl", "alice@R"))
    assert ACL.x509("CN=app,OU=ops") == ACL(31, Id("x509", "CN=app,OU=ops"))
    assert OPEN_ACL_UNSAFE == (ACL.world(),)
    assert READ_ACL_UNSAFE == (ACL.world(Perms.READ),)
    assert CREATOR_ALL_ACL == (ACL.creator(),)


def test_cli_forms_match_the_helpers() -> None:
    assert parse_acl("sasl:alice@R:r") == ACL.sasl("alice@R", Perms.READ)
    assert _split_acls(["x509:CN=app,OU=ops:rw,world:anyone:r"]) == [
        ACL.x509("CN=app,OU=ops", Perms.READ | Perms.WRITE), ACL.world(Perms.READ)]
    digest = ACL.digest("bob", "pw", Perms.ALL)
    assert parse_acl(f"digest:{digest.id.id}:cdrwa") == digest


async def test_digest_acl_enforced_by_the_server(zk_hosts: str, zk_path: str) -> None:
    owner = [ACL.digest("alice", "pw-a", Perms.ALL)]
    async with AsyncClient(zk_hosts, session_timeout=3.0) as anon:
        await anon.create(zk_path, b"secret data", acl=owner)
        with pytest.raises(NoAuthError):
            await anon.get(zk_path)
    async with AsyncClient(zk_hosts, session_timeout=3.0,
                           auth=[("digest", "alice:pw-a")]) as alice:
        assert (await alice.get(zk_path))[0] == b"secret data"
        await alice.delete(zk_path)


async def test_registry_creates_its_nodes_with_the_acl(zk_hosts: str, zk_path: str) -> None:
    acl = [ACL.digest("svc", "pw-s", Perms.ALL), ACL.world(Perms.READ)]
    async with AsyncClient(zk_hosts, session_timeout=3.0, auth=[("digest", "svc:pw-s")]) as zk:
        registry = ServiceRegistry(zk, base_path=zk_path, acl=acl)
        try:
            inst = ServiceInstance(name="web", address="10.0.0.5", port=80)
            async with asyncio.timeout(10):
                await registry.register(inst)
            node = registry.node_path(inst)
            assert node is not None
            for path in (node, zk_path, node.rsplit("/", 1)[0]):
                assert sorted((a.perms, a.id.id) for a in (await zk.get_acl(path))[0]) == sorted(
                    (a.perms, a.id.id) for a in acl), path
            async with AsyncClient(zk_hosts, session_timeout=3.0) as anon:
                assert (await anon.get(node))[0]  # world may read (discovery works)
                with pytest.raises(NoAuthError):
                    await anon.set(node, b"hijack")
                with pytest.raises(NoAuthError):
                    await anon.create(f"{zk_path}/web/rogue", b"")
        finally:
            await registry.close()
