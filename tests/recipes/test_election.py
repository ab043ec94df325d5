"""LeaderElection against a real ZooKeeper: LeaderSelector's (mutex) layout, one leader at
a time over many terms (lead returning, stop, session expiry, a network drop longer than
the session timeout), lead cancelled before the next leader starts (measured), requeue at
the tail, and cancellation of run() at any point leaving no node."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from zkwarden import AsyncClient
from zkwarden.errors import LeaseLostError, RecipeError
from zkwarden.recipes.election import LeaderElection
from zkwarden.recipes.latch import LeadershipTerm
from zkwarden.testing import FaultProxy, ZooKeeperServer, expire_session_async

from ._leaders import Monitor, gap_summary, leader_body, node_pattern, wait_until

LOCK_NODE = node_pattern("lock-")


async def _ids(zk: AsyncClient, path: str) -> list[bytes]:
    """The data of every node under ``path`` (what a participant leaves behind)."""
    try:
        children = await zk.get_children(path)
    except Exception:  # noqa: BLE001 - NoNode: nothing left
        return []
    return [(await zk.get(f"{path}/{c}"))[0] for c in children]


async def test_layout_participants_and_requeue_at_the_tail(make_client, zk_path):
    zk = await make_client()
    path = f"{zk_path}/election"
    clients = [await make_client() for _ in range(3)]
    elections = [LeaderElection(c, path, identifier=f"e{i}") for i, c in enumerate(clients)]
    released = [asyncio.Event() for _ in elections]
    terms: list[tuple[str, LeadershipTerm]] = []

    def lead_for(i: int):
        async def lead(term: LeadershipTerm) -> None:
            terms.append((f"e{i}", term))
            await released[i].wait()
            released[i].clear()
        return lead

    runs = []
    for i, election in enumerate(elections):
        runs.append(asyncio.create_task(election.run(lead_for(i))))
        await wait_until(lambda e=election: e.node_path is not None, 5.0, "queued")
    try:
        await wait_until(lambda: elections[0].is_leader, 5.0, "e0 leads")
        children = await zk.get_children(path)
        assert len(children) == 3 and all(LOCK_NODE.fullmatch(c) for c in children)
        for election, client in zip(elections, clients, strict=True):
            data, stat = await zk.get(election.node_path or "")
            assert data == election.identifier.encode() and stat.ephemeral_owner == client.session_id
        assert await elections[1].participants() == ["e0", "e1", "e2"]
        assert terms[0][1].fencing_token == (await zk.exists(elections[0].node_path or "")).czxid
        # lead returns: e0 releases and queues again at the tail (autoRequeue)
        released[0].set()
        await wait_until(lambda: elections[1].is_leader, 5.0, "e1 leads")
        await wait_until(lambda: elections[0].node_path is not None, 5.0, "e0 queued again")
        assert await elections[2].participants() == ["e1", "e2", "e0"]
        assert [who for who, _ in terms] == ["e0", "e1"]
        assert terms[0][1].is_lost and terms[0][1].lost_reason == "leadership released"
        assert terms[1][1].fencing_token > terms[0][1].fencing_token
    finally:
        for election in elections:
            await election.close()
        results = await asyncio.gather(*runs, return_exceptions=True)
    assert results == [None, None, None]  # stop(): run() returns normally
    assert await _ids(zk, path) == []


async def test_one_leader_over_many_terms(make_client, zk_path):
    """Four participants, each lead() returning after a short random time (requeue) or
    being stopped: hundreds of milliseconds of churn, zero overlaps, everyone served."""
    path, guard = f"{zk_path}/election", f"{zk_path}/guard"
    clients = [await make_client() for _ in range(4)]
    mon = Monitor()
    rng = random.Random(7)
    elections = [LeaderElection(c, path, identifier=f"p{i}") for i, c in enumerate(clients)]

    def lead_for(i: int):
        async def lead(term: LeadershipTerm) -> None:
            await leader_body(mon, f"p{i}", clients[i], guard, term,
                              hold=rng.uniform(0.0, 0.03))
        return lead

    runs = [asyncio.create_task(e.run(lead_for(i))) for i, e in enumerate(elections)]
    try:
        await mon.wait(lambda: len(mon.starts()) >= 40, 30.0, "40 terms")
        # a stopped leader's lead is cancelled, then its node deleted; it runs again later
        for _ in range(4):
            await mon.wait(lambda: mon.holder is not None, 5.0, "a leader")
            who = mon.holder
            assert who is not None
            i = int(who[1:])
            elections[i].stop()
            assert await runs[i] is None
            runs[i] = asyncio.create_task(elections[i].run(lead_for(i)))
        await mon.wait(lambda: len(mon.starts()) >= 60, 30.0, "60 terms")
    finally:
        for election in elections:
            await election.close()
        await asyncio.gather(*runs, return_exceptions=True)
    gaps = mon.handovers()
    print(f"\nelection churn: {len(mon.starts())} terms, {gap_summary(gaps)}")
    assert mon.overlaps == [] and mon.guard_conflicts == []
    assert min(gaps) > 0
    counts = {f"p{i}": mon.leaders().count(f"p{i}") for i in range(4)}
    assert min(counts.values()) >= 8, counts
    assert mon.tokens_increase()
    assert await _ids(clients[0], path) == []


@pytest.mark.parametrize("fault", ["expire", "blackhole"])
async def test_leader_fault_cancels_lead_before_the_next_starts(
    make_client, zk_path, recipe_server: ZooKeeperServer, fault: str
):
    """The leader's session is expired (expire_session) or its network drops for longer
    than its session timeout (2 s): its lead is cancelled before the next leader's starts;
    the gap is printed; the old participant queues again on its new session."""
    path, guard = f"{zk_path}/election", f"{zk_path}/guard"
    mon = Monitor()
    with FaultProxy(recipe_server.connect_string) as proxy:
        victim = await make_client(proxy.connect_string, session_timeout=2.0)
        clients = {"p0": victim, "p1": await make_client(), "p2": await make_client()}
        elections = {n: LeaderElection(c, path, identifier=n) for n, c in clients.items()}
        runs: list[asyncio.Task[None]] = []
        for name, election in elections.items():
            async def lead(term: LeadershipTerm, name: str = name) -> None:
                await leader_body(mon, name, clients[name], guard, term)
            runs.append(asyncio.create_task(election.run(lead)))
            await wait_until(lambda e=election: e.node_path is not None, 5.0, "queued")
        try:
            assert await mon.new_leader(None, 5.0) == "p0"
            await wait_until(lambda: clients["p1"].exists(guard), 5.0, "guard created")
            t0 = asyncio.get_running_loop().time()
            if fault == "expire":
                await expire_session_async(victim)
            else:
                proxy.blackhole()
            new = await mon.new_leader("p0", 10.0)
            stop_t = next(t for t, who, what, _ in mon.log if who == "p0" and what == "stop")
            start_t = mon.starts()[-1][0]
            print(f"\nelection {fault}: old lead stopped {stop_t - t0:.3f}s after the fault, "
                  f"{new} started {start_t - t0:.3f}s after it: gap "
                  f"{(start_t - stop_t) * 1000:.0f} ms")
            assert stop_t < start_t
            proxy.pass_through()
            await wait_until(lambda: victim.connected and elections["p0"].node_path is not None,
                             15.0, "p0 queued again")
            ids = await elections[new].participants()
            assert ids[0] == new and ids[-1] == "p0" and len(ids) == 3
        finally:
            for election in elections.values():
                await election.close()
            await asyncio.gather(*runs, return_exceptions=True)
    assert mon.overlaps == [] and mon.guard_conflicts == []


async def test_requeue_false_leads_once(make_client, zk_path):
    zk = await make_client()
    path = f"{zk_path}/election"
    election = LeaderElection(zk, path, identifier="once", requeue=False)
    calls = []

    async def lead(term: LeadershipTerm) -> None:
        calls.append(term)

    async with asyncio.timeout(5):
        assert await election.run(lead) is None
    assert len(calls) == 1 and await _ids(zk, path) == []

    # leadership lost during lead: run raises LeaseLostError, lead was cancelled
    other = await make_client()
    cancelled = asyncio.Event()

    async def lead_until_lost(term: LeadershipTerm) -> None:
        try:
            await other.delete(term.node_path)
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(LeaseLostError, match="our node was deleted"):
        async with asyncio.timeout(5):
            await election.run(lead_until_lost)
    assert cancelled.is_set() and await _ids(zk, path) == []


async def test_lead_error_propagates_after_release(make_client, zk_path):
    zk = await make_client()
    path = f"{zk_path}/election"
    election = LeaderElection(zk, path, identifier="x")

    async def lead(term: LeadershipTerm) -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        async with asyncio.timeout(5):
            await election.run(lead)
    assert await _ids(zk, path) == []
    # run twice at once is refused
    blocker = asyncio.create_task(election.run(lambda term: asyncio.sleep(10)))
    await wait_until(lambda: election.is_leader, 5.0, "leading")
    with pytest.raises(RecipeError):
        await election.run(lead)
    await election.close()
    assert await blocker is None


class _CreateSignals(AsyncClient):
    """A client that says when a create has been handed to the connection."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.create_started = asyncio.Event()

    async def create(self, *args: object, **kwargs: object):  # type: ignore[override]
        self.create_started.set()  # the request is written before the caller runs again
        return await super().create(*args, **kwargs)  # type: ignore[arg-type]


