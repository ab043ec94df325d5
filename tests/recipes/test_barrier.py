"""Barrier and DoubleBarrier against a real ZooKeeper: Curator's layout, release of every
waiter, timeouts that leave nothing behind, members entering and leaving together across
clients, and a member whose session expires while it waits to enter."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from zkwarden import AsyncClient
from zkwarden.errors import RecipeError
from zkwarden.recipes.barrier import Barrier, DoubleBarrier, curator_default_data
from zkwarden.testing import expire_session_async

from .conftest import ClientFactory

pytestmark = pytest.mark.asyncio

BOUND = 15.0


async def _children(zk: AsyncClient, path: str) -> list[str]:
    try:
        children: list[str] = await zk.get_children(path)
    except Exception:  # noqa: BLE001 - NoNode: no children
        return []
    return sorted(children)


# --- Barrier ---------------------------------------------------------------------------


async def test_barrier_release_wakes_every_waiter(make_client: ClientFactory,
                                                  zk_path: str) -> None:
    path = f"{zk_path}/deep/barrier"
    owner = await make_client()
    waiters = [await make_client() for _ in range(3)]
    await Barrier(owner, path).set_barrier()
    await Barrier(owner, path).set_barrier()  # idempotent
    data, stat = await owner.get(path)
    assert stat.ephemeral_owner == 0, "the barrier node is PERSISTENT"
    assert data == await curator_default_data()

    tasks = [asyncio.create_task(Barrier(c, path).wait_on_barrier(timeout=BOUND))
             for c in waiters]
    await asyncio.sleep(0.5)
    assert not any(t.done() for t in tasks), "a waiter returned while the barrier stood"
    released = time.monotonic()
    await Barrier(owner, path).remove_barrier()
    results = await asyncio.wait_for(asyncio.gather(*tasks), BOUND)
    assert results == [True, True, True]
    assert time.monotonic() - released < 2.0
    await Barrier(owner, path).remove_barrier()  # a missing barrier is fine


async def test_barrier_wait_times_out_and_missing_barrier_passes(
    make_client: ClientFactory, zk_path: str,
) -> None:
    zk = await make_client()
    barrier = Barrier(zk, f"{zk_path}/b")
    assert await asyncio.wait_for(barrier.wait_on_barrier(timeout=1.0), BOUND) is True
    await barrier.set_barrier()
    start = time.monotonic()
    assert await asyncio.wait_for(barrier.wait_on_barrier(timeout=0.4), BOUND) is False
    assert 0.35 < time.monotonic() - start < 2.0
    assert await zk.exists(f"{zk_path}/b") is not None


async def test_barrier_survives_session_expiry_of_the_waiter(
    make_client: ClientFactory, zk_path: str,
) -> None:
    owner = await make_client()
    waiter = await make_client(session_timeout=1.0)
    path = f"{zk_path}/b"
    await Barrier(owner, path).set_barrier()
    task = asyncio.create_task(Barrier(waiter, path).wait_on_barrier(timeout=BOUND))
    await asyncio.sleep(0.3)
    old = waiter.session_id
    await expire_session_async(waiter)
    deadline = time.monotonic() + BOUND
    while waiter.session_id in (None, old):
        assert time.monotonic() < deadline, "no new session"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    assert not task.done(), "the expiry released the waiter although the barrier stands"
    await Barrier(owner, path).remove_barrier()
    assert await asyncio.wait_for(task, BOUND) is True


# --- DoubleBarrier ---------------------------------------------------------------------


async def _round(members: list[DoubleBarrier], stagger: float) -> None:
    """Members enter one after another (``stagger`` apart), then leave the same way;
    nobody may return from enter before the last one called it, nor from leave before
    the last one called leave."""
    entered_at: list[float] = []
    left_at: list[float] = []
    called_enter: list[float] = []
    called_leave: list[float] = []

    async def member(index: int, barrier: DoubleBarrier) -> None:
        await asyncio.sleep(index * stagger)
        called_enter.append(time.monotonic())
        assert await barrier.enter(timeout=BOUND) is True
        entered_at.append(time.monotonic())
        await asyncio.sleep((len(members) - 1 - index) * stagger)  # leave in reverse
        called_leave.append(time.monotonic())
        assert await barrier.leave(timeout=BOUND) is True
        left_at.append(time.monotonic())

    await asyncio.wait_for(
        asyncio.gather(*(member(i, b) for i, b in enumerate(members))), 3 * BOUND)
    assert min(entered_at) >= max(called_enter), "a member entered before all were in"
    assert min(left_at) >= max(called_leave), "a member left before all were leaving"


async def test_double_barrier_members_enter_and_leave_together(
    make_client: ClientFactory, zk_path: str,
) -> None:
    path = f"{zk_path}/double"
    clients = [await make_client() for _ in range(4)]
    members = [DoubleBarrier(c, path, members=4) for c in clients]
    for _ in range(3):  # the same objects and path again: ``ready`` was cleaned up
        await _round(members, stagger=0.25)
        assert await _children(clients[0], path) == []
    for barrier in members:
        await barrier.close()


async def test_double_barrier_layout(make_client: ClientFactory, zk_path: str) -> None:
    path = f"{zk_path}/layout"
    a, b = await make_client(), await make_client()
    first, second = DoubleBarrier(a, path, members=2), DoubleBarrier(b, path, members=2)
    waiting = asyncio.create_task(first.enter(timeout=BOUND))
    await asyncio.sleep(0.3)
    [name] = await _children(a, path)
    assert name == first.node_name and str(uuid.UUID(name)) == name and len(name) == 36
    _, stat = await a.get(f"{path}/{name}")
    assert stat.ephemeral_owner == a.session_id, "member nodes are EPHEMERAL"
    assert await second.enter(timeout=BOUND) is True
    assert await asyncio.wait_for(waiting, BOUND) is True
    assert await _children(a, path) == sorted([first.node_name, second.node_name, "ready"])
    data, ready = await a.get(f"{path}/ready")
    assert ready.ephemeral_owner == 0, "ready is PERSISTENT"
    assert data == await curator_default_data()
    await asyncio.wait_for(asyncio.gather(first.leave(), second.leave()), BOUND)
    assert await _children(a, path) == []
    with pytest.raises(RecipeError):
        await first.leave()


async def test_double_barrier_enter_timeout_leaves_no_node(
    make_client: ClientFactory, zk_path: str,
) -> None:
    path = f"{zk_path}/alone"
    zk = await make_client()
    barrier = DoubleBarrier(zk, path, members=2)
    start = time.monotonic()
    assert await barrier.enter(timeout=0.5) is False
    assert time.monotonic() - start < 3.0
    await barrier.close()
    assert await _children(zk, path) == [], "a timed-out member still counts"
    with pytest.raises(RecipeError):
        await barrier.enter()
    # and a cancelled one neither
    barrier = DoubleBarrier(zk, path, members=2)
    task = asyncio.create_task(barrier.enter())
    await asyncio.sleep(0.3)
    assert await _children(zk, path) == [barrier.node_name]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await barrier.close()
    assert await _children(zk, path) == []


async def test_double_barrier_member_expiring_during_enter_does_not_block_the_others(
    make_client: ClientFactory, zk_path: str,
) -> None:
    """Curator 5.x throws ConnectionLoss out of enter() on the Expired event and the
    member is gone (the others wait for a member that never comes back, forever
    without a timeout); zkwarden's member enters again on its new session."""
    path = f"{zk_path}/expiring"
    a, c = await make_client(), await make_client()
    b = await make_client(session_timeout=1.0)
    first, flaky, last = (DoubleBarrier(z, path, members=3) for z in (a, b, c))
    entering = [asyncio.create_task(x.enter(timeout=3 * BOUND)) for x in (first, flaky)]
    await asyncio.sleep(0.4)
    assert len(await _children(a, path)) == 2
    old = b.session_id
    await expire_session_async(b)
    deadline = time.monotonic() + BOUND
    while True:  # flaky's node is re-created by its new session
        names = await _children(a, path)
        if flaky.node_name in names:
            _, stat = await a.get(f"{path}/{flaky.node_name}")
            if stat.ephemeral_owner not in (0, old):
                assert stat.ephemeral_owner == b.session_id
                break
        assert time.monotonic() < deadline, f"the member did not enter again: {names}"
        await asyncio.sleep(0.05)
    assert not any(t.done() for t in entering), "entered with a member short"
    assert await last.enter(timeout=BOUND) is True
    assert await asyncio.wait_for(asyncio.gather(*entering), BOUND) == [True, True]
    await asyncio.wait_for(asyncio.gather(first.leave(), flaky.leave(), last.leave()), BOUND)
    assert await _children(a, path) == []


