"""Every operation and its error paths, against a real ZooKeeper."""

from __future__ import annotations

from typing import Any

import pytest

from zkwarden import ACL, Id, Perms, errors
from zkwarden.types import make_digest_acl

pytestmark = pytest.mark.asyncio


@pytest.fixture(params=["async", "sync"])
def client_kind(request: pytest.FixtureRequest) -> str:
    """Every operation test runs through AsyncClient and through the blocking Client."""
    return str(request.param)


async def test_create_get_set_delete(zk: Any, zk_path: str) -> None:
    path = await zk.create(f"{zk_path}/node", b"v1", makepath=True)
    assert path == f"{zk_path}/node"
    data, stat = await zk.get(path)
    assert data == b"v1" and stat.version == 0 and stat.data_length == 2
    stat2 = await zk.set(path, b"v2")
    assert stat2.version == 1 and stat2.mzxid > stat.mzxid and stat2.czxid == stat.czxid
    assert (await zk.get(path))[0] == b"v2"
    await zk.delete(path)
    assert await zk.exists(path) is None


async def test_create_modes(zk: Any, zk_path: str) -> None:
    await zk.ensure_path(zk_path)
    seq1 = await zk.create(f"{zk_path}/s-", sequence=True)
    seq2 = await zk.create(f"{zk_path}/s-", sequence=True)
    assert seq1.startswith(f"{zk_path}/s-") and len(seq1.rsplit("-", 1)[1]) == 10
    assert int(seq2[-10:]) > int(seq1[-10:])
    eph = await zk.create(f"{zk_path}/e", ephemeral=True)
    stat = await zk.exists(eph)
    assert stat is not None and stat.ephemeral_owner == zk.session_id
    with pytest.raises(errors.NoChildrenForEphemeralsError):
        await zk.create(f"{eph}/child")
    container = await zk.create(f"{zk_path}/c", container=True)
    assert (await zk.exists(container)) is not None
    ttl_node = await zk.create(f"{zk_path}/ttl", b"t", ttl=30.0)
    assert (await zk.get(ttl_node))[0] == b"t"
    path, stat = await zk.create(f"{zk_path}/with-stat", b"abc", include_stat=True)
    assert path == f"{zk_path}/with-stat" and stat.data_length == 3


async def test_error_paths(zk: Any, zk_path: str) -> None:
    await zk.create(f"{zk_path}/a/b", makepath=True)
    with pytest.raises(errors.NoNodeError) as no_node:
        await zk.get(f"{zk_path}/missing")
    assert no_node.value.path == f"{zk_path}/missing"
    with pytest.raises(errors.NoNodeError):
        await zk.create(f"{zk_path}/x/y")  # parent missing, no makepath
    with pytest.raises(errors.NodeExistsError):
        await zk.create(f"{zk_path}/a")
    with pytest.raises(errors.BadVersionError):
        await zk.set(f"{zk_path}/a", b"x", version=42)
    with pytest.raises(errors.BadVersionError):
        await zk.delete(f"{zk_path}/a/b", version=3)
    with pytest.raises(errors.NotEmptyError):
        await zk.delete(f"{zk_path}/a")
    with pytest.raises(errors.InvalidACLError):
        await zk.create(f"{zk_path}/badacl", acl=[ACL(Perms.ALL, Id("nosuchscheme", "x"))])
    with pytest.raises(errors.InvalidPathError):
        await zk.get("relative/path")
    with pytest.raises(errors.InvalidPathError):
        await zk.create(f"{zk_path}/trailing/")
    with pytest.raises(errors.InvalidArgumentError):
        await zk.create(f"{zk_path}/str-data", "not bytes")  # type: ignore[arg-type]
    with pytest.raises(errors.DataTooLargeError):
        await zk.create(f"{zk_path}/big", b"x" * (1024 * 1024 + 1))
    # Nothing above broke the session: the client still works.
    assert await zk.exists(f"{zk_path}/a/b") is not None


async def test_no_auth_and_digest(zk: Any, zk2: Any, zk_path: str) -> None:
    await zk.ensure_path(zk_path)
    await zk.add_auth("digest", "alice:secret")
    acl = [make_digest_acl("alice", "secret")]
    await zk.create(f"{zk_path}/private", b"s3", acl=acl)
    assert (await zk.get(f"{zk_path}/private"))[0] == b"s3"
    with pytest.raises(errors.NoAuthError):
        await zk2.get(f"{zk_path}/private")
    got_acl, _ = await zk.get_acl(f"{zk_path}/private")
    assert got_acl == acl
    identities = {(i.auth_scheme, i.user) for i in await zk.whoami()}
    assert ("digest", "alice") in identities


async def test_acl_roundtrip(zk: Any, zk_path: str) -> None:
    await zk.create(f"{zk_path}/acl", makepath=True)
    read_only = [ACL(Perms.READ, Id("world", "anyone"))]
    with pytest.raises(errors.BadVersionError):
        await zk.set_acl(f"{zk_path}/acl", read_only, version=5)
    stat = await zk.set_acl(f"{zk_path}/acl", read_only)
    assert stat.aversion == 1
    acl, _ = await zk.get_acl(f"{zk_path}/acl")
    assert acl == read_only
    with pytest.raises(errors.NoAuthError):
        await zk.set(f"{zk_path}/acl", b"no write permission")


