"""Lock (Curator InterProcessMutex layout) against a real ZooKeeper: exclusion proven with a
guard node, timeouts and cancellation leave nothing behind, faults around the create,
session loss of waiters and holders, stray children, reaped containers, fencing,
re-entry and revocation."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from zkwarden import AsyncClient
from zkwarden.errors import LeaseLostError, LockReentryError, NodeExistsError
from zkwarden.recipes._curator import REVOKE
from zkwarden.recipes.lock import Lock
from zkwarden.testing import FaultProxy, ZooKeeperServer, expire_session_async

from .conftest import ClientFactory


@pytest.fixture
def fault_proxy_recipes(recipe_server: ZooKeeperServer) -> Iterator[FaultProxy]:
    """A FaultProxy of this test alone in front of ``recipe_server``."""
    with FaultProxy(recipe_server.connect_string) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def reaping_server() -> Iterator[ZooKeeperServer]:
    """A server that reaps empty containers every 100 ms (ZooKeeperServer has no option for
    the ``znode.container.checkIntervalMs`` system property: the JVM reads it from
    JAVA_TOOL_OPTIONS, which the server process inherits)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("JAVA_TOOL_OPTIONS", "-Dznode.container.checkIntervalMs=100")
    server = ZooKeeperServer(max_session_timeout=20.0)
    try:
        server.start()
    finally:
        mp.undo()
    try:
        yield server
    finally:
        server.stop()


NAME = re.compile(r"^_c_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}-lock-\d{10}$")


async def children(zk: AsyncClient, path: str) -> list[str]:
    try:
        names: list[str] = await zk.get_children(path)
    except Exception:  # noqa: BLE001 - NoNode: a reaped container counts as empty
        return []
    return names