async def test_double_barrier_lowest_member_leaves_last(
    make_client: ClientFactory, zk_path: str,
) -> None:
    """Curator's leave: the lowest node waits for the highest and is deleted last; every
    other member deletes its node at once and waits for the lowest."""
    path = f"{zk_path}/order"
    clients = [await make_client() for _ in range(3)]
    members = [DoubleBarrier(c, path, members=3) for c in clients]
    assert await asyncio.wait_for(
        asyncio.gather(*(m.enter() for m in members)), BOUND) == [True, True, True]
    lowest, *others = sorted(members, key=lambda m: m.node_name)
    leaving = asyncio.create_task(lowest.leave(timeout=BOUND))
    await asyncio.sleep(0.4)
    assert lowest.node_name in await _children(clients[0], path), \
        "the lowest member deleted its node before the others left"
    assert not leaving.done()
    high = others[-1]
    leaving_high = asyncio.create_task(high.leave(timeout=BOUND))
    await asyncio.sleep(0.4)
    names = await _children(clients[0], path)
    assert high.node_name not in names and lowest.node_name in names
    assert not leaving.done() and not leaving_high.done()
    assert await others[0].leave(timeout=BOUND) is True
    assert await asyncio.wait_for(asyncio.gather(leaving, leaving_high), BOUND) == [True, True]
    assert await _children(clients[0], path) == []