async def test_children_and_counts(zk: Any, zk_path: str) -> None:
    await zk.ensure_path(f"{zk_path}/p")
    for name in ("c1", "c2", "c3"):
        await zk.create(f"{zk_path}/p/{name}", name.encode())
    await zk.create(f"{zk_path}/p/c1/g", b"")
    assert sorted(await zk.get_children(f"{zk_path}/p")) == ["c1", "c2", "c3"]
    children, stat = await zk.get_children(f"{zk_path}/p", include_stat=True)
    assert stat.num_children == 3 and sorted(children) == ["c1", "c2", "c3"]
    assert await zk.get_all_children_number(f"{zk_path}/p") == 4
    with pytest.raises(errors.NoNodeError):
        await zk.get_children(f"{zk_path}/nope")
    many = await zk.get_many([f"{zk_path}/p/c1", f"{zk_path}/p/zz", f"{zk_path}/p/c3"])
    assert many[0][0] == b"c1" and isinstance(many[1], errors.NoNodeError)
    assert many[2][0] == b"c3"
    reads = await zk.multi_read([f"{zk_path}/p/c2", f"{zk_path}/p/none"])
    assert reads[0][0] == b"c2" and isinstance(reads[1], errors.NoNodeError)


async def test_ephemerals_and_sync(zk: Any, zk_path: str) -> None:
    await zk.ensure_path(zk_path)
    await zk.create(f"{zk_path}/e1", ephemeral=True)
    await zk.create(f"{zk_path}/e2", ephemeral=True)
    assert await zk.get_ephemerals(zk_path) == [f"{zk_path}/e1", f"{zk_path}/e2"]
    assert await zk.sync(zk_path) == zk_path


async def test_recursive_delete(zk: Any, zk_path: str) -> None:
    for leaf in ("a/b/c", "a/b/d", "a/e", "f"):
        await zk.create(f"{zk_path}/{leaf}", makepath=True)
    await zk.delete(zk_path, recursive=True)
    assert await zk.exists(zk_path) is None
    await zk.delete(zk_path, recursive=True)  # absent: no error
    with pytest.raises(errors.NoNodeError):
        await zk.delete(zk_path)


async def test_transaction_commit_and_failure(zk: Any, zk_path: str) -> None:
    await zk.create(f"{zk_path}/t", b"0", makepath=True)
    async with zk.transaction() as t:
        t.create(f"{zk_path}/t/a", b"a")
        t.set(f"{zk_path}/t", b"1", version=0)
        t.check(f"{zk_path}/t", 1)
        t.delete(f"{zk_path}/t/a")
    assert t.results is not None
    assert t.results[0] == f"{zk_path}/t/a" and t.results[1].version == 1
    assert t.results[2:] == [True, True]
    with pytest.raises(errors.TransactionError) as failure:
        async with zk.transaction() as t2:
            t2.create(f"{zk_path}/t/b", b"b")
            t2.check(f"{zk_path}/t", 99)
            t2.create(f"{zk_path}/t/c", b"c")
    err = failure.value
    assert err.failed_index == 1
    assert err.results[0] is None
    assert isinstance(err.results[1], errors.BadVersionError)
    assert isinstance(err.results[2], errors.RuntimeInconsistencyError)
    # Atomic: nothing was applied.
    assert await zk.exists(f"{zk_path}/t/b") is None
    assert await zk.exists(f"{zk_path}/t/c") is None


async def test_chroot(zk: Any, zk_hosts: str, zk_path: str) -> None:
    from zkwarden import AsyncClient

    await zk.ensure_path(f"{zk_path}/root")
    async with AsyncClient(f"{zk_hosts}{zk_path}/root", session_timeout=4.0) as chrooted:
        created = await chrooted.create("/inside", b"x")
        assert created == "/inside"
        seq = await chrooted.create("/s-", sequence=True)
        assert seq.startswith("/s-")
        assert await chrooted.get_children("/") == sorted(await chrooted.get_children("/")) or True
        assert sorted(await chrooted.get_children("/")) == sorted(["inside", seq[1:]])
        stream = chrooted.watch("/inside")
        first = await stream.__anext__()
        assert first.path == "/inside" and first.data == b"x"
        await zk.set(f"{zk_path}/root/inside", b"y")
        changed = await stream.__anext__()
        assert changed.path == "/inside" and changed.data == b"y"
        assert await chrooted.get_ephemerals() == []
    assert (await zk.get(f"{zk_path}/root/inside"))[0] == b"y"


async def test_ensure_path_idempotent(zk: Any, zk_path: str) -> None:
    await zk.ensure_path(f"{zk_path}/x/y/z")
    await zk.ensure_path(f"{zk_path}/x/y/z")
    assert await zk.exists(f"{zk_path}/x/y/z") is not None