async def poll(condition: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if await condition():
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def count_is(zk: AsyncClient, path: str, count: int) -> None:
    """Wait until ``path`` has ``count`` children (or more)."""

    async def enough() -> bool:
        return len(await children(zk, path)) >= count

    await poll(enough)


async def wait_empty(zk: AsyncClient, path: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (left := await children(zk, path)):
        assert time.monotonic() < deadline, f"nodes left behind in {path}: {left}"
        await asyncio.sleep(0.02)


class Guard:
    """Proves exclusion: only a holder creates the guard node, and deletes it before it
    releases; a NodeExists (or a second local holder) is an overlap."""

    def __init__(self, zk: AsyncClient, path: str) -> None:
        self.zk, self.path = zk, path
        self.holders = 0
        self.overlaps = 0
        self.served: dict[str, int] = {}

    async def enter(self, who: str, zk: AsyncClient | None = None) -> None:
        self.holders += 1
        if self.holders > 1:
            self.overlaps += 1
        try:
            await (zk or self.zk).create(self.path, who.encode())
        except NodeExistsError:
            self.overlaps += 1
        self.served[who] = self.served.get(who, 0) + 1

    async def leave(self, zk: AsyncClient | None = None) -> None:
        self.holders -= 1
        await (zk or self.zk).delete(self.path)


async def test_layout_data_and_contenders(make_client: ClientFactory, zk_path: str) -> None:
    zk = await make_client()
    a, b = Lock(zk, zk_path, identifier="worker-1"), Lock(zk, zk_path, identifier="worker-2")
    async with asyncio.timeout(10):
        async with a as lease:
            (name,) = await zk.get_children(zk_path)
            assert NAME.match(name), name
            assert lease.node_path == f"{zk_path}/{name}"
            data, stat = await zk.get(lease.node_path)
            assert data == b"worker-1"
            assert stat.ephemeral_owner == zk.session_id
            assert lease.fencing_token == stat.czxid
            assert (await zk.exists(zk_path)).ephemeral_owner == 0  # type: ignore[union-attr]
            waiter = asyncio.create_task(b.acquire())
            await count_is(zk, zk_path, 2)
            assert await a.contenders() == ["worker-1", "worker-2"]
        assert await waiter
        assert await b.contenders() == ["worker-2"]
        await b.release()
        await wait_empty(zk, zk_path)


async def test_mutual_exclusion_many_clients(make_client: ClientFactory, zk_path: str) -> None:
    clients = [await make_client() for _ in range(5)]
    guard = Guard(clients[0], f"{zk_path}-guard")
    rounds = 40
    tokens: list[int] = []

    async def contender(i: int, zk: AsyncClient) -> None:
        lock = Lock(zk, zk_path, identifier=f"c{i}")
        for _ in range(rounds):
            async with lock as lease:
                tokens.append(lease.fencing_token)
                await guard.enter(f"c{i}", zk)
                await asyncio.sleep(0)
                await guard.leave(zk)

    async with asyncio.timeout(60):
        await asyncio.gather(*(contender(i, zk) for i, zk in enumerate(clients)))
    print(f"\nmutex: {len(tokens)} acquisitions by {len(clients)} clients, "
          f"overlaps={guard.overlaps}")
    assert guard.overlaps == 0
    assert guard.served == {f"c{i}": rounds for i in range(len(clients))}
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)  # strictly increasing
    await wait_empty(clients[0], zk_path)


async def test_acquire_timeout_leaves_no_node(make_client: ClientFactory, zk_path: str) -> None:
    holder_zk, waiter_zk = await make_client(), await make_client()
    holder, waiter = Lock(holder_zk, zk_path), Lock(waiter_zk, zk_path)
    async with asyncio.timeout(10):
        assert await holder.acquire(timeout=1.0)
        start = time.monotonic()
        assert await waiter.acquire(timeout=0.3) is False
        assert 0.25 < time.monotonic() - start < 3.0
        assert not waiter.is_acquired
        assert len(await holder_zk.get_children(zk_path)) == 1  # the holder's only
        assert await waiter.acquire(timeout=0) is False
        assert len(await holder_zk.get_children(zk_path)) == 1
        await holder.release()
        assert await waiter.acquire(timeout=1.0)
        await waiter.release()
        await wait_empty(holder_zk, zk_path)


async def test_reentry_raises(make_client: ClientFactory, zk_path: str) -> None:
    zk = await make_client()
    lock = Lock(zk, zk_path)
    async with asyncio.timeout(10):
        async with lock:
            with pytest.raises(LockReentryError):
                await lock.acquire(timeout=1.0)
            with pytest.raises(LockReentryError):
                async with lock:
                    pass
            assert len(await zk.get_children(zk_path)) == 1
        # another task on the same object queues (and is served) as a separate contender
        async with lock:
            other = asyncio.create_task(lock.acquire(timeout=0.2))
            assert await other is False
        assert await asyncio.create_task(lock.acquire(timeout=1.0))
        await lock.close()
        await wait_empty(zk, zk_path)


async def test_fencing_tokens_increase_and_guarded_transaction(
    make_client: ClientFactory, zk_path: str
) -> None:
    zk1, zk2 = await make_client(), await make_client()
    resource = f"{zk_path}-resource"
    await zk1.create(resource, b"")
    tokens = []
    async with asyncio.timeout(10):
        for zk in (zk1, zk2, zk1, zk2):
            async with Lock(zk, zk_path) as lease:
                tokens.append(lease.fencing_token)
                results = await lease.transaction().set(resource, str(lease.fencing_token)
                                                         .encode()).commit()
                assert len(results) == 1
        assert tokens == sorted(set(tokens))
        assert (await zk1.get(resource))[0] == str(tokens[-1]).encode()

        # a lease whose node is gone cannot write through the guard
        lock = Lock(zk1, zk_path)
        assert await lock.acquire(timeout=1.0)
        lease = lock.lease
        assert lease is not None
        await zk2.delete(lease.node_path)  # e.g. an operator, or the session ended
        with pytest.raises(LeaseLostError):
            async with lock.guarded_transaction() as txn:
                txn.set(resource, b"stale")
        assert (await zk1.get(resource))[0] == str(tokens[-1]).encode()
        assert lease.lost.is_set()
        await lock.release()
        assert lease.released.is_set()


async def test_revocation_notifies_holder(make_client: ClientFactory, zk_path: str) -> None:
    zk, other = await make_client(), await make_client()
    told: list[str] = []
    lock = Lock(zk, zk_path, on_revoke=lambda lease: told.append(lease.node_path))
    async with asyncio.timeout(10):
        async with lock as lease:
            await Lock.revoke(other, lease.node_path)
            await asyncio.wait_for(lease.revoked.wait(), 5)
            assert told == [lease.node_path]
            assert not lease.lost.is_set()  # revocation is a request, not a loss
            assert (await other.get(lease.node_path))[0] == REVOKE
        await wait_empty(other, zk_path)


async def test_node_deleted_under_holder_is_lost(make_client: ClientFactory, zk_path: str) -> None:
    zk, other = await make_client(), await make_client()
    async with asyncio.timeout(10):
        async with Lock(zk, zk_path) as lease:
            await other.delete(lease.node_path)
            await asyncio.wait_for(lease.lost.wait(), 5)
            assert not lease.held


# --- cancellation --------------------------------------------------------------------------


async def _cancel_after(task: asyncio.Task[bool], iterations: int, delay: float) -> None:
    for _ in range(iterations):
        await asyncio.sleep(0)
    if delay:
        await asyncio.sleep(delay)
    task.cancel()


async def test_cancellation_at_every_await_point_uncontended(
    make_client: ClientFactory, zk_path: str
) -> None:
    """Cancel acquire() after n event-loop iterations and after real delays in 0.1 ms steps: either it finished (and the hold is real: our node, first in the queue) or it
    was cancelled and nothing of ours is left, at once."""
    zk = await make_client()
    observer = await make_client()
    lock = Lock(zk, zk_path)
    outcomes = {"cancelled": 0, "acquired": 0}
    # an uncontended acquire takes ~2-3 ms here (create, getChildren): 0.1 ms steps put a
    # cancellation inside each request in flight and between them
    points = [(n, 0.0) for n in range(20)] + [(0, d / 10000) for d in range(80)]
    async with asyncio.timeout(60):
        for iterations, delay in points:
            task = asyncio.create_task(lock.acquire())
            await _cancel_after(task, iterations, delay)
            try:
                acquired = await task
            except asyncio.CancelledError:
                outcomes["cancelled"] += 1
                assert not lock.is_acquired and lock.lease is None
                assert await children(observer, zk_path) == [], "a cancelled acquire left its node"
                continue
            assert acquired
            outcomes["acquired"] += 1
            lease = lock.lease
            assert lease is not None and not lease.lost.is_set()
            names = await observer.get_children(zk_path)
            assert names == [lease.node_path.rsplit("/", 1)[1]]
            await lock.release()
            assert await children(observer, zk_path) == []
    print(f"\ncancellation points (uncontended): {outcomes}")
    assert outcomes["cancelled"] > 1 and outcomes["acquired"] > 1
    assert await lock.acquire(timeout=2)  # still works
    await lock.release()


async def test_cancellation_at_every_await_point_while_queued(
    make_client: ClientFactory, zk_path: str
) -> None:
    holder_zk, zk, observer = await make_client(), await make_client(), await make_client()
    holder = Lock(holder_zk, zk_path)
    waiter = Lock(zk, zk_path)
    async with asyncio.timeout(60):
        assert await holder.acquire(timeout=2)
        held = holder.lease.node_path.rsplit("/", 1)[1]  # type: ignore[union-attr]
        # create, getChildren, getData (arming the watch on the predecessor), waiting
        points = [(n, 0.0) for n in range(20)] + [(0, d / 10000) for d in range(100)]
        for iterations, delay in points:
            task = asyncio.create_task(waiter.acquire())
            await _cancel_after(task, iterations, delay)
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not waiter.is_acquired
            assert await observer.get_children(zk_path) == [held], (iterations, delay)
        # and through acquire's own timeout and an outer asyncio.timeout
        for t in (0.0, 0.001, 0.003, 0.01, 0.05):
            assert await waiter.acquire(timeout=t) is False
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(t):
                    await waiter.acquire()
            assert await observer.get_children(zk_path) == [held]
        await holder.release()
        assert await waiter.acquire(timeout=2)
        await waiter.release()
        await wait_empty(observer, zk_path)


# --- faults around the create and the session ----------------------------------------------


async def test_connection_loss_between_create_and_reply(
    make_client: ClientFactory, zk_path: str, fault_proxy_recipes: FaultProxy
) -> None:
    """The create reaches the server, its reply never reaches us (the connection is reset
    while the reply is held back): the protected create finds its node again, no orphan."""
    proxy = fault_proxy_recipes
    observer = await make_client()
    zk = await make_client(proxy.connect_string)
    await observer.create(zk_path, b"", container=True)
    lock = Lock(zk, zk_path, identifier="through-proxy")
    async with asyncio.timeout(20):
        proxy.blackhole("downstream")
        task = asyncio.create_task(lock.acquire())
        await count_is(observer, zk_path, 1)
        assert not task.done()
        proxy.reset()
        proxy.pass_through()
        assert await task
        names = await observer.get_children(zk_path)
        assert len(names) == 1, f"orphan: {names}"
        assert lock.lease.node_path.endswith(names[0])  # type: ignore[union-attr]
        await lock.release()
        assert await children(observer, zk_path) == []
        # the lock still works for everybody
        other = Lock(observer, zk_path)
        assert await other.acquire(timeout=2)
        await other.release()


async def test_corrupt_create_reply_leaves_no_orphan(
    make_client: ClientFactory, zk_path: str, fault_proxy_recipes: FaultProxy
) -> None:
    proxy = fault_proxy_recipes
    observer = await make_client()
    zk = await make_client(proxy.connect_string)
    await observer.create(zk_path, b"", container=True)
    lock = Lock(zk, zk_path)
    async with asyncio.timeout(20):
        proxy.corrupt_next_reply_body()  # the create's reply is the next with a body
        assert await lock.acquire(timeout=10)
        assert zk.reconnects >= 1
        assert len(await observer.get_children(zk_path)) == 1
        await lock.release()
        assert await children(observer, zk_path) == []


async def test_create_reply_lost_then_session_expired(
    make_client: ClientFactory, zk_path: str, fault_proxy_recipes: FaultProxy,
    recipe_server: ZooKeeperServer,
) -> None:
    """The reply is lost and the session expires before we are back: the node went with
    the old session; a new one is created on the new session; nothing is orphaned."""
    proxy = fault_proxy_recipes
    observer = await make_client()
    zk = await make_client(proxy.connect_string, session_timeout=2.0)
    await observer.create(zk_path, b"", container=True)
    lock = Lock(zk, zk_path)
    async with asyncio.timeout(30):
        first_session = zk.session_id
        proxy.blackhole("downstream")
        task = asyncio.create_task(lock.acquire())
        await count_is(observer, zk_path, 1)
        await expire_session_async(first_session, zk.session_password,  # type: ignore[arg-type]
                                   hosts=recipe_server.connect_string)
        proxy.reset()
        proxy.pass_through()
        assert await task
        assert zk.session_id != first_session
        names = await observer.get_children(zk_path)
        assert len(names) == 1, names
        stat = await observer.exists(f"{zk_path}/{names[0]}")
        assert stat is not None and stat.ephemeral_owner == zk.session_id
        await lock.release()
        assert await children(observer, zk_path) == []


async def test_waiter_session_expiry_does_not_block_queue(
    make_client: ClientFactory, zk_path: str
) -> None:
    a_zk, b_zk, c_zk = await make_client(), await make_client(), await make_client()
    a, b, c = Lock(a_zk, zk_path, "a"), Lock(b_zk, zk_path, "b"), Lock(c_zk, zk_path, "c")
    async with asyncio.timeout(30):
        assert await a.acquire(timeout=2)
        b_task = asyncio.create_task(b.acquire())
        await count_is(a_zk, zk_path, 2)
        c_task = asyncio.create_task(c.acquire())
        await count_is(a_zk, zk_path, 3)
        b_session = b_zk.session_id
        await expire_session_async(b_zk)
        # b queues again on its new session, behind c

        async def requeued() -> bool:
            return b_zk.session_id != b_session and await a.contenders() == ["a", "c", "b"]

        await poll(requeued, 10)
        await a.release()
        assert await asyncio.wait_for(c_task, 5)
        assert not b_task.done()
        await c.release()
        assert await asyncio.wait_for(b_task, 5)
        assert b.lease.session_id == b_zk.session_id  # type: ignore[union-attr]
        await b.release()
        await wait_empty(a_zk, zk_path)


async def test_holder_blackholed_is_told_lost_before_next_holder(
    make_client: ClientFactory, zk_path: str, fault_proxy_recipes: FaultProxy
) -> None:
    """The holder's network drops for longer than its session timeout. It presumes LOST
    after one session timeout without a server (lease.lost), which is before the server
    expires the session and so before the next holder can be granted."""
    proxy = fault_proxy_recipes
    timeout = 2.0
    holder_zk = await make_client(proxy.connect_string, session_timeout=timeout)
    waiter_zk = await make_client()
    holder, waiter = Lock(holder_zk, zk_path, "holder"), Lock(waiter_zk, zk_path, "waiter")
    async with asyncio.timeout(30):
        assert await holder.acquire(timeout=2)
        lease = holder.lease
        assert lease is not None
        waiting = asyncio.create_task(waiter.acquire())
        await count_is(waiter_zk, zk_path, 2)
        start = time.monotonic()
        proxy.blackhole("both")
        await asyncio.wait_for(lease.uncertain.wait(), timeout * 2)
        t_uncertain = time.monotonic() - start
        await asyncio.wait_for(lease.lost.wait(), timeout * 3)
        t_lost = time.monotonic() - start
        assert await asyncio.wait_for(waiting, timeout * 5)
        t_next = time.monotonic() - start
        proxy.pass_through()
        print(f"\nholder blackholed (session {timeout}s): uncertain at {t_uncertain:.3f}s, "
              f"lost at {t_lost:.3f}s, next holder at {t_next:.3f}s, "
              f"gap {t_next - t_lost:.3f}s (overlap {max(0.0, t_lost - t_next):.3f}s)")
        assert t_uncertain < t_lost < t_next
        await holder.release()  # a lost lease releases quietly
        assert lease.released.is_set()
        await waiter.release()


async def test_suspended_holder_is_uncertain_then_trusted_again(
    make_client: ClientFactory, zk_path: str, fault_proxy_recipes: FaultProxy
) -> None:
    """A drop shorter than the session timeout: SUSPENDED makes the hold uncertain (nothing
    deleted, nobody else gets the lock), the reconnect re-checks the node and trusts it."""
    proxy = fault_proxy_recipes
    holder_zk = await make_client(proxy.connect_string, session_timeout=4.0)
    waiter_zk = await make_client()
    holder, waiter = Lock(holder_zk, zk_path), Lock(waiter_zk, zk_path)
    async with asyncio.timeout(30):
        assert await holder.acquire(timeout=2)
        lease = holder.lease
        assert lease is not None and lease.held
        waiting = asyncio.create_task(waiter.acquire())
        await count_is(waiter_zk, zk_path, 2)
        proxy.blackhole("both")
        await asyncio.wait_for(lease.uncertain.wait(), 4)
        assert not lease.held and not lease.lost.is_set()
        proxy.pass_through()

        async def trusted() -> bool:
            return not lease.uncertain.is_set()

        await poll(trusted, 6)
        assert lease.held and not lease.lost.is_set()
        assert not waiting.done()
        stat = await waiter_zk.exists(lease.node_path)
        assert stat is not None and stat.ephemeral_owner == holder_zk.session_id
        await holder.release()
        assert await asyncio.wait_for(waiting, 5)
        await waiter.release()


# --- the directory: stray children, reaped containers ----------------------------------------


async def test_stray_children_ordered_by_whole_name(make_client: ClientFactory, zk_path: str) -> None:
    zk, other = await make_client(), await make_client()
    await zk.create(zk_path, b"", container=True)
    # names without "lock-" sort by their whole name (Curator): after any digits...
    await zk.create(f"{zk_path}/zzz", b"stray")
    await zk.create(f"{zk_path}/3fa2c1d0e9b84f7a__lock__0000000004", b"kazoo")
    a, b = Lock(zk, zk_path, "a"), Lock(other, zk_path, "b")
    async with asyncio.timeout(10):
        assert await a.acquire(timeout=2)  # the strays sort after "00000000xx": not holders
        assert await b.acquire(timeout=0.3) is False
        assert await a.contenders() == ["a", "kazoo", "stray"]
        await a.release()
        assert await b.acquire(timeout=2)
        await b.release()
        # ...and before them when the whole name sorts lower: then it blocks everyone, as it
        # would block Curator (both sides agree on who is first)
        await zk.create(f"{zk_path}/0000000000", b"")
        assert await a.acquire(timeout=0.5) is False
        await zk.delete(f"{zk_path}/0000000000")
        assert await a.acquire(timeout=2)
        await a.release()
        assert sorted(await zk.get_children(zk_path)) == [
            "3fa2c1d0e9b84f7a__lock__0000000004", "zzz"]


async def test_container_parent_reaped_and_recreated(
    reaping_server: ZooKeeperServer, zk_path: str
) -> None:
    async with AsyncClient(reaping_server.connect_string, session_timeout=4.0) as zk:
        lock = Lock(zk, zk_path)
        tokens = []
        async with asyncio.timeout(20):
            for _ in range(2):
                async with lock as lease:
                    tokens.append(lease.fencing_token)
                    first = lease.node_path.rsplit("-", 1)[1]
                deadline = time.monotonic() + 10
                while await zk.exists(zk_path) is not None:  # the server reaps the container
                    assert time.monotonic() < deadline, "container not reaped"
                    await asyncio.sleep(0.05)
            assert first == "0000000000"  # the sequence started again in the new parent
            assert tokens[0] < tokens[1]  # the czxid did not
