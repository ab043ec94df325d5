"""Party (Curator GroupMember layout) against a real ZooKeeper: layout, members, changes,
and that a member stays a member through deletion, disconnection and session loss."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from zkwarden import AsyncClient, Client
from zkwarden.errors import InvalidArgumentError, NodeExistsError
from zkwarden.groups import MemberJoined, MemberLeft, Party, PartyChange
from zkwarden.groups.sync import Party as BlockingParty
from zkwarden.testing import FaultProxy, expire_session_async


async def next_change(changes: AsyncGenerator[PartyChange, None], timeout: float = 10.0
                      ) -> PartyChange:
    async with asyncio.timeout(timeout):
        return await changes.__anext__()


async def wait_member(zk: AsyncClient, node: str, *, owner: int | None, timeout: float = 15.0
                      ) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            stat = await zk.exists(node)
            if stat is not None and (owner is None or stat.ephemeral_owner == owner):
                return stat
            await asyncio.sleep(0.05)


@pytest.fixture
async def zk(zk_hosts: str) -> Any:
    async with AsyncClient(zk_hosts, session_timeout=4.0) as client:
        yield client


async def test_layout_members_and_leave(zk: AsyncClient, zk_path: str) -> None:
    group = zk_path + "/groups/g"
    party = Party(zk, group, "m1", b"payload")
    await party.join()
    await party.join()  # idempotent
    data, stat = await zk.get(group + "/m1")
    assert data == b"payload" and stat.ephemeral_owner == zk.session_id
    for parent in (zk_path, zk_path + "/groups", group):  # (containers: Stat cannot tell)
        assert (await zk.exists(parent)).ephemeral_owner == 0, parent
    assert await party.members() == {"m1": b"payload"}
    await party.update(b"new")
    assert (await zk.get(group + "/m1"))[0] == b"new"
    await party.leave()
    assert await zk.exists(group + "/m1") is None
    assert await party.members() == {}
    assert await Party(zk, zk_path + "/none", "x").members() == {}


def test_bad_ids() -> None:
    zk = AsyncClient("127.0.0.1:2181")
    for bad in ("", "a/b", ".."):
        with pytest.raises(InvalidArgumentError):
            Party(zk, "/g", bad)


async def test_an_id_held_by_another_session_is_refused(zk: AsyncClient, zk_hosts: str,
                                                       zk_path: str) -> None:
    async with AsyncClient(zk_hosts) as other:
        await Party(other, zk_path, "same").join()
        with pytest.raises(NodeExistsError):
            await Party(zk, zk_path, "same").join()


async def test_changes_current_members_first_then_joins_and_leaves(
    zk: AsyncClient, zk_hosts: str, zk_path: str
) -> None:
    async with AsyncClient(zk_hosts) as other:
        a = Party(other, zk_path, "a", b"A")
        await a.join()
        watcher = Party(zk, zk_path, "w", b"W")
        await watcher.join()
        changes = watcher.changes()
        first = {await next_change(changes), await next_change(changes)}
        assert first == {MemberJoined("a", b"A"), MemberJoined("w", b"W")}
        b = Party(other, zk_path, "b", b"B")
        await b.join()
        assert await next_change(changes) == MemberJoined("b", b"B")
        await a.leave()
        assert await next_change(changes) == MemberLeft("a")
    # The other client closed: its members go with its session.
    assert await next_change(changes) == MemberLeft("b")
    await changes.aclose()


async def test_a_deleted_member_node_is_created_again(zk: AsyncClient, zk_path: str) -> None:
    party = Party(zk, zk_path, "m", b"x")
    await party.join()
    await zk.delete(zk_path + "/m")
    stat = await wait_member(zk, zk_path + "/m", owner=zk.session_id)
    assert stat.ephemeral_owner == zk.session_id
    await party.leave()


async def test_member_rejoins_on_a_new_session_and_changes_survive_expiry(
    zk_hosts: str, zk_path: str
) -> None:
    async with AsyncClient(zk_hosts, session_timeout=4.0) as member_zk, \
            AsyncClient(zk_hosts, session_timeout=4.0) as watch_zk, \
            AsyncClient(zk_hosts) as observer:
        party = Party(member_zk, zk_path, "m", b"x")
        await party.join()
        changes = Party(watch_zk, zk_path, "w").changes()
        assert await next_change(changes) == MemberJoined("m", b"x")
        old = member_zk.session_id
        await expire_session_async(member_zk)
        async with asyncio.timeout(20):
            while member_zk.session_id in (None, old):  # noqa: ASYNC110 - polling a property
                await asyncio.sleep(0.05)
        stat = await wait_member(observer, zk_path + "/m", owner=member_zk.session_id)
        assert stat.ephemeral_owner == member_zk.session_id != old
        # The watcher's own session is lost too: it reads again and carries on.
        await expire_session_async(watch_zk)
        late = Party(observer, zk_path, "late", b"L")
        await late.join()
        seen: list[PartyChange] = []
        async with asyncio.timeout(20):
            while MemberJoined("late", b"L") not in seen:
                seen.append(await changes.__anext__())
        await changes.aclose()
        await party.leave()


async def test_changes_during_a_disconnection_arrive_after_it(
    fault_proxy: FaultProxy, zk_hosts: str, zk_path: str
) -> None:
    async with AsyncClient(fault_proxy.connect_string, session_timeout=8.0) as zk, \
            AsyncClient(zk_hosts) as other:
        leaving = Party(other, zk_path, "leaving")
        await leaving.join()
        changes = Party(zk, zk_path, "w").changes()
        assert await next_change(changes) == MemberJoined("leaving", b"")
        fault_proxy.reset()
        fault_proxy.refuse_connections(True)
        await leaving.leave()
        await Party(other, zk_path, "joined", b"J").join()
        await asyncio.sleep(0.5)
        fault_proxy.refuse_connections(False)
        got = {await next_change(changes, 15), await next_change(changes, 15)}
        assert got == {MemberLeft("leaving"), MemberJoined("joined", b"J")}
        await changes.aclose()


def test_blocking_party(zk_hosts: str, zk_path: str) -> None:
    with Client(zk_hosts) as client, Client(zk_hosts) as other:
        with BlockingParty(client, zk_path, "a", b"A") as a:
            assert a.joined and a.members() == {"a": b"A"}
            with a.changes() as changes:
                assert changes.next(timeout=10) == MemberJoined("a", b"A")
                with BlockingParty(other, zk_path, "b", b"B"):
                    assert changes.next(timeout=10) == MemberJoined("b", b"B")
                assert changes.next(timeout=10) == MemberLeft("b")
        assert client.exists(zk_path + "/a") is None
