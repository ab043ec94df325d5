"""SharedCount and AtomicCounter against a real ZooKeeper: Curator's encodings on the wire
(read raw), clients seeing each other's writes, CAS on the node version, exact sums under
contention, and writes whose reply is lost (applied or not, with and without a session
change) counted exactly once."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from zkwarden import AsyncClient
from zkwarden.errors import InvalidArgumentError
from zkwarden.recipes.counters import AtomicCounter, CounterOutcomeUnknownError, SharedCount
from zkwarden.testing import FaultProxy, ZooKeeperServer, expire_session_async

from .conftest import ClientFactory

pytestmark = pytest.mark.asyncio

BOUND = 15.0


async def _eventually(predicate: Any, what: str, timeout: float = BOUND) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"{what}: not within {timeout}s"
        await asyncio.sleep(0.02)


# --- SharedCount -------------------------------------------------------------------------


async def test_shared_count_clients_see_each_others_sets(
    make_client: ClientFactory, zk_path: str,
) -> None:
    path = f"{zk_path}/deep/count"
    a, b = await make_client(), await make_client()
    first, second = SharedCount(a, path, default=7), SharedCount(b, path, default=99)
    await first.start()
    await second.start()  # the node exists: the default of the second is not written
    assert (first.count, second.count) == (7, 7)
    data, stat = await a.get(path)
    assert data == b"\x00\x00\x00\x07" and stat.ephemeral_owner == 0
    changes = second.changes()
    seen: list[int] = []

    async def consume() -> None:
        async for value in changes:
            seen.append(value)

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    for value in (-2, 2**31 - 1, -(2**31)):
        await first.set(value)
        await _eventually(lambda v=value: second.count == v, f"second sees {value}")
        data, _ = await b.get(path)
        assert data == struct.pack(">i", value) and len(data) == 4
    await second.set(12)
    await _eventually(lambda: first.count == 12, "first sees 12")
    assert await first.get() == 12
    await _eventually(lambda: seen[-1:] == [12], "changes() yields 12")
    assert seen == [-2, 2**31 - 1, -(2**31), 12]
    with pytest.raises(InvalidArgumentError):
        await first.set(2**31)
    await second.close()
    await asyncio.wait_for(consumer, BOUND)  # close() ends the iterator
    await first.close()


async def test_shared_count_try_set_fails_on_stale_version(
    make_client: ClientFactory, zk_path: str,
) -> None:
    path = f"{zk_path}/count"
    a, b = await make_client(), await make_client()
    first, second = SharedCount(a, path), SharedCount(b, path)
    await first.start()
    await second.start()
    stale = first.versioned
    assert stale.value == 0
    assert await second.try_set(5, second.version) is True
    assert await first.try_set(9, stale.version) is False, "a stale version was accepted"
    assert await first.get() == 5
    fresh = await first.get_versioned()
    assert fresh.version == stale.version + 1
    assert await first.try_set(9, fresh.version) is True
    data, stat = await a.get(path)
    assert (data, stat.version) == (struct.pack(">i", 9), fresh.version + 1)
    await _eventually(lambda: second.count == 9, "second sees 9")
    await first.close()
    await second.close()


@pytest.mark.parametrize("lost", ["reply", "request"])
async def test_shared_count_try_set_with_lost_reply(
    make_client: ClientFactory, proxy: FaultProxy, zk_path: str, lost: str,
) -> None:
    """try_set's setData reaches the server but its reply is lost, or it never reaches
    it: the version read after reconnecting decides (applied: True at expected + 1; not
    applied: the node is still at the expected version, so it is sent again)."""
    path = f"{zk_path}/count"
    flaky = await make_client(proxy.connect_string, session_timeout=6.0)
    count = SharedCount(flaky, path)
    await count.start()
    expected = count.version
    real_set = flaky.set

    async def faulty_set(*args: Any, **kwargs: Any) -> Any:
        flaky.set = real_set  # type: ignore[method-assign]
        proxy.blackhole("downstream" if lost == "reply" else "upstream", discard=True)
        return await real_set(*args, **kwargs)

    flaky.set = faulty_set  # type: ignore[method-assign]
    task = asyncio.create_task(count.try_set(42, expected))
    await asyncio.sleep(0.3)
    assert not task.done()
    proxy.pass_through()
    proxy.reset()
    assert await asyncio.wait_for(task, BOUND) is True
    data, stat = await flaky.get(path)
    assert (data, stat.version) == (struct.pack(">i", 42), expected + 1)
    await count.close()


# --- AtomicCounter -----------------------------------------------------------------------


async def test_atomic_counter_encoding_and_missing_node(
    make_client: ClientFactory, zk_path: str,
) -> None:
    zk = await make_client()
    path = f"{zk_path}/deep/counter"
    counter = AtomicCounter(zk, path)
    got = await counter.get()
    assert (got.succeeded, got.pre_value, got.post_value) == (True, 0, 0)
    assert await zk.exists(path) is None, "a read created the node"
    result = await counter.increment()
    assert (result.succeeded, result.pre_value, result.post_value) == (True, 0, 1)
    data, stat = await zk.get(path)
    assert data == b"\x00" * 7 + b"\x01" and stat.ephemeral_owner == 0
    assert (await counter.add(-5)).post_value == -4
    assert (await zk.get(path))[0] == struct.pack(">q", -4)
    assert (await counter.decrement()).post_value == -5
    assert (await counter.try_set(2**63 - 1)).post_value == 2**63 - 1
    assert (await zk.get(path))[0] == b"\x7f" + b"\xff" * 7
    with pytest.raises(InvalidArgumentError):
        await counter.increment()  # Java wraps around; we refuse
    failed = await counter.compare_and_set(3, 4)
    assert (failed.succeeded, failed.pre_value, failed.post_value) == (False, 2**63 - 1,
                                                                      2**63 - 1)
    ok = await counter.compare_and_set(2**63 - 1, 10)
    assert (ok.succeeded, ok.post_value) == (True, 10)
    await zk.set(path, b"")  # empty data is 0, as in Curator
    assert (await counter.get()).post_value == 0
    fresh = AtomicCounter(zk, f"{zk_path}/other")
    assert (await fresh.compare_and_set(0, 3)).succeeded  # missing counts as 0
    assert await fresh.initialize(8) is False
    await counter.close()
    await fresh.close()
    assert await zk.get_children(path) == [], "the marker node was left"


async def test_atomic_counter_concurrent_increments_sum_exactly(
    make_client: ClientFactory, zk_path: str,
) -> None:
    path = f"{zk_path}/counter"
    clients = [await make_client() for _ in range(4)]
    per_client = 50
    tries: list[int] = []

    async def worker(zk: AsyncClient) -> None:
        counter = AtomicCounter(zk, path)
        done = 0
        while done < per_client:
            result = await counter.increment()
            tries.append(result.attempts)
            if result.succeeded:  # a failed one wrote nothing: do it again
                assert result.post_value == result.pre_value + 1
                done += 1

    await asyncio.wait_for(asyncio.gather(*(worker(c) for c in clients)), 60.0)
    data, _ = await clients[0].get(path)
    assert struct.unpack(">q", data)[0] == 4 * per_client
    assert max(tries) > 1, "no contention: the test proves nothing"


# --- lost replies ------------------------------------------------------------------------


@pytest.fixture
def proxy(recipe_server: ZooKeeperServer) -> Iterator[FaultProxy]:
    with FaultProxy(recipe_server.connect_string) as fault_proxy:
        yield fault_proxy


def _fault_before_commit(zk: AsyncClient, fault: Any) -> None:
    """Run ``fault()`` just before the next transaction is sent (after the counter's read)."""
    real = zk.transaction

    def transaction() -> Any:
        txn = real()
        commit = txn.commit

        async def faulty_commit() -> Any:
            zk.transaction = real  # type: ignore[method-assign]
            fault()
            return await commit()

        txn.commit = faulty_commit  # type: ignore[method-assign]
        return txn

    zk.transaction = transaction  # type: ignore[method-assign]


async def _value(zk: AsyncClient, path: str) -> int:
    data, _ = await zk.get(path)
    return int(struct.unpack(">q", data)[0])


@pytest.mark.parametrize("lost", ["reply", "request"])
async def test_atomic_counter_lost_reply_counts_once_same_session(
    make_client: ClientFactory, proxy: FaultProxy, zk_path: str, lost: str,
) -> None:
    """The transaction reaches the server but its reply is lost ("reply"), or it never
    reaches it ("request"); meanwhile another client increments twice, so the version
    alone could not tell. The marker decides: exactly one increment of ours either way."""
    path = f"{zk_path}/counter"
    other = await make_client()
    flaky = await make_client(proxy.connect_string, session_timeout=6.0)
    await AtomicCounter(other, path).initialize(0)
    counter = AtomicCounter(flaky, path)
    await counter.get()
    session = flaky.session_id
    direction = "downstream" if lost == "reply" else "upstream"
    _fault_before_commit(flaky, lambda: proxy.blackhole(direction, discard=True))
    task = asyncio.create_task(counter.increment())
    await asyncio.sleep(0.3)
    assert not task.done()
    for _ in range(2):
        assert (await AtomicCounter(other, path).increment()).succeeded
    proxy.pass_through()
    proxy.reset()
    result = await asyncio.wait_for(task, BOUND)
    assert flaky.session_id == session
    assert result.succeeded
    assert await _value(other, path) == 3, "an increment was lost or counted twice"
    if lost == "reply":
        assert (result.pre_value, result.post_value) == (0, 1)
    else:
        assert (result.pre_value, result.post_value) == (2, 3)


async def test_atomic_counter_request_lost_with_its_session_is_retried(
    make_client: ClientFactory, proxy: FaultProxy, recipe_server: ZooKeeperServer,
    zk_path: str,
) -> None:
    path = f"{zk_path}/counter"
    other = await make_client()
    flaky = await make_client(proxy.connect_string, session_timeout=2.0)
    await AtomicCounter(other, path).initialize(5)
    counter = AtomicCounter(flaky, path)
    session = flaky.session_id
    _fault_before_commit(flaky, lambda: proxy.blackhole("upstream", discard=True))
    task = asyncio.create_task(counter.increment())
    await asyncio.sleep(0.3)
    await expire_session_async(session or 0, flaky.session_password,
                               hosts=recipe_server.connect_string)
    proxy.pass_through()
    proxy.reset()
    result = await asyncio.wait_for(task, BOUND)
    assert flaky.session_id != session
    assert (result.succeeded, result.pre_value, result.post_value) == (True, 5, 6)
    assert await _value(other, path) == 6


async def test_atomic_counter_applied_write_lost_with_its_session_is_not_repeated(
    make_client: ClientFactory, proxy: FaultProxy, recipe_server: ZooKeeperServer,
    zk_path: str,
) -> None:
    path = f"{zk_path}/counter"
    other = await make_client()
    flaky = await make_client(proxy.connect_string, session_timeout=2.0)
    await AtomicCounter(other, path).initialize(5)
    counter = AtomicCounter(flaky, path)
    session = flaky.session_id
    _fault_before_commit(flaky, lambda: proxy.blackhole("downstream", discard=True))
    task = asyncio.create_task(counter.increment())
    await asyncio.sleep(0.3)
    assert await _value(other, path) == 6, "the increment did not reach the server"
    await expire_session_async(session or 0, flaky.session_password,
                               hosts=recipe_server.connect_string)
    proxy.pass_through()
    proxy.reset()
    with pytest.raises(CounterOutcomeUnknownError):
        await asyncio.wait_for(task, BOUND)
    assert await _value(other, path) == 6, "the increment was repeated"