async def test_cancelling_run_leaves_no_node(make_client, zk_path,
                                             recipe_server: ZooKeeperServer):
    """run() cancelled at many points: while its create is in flight, while queued behind
    a leader, while leading. Every time: lead cancelled (if it ran), no node left."""
    observer = await make_client()
    path = f"{zk_path}/election"
    holder_zk = await make_client()
    holder = LeaderElection(holder_zk, path, identifier="holder")
    zk = await make_client()
    leading = asyncio.Event()

    async def lead(term: LeadershipTerm) -> None:
        leading.set()
        await asyncio.sleep(30)

    # 1. alone: cancelled after 0..n loop iterations (create in flight, reading, leading)
    for steps in range(0, 12):
        election = LeaderElection(zk, path, identifier=f"c{steps}")
        task = asyncio.create_task(election.run(lead))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(10):
                await task
        assert task.cancelled()
        assert await _ids(observer, path) == [], f"a node left after {steps} steps"
    # 2. after a few milliseconds (replies arrived at different points)
    for delay in (0.001, 0.002, 0.004, 0.008, 0.016):
        election = LeaderElection(zk, path, identifier=f"d{delay}")
        task = asyncio.create_task(election.run(lead))
        await asyncio.sleep(delay)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(10):
                await task
        assert await _ids(observer, path) == [], f"a node left after {delay}s"
    # 3. exactly while the create is in flight (sent, reply not yet read): the node may
    # exist on the server, and only the find-and-delete by its uuid can remove it
    flighty = _CreateSignals(recipe_server.connect_string, session_timeout=4.0)
    await flighty.start()
    try:
        for attempt in range(5):
            election = LeaderElection(flighty, path, identifier=f"f{attempt}")
            flighty.create_started.clear()
            task = asyncio.create_task(election.run(lead))
            await asyncio.wait_for(flighty.create_started.wait(), 5.0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                async with asyncio.timeout(10):
                    await task
            assert await _ids(observer, path) == [], f"a node left by in-flight create {attempt}"
    finally:
        await flighty.close()
    # 4. queued behind a leader, then while leading
    holder_run = asyncio.create_task(holder.run(lambda term: asyncio.sleep(30)))
    await wait_until(lambda: holder.is_leader, 5.0, "holder leads")
    leading.clear()
    election = LeaderElection(zk, path, identifier="queued")
    task = asyncio.create_task(election.run(lead))
    await wait_until(lambda: election.node_path is not None, 5.0, "queued")
    assert await election.participants() == ["holder", "queued"]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert await _ids(observer, path) == [b"holder"]
    await holder.close()
    await holder_run
    task = asyncio.create_task(election.run(lead))
    await asyncio.wait_for(leading.wait(), 5.0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert await _ids(observer, path) == []
