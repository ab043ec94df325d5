"""LeaderLatch against a real ZooKeeper: Curator's layout, one leader at a time through
closes, session expiry and a network drop longer than the session timeout, the body
cancelled the moment leadership is lost (before the next leader starts, measured), and the
latch queueing again on its new session."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from zkwarden import AsyncClient
from zkwarden.errors import LeaseLostError, RecipeError
from zkwarden.recipes.latch import LeaderLatch
from zkwarden.testing import FaultProxy, ZooKeeperServer, expire_session_async

from ._leaders import Monitor, gap_summary, leader_body, node_pattern, wait_until

LATCH_NODE = node_pattern("latch-")


async def _participate(mon: Monitor, latch: LeaderLatch, zk: AsyncClient, guard: str) -> None:
    """Lead whenever the latch says so, forever (a lost term: wait for the next one)."""
    while True:
        try:
            async with latch.leadership() as term:
                await leader_body(mon, latch.identifier, zk, guard, term)
        except LeaseLostError:
            continue
        except RecipeError:  # closed
            return


async def test_layout_participants_and_predecessor_watch(make_client, zk_path,
                                                         recipe_server: ZooKeeperServer):
    zk = await make_client()
    clients = [await make_client() for _ in range(3)]
    latches = [LeaderLatch(c, f"{zk_path}/latch", identifier=f"id-{i}-é")
               for i, c in enumerate(clients)]
    for latch in latches:
        await latch.start()
    try:
        assert await latches[0].wait_leader(timeout=5.0)
        assert [latch.is_leader for latch in latches] == [True, False, False]
        children = sorted(await zk.get_children(f"{zk_path}/latch"),
                          key=lambda c: c[-10:])
        assert len(children) == 3 and all(LATCH_NODE.fullmatch(c) for c in children)
        for child, latch, client in zip(children, latches, clients, strict=True):
            data, stat = await zk.get(f"{zk_path}/latch/{child}")
            assert data == latch.identifier.encode("utf-8")
            assert stat.ephemeral_owner == client.session_id
            assert latch.node_path == f"{zk_path}/latch/{child}"
        assert await latches[2].participants() == ["id-0-é", "id-1-é", "id-2-é"]
        assert await latches[1].leader() == "id-0-é"
        term = latches[0].term
        assert term is not None and term.fencing_token == (
            await zk.exists(latches[0].node_path or "")).czxid

        # Herd avoidance: each follower watches its immediate predecessor only.
        def watches() -> dict[int, set[str]]:
            out: dict[int, set[str]] = {}
            session = 0
            for line in recipe_server.four_letter_word("wchc").splitlines():
                if line.startswith("0x"):
                    session = int(line, 16)
                    out[session] = set()
                elif line.strip():
                    out[session].add(line.strip())
            return out

        nodes = [latch.node_path for latch in latches]
        expected = {clients[0].session_id: {nodes[0]}, clients[1].session_id: {nodes[0]},
                    clients[2].session_id: {nodes[1]}}
        await wait_until(lambda: {s: w for s, w in watches().items() if s in expected}
                         == expected, 5.0, "watch layout")
        assert not await latches[1].wait_leader(timeout=0.2)
    finally:
        for latch in latches:
            await latch.close()
    assert await zk.get_children(f"{zk_path}/latch") == []


async def test_one_leader_through_many_closes(make_client, zk_path):
    path, guard = f"{zk_path}/latch", f"{zk_path}/guard"
    clients = [await make_client() for _ in range(3)]
    mon = Monitor()
    current: dict[str, LeaderLatch] = {}

    async def participant(i: int, zk: AsyncClient) -> None:
        while True:  # a closed latch is replaced by a new one: queue again at the tail
            latch = LeaderLatch(zk, path, identifier=f"p{i}")
            current[latch.identifier] = latch
            await latch.start()
            await _participate(mon, latch, zk, guard)
            await latch.close()

    runners = [asyncio.create_task(participant(i, c)) for i, c in enumerate(clients)]
    try:
        leader = None
        for _ in range(12):
            leader = await mon.new_leader(leader, 10.0)
            await current[leader].close()  # from outside the body: cancels and awaits it
    finally:
        for task in runners:
            task.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        for latch in list(current.values()):
            await latch.close()
    gaps = mon.handovers()
    print(f"\nlatch close handover: {gap_summary(gaps)}")
    assert mon.overlaps == [] and mon.guard_conflicts == []
    assert len(gaps) >= 11 and min(gaps) > 0
    assert {f"p{i}" for i in range(3)} <= set(mon.leaders())
    leaders = mon.leaders()
    # a closed leader queues again last: the three take turns in a fixed rotation
    assert all(leaders[i] == leaders[i + 3] for i in range(len(leaders) - 3)), leaders
    assert mon.tokens_increase()


async def test_expired_leader_is_cancelled_and_queues_again(make_client, zk_path):
    path, guard = f"{zk_path}/latch", f"{zk_path}/guard"
    clients = [await make_client(session_timeout=4.0) for _ in range(3)]
    latches = {f"p{i}": LeaderLatch(c, path, identifier=f"p{i}") for i, c in enumerate(clients)}
    by_id = dict(zip(latches, clients, strict=True))
    mon = Monitor()
    for latch in latches.values():
        await latch.start()
    runners = [asyncio.create_task(_participate(mon, latch, by_id[name], guard))
               for name, latch in latches.items()]
    try:
        leader = await mon.new_leader(None, 5.0)
        for _ in range(4):
            old_session = by_id[leader].session_id
            old_path = latches[leader].node_path
            await expire_session_async(by_id[leader])
            new = await mon.new_leader(leader, 10.0)
            old_latch = latches[leader]
            assert not old_latch.is_leader
            # After LOST the latch creates a new node on its new session: queued last.
            await wait_until(lambda lt=old_latch, op=old_path: lt.node_path not in (None, op),
                             10.0, "re-queued")
            ids = await latches[new].participants()
            assert ids[0] == new and ids[-1] == leader and len(ids) == 3
            stat = await by_id[leader].exists(old_latch.node_path or "")
            assert stat is not None and stat.ephemeral_owner == by_id[leader].session_id
            assert by_id[leader].session_id != old_session
            leader = new
    finally:
        for latch in latches.values():
            await latch.close()
        await asyncio.gather(*runners, return_exceptions=True)
    gaps = mon.handovers()
    print(f"\nlatch session-expiry handover: {gap_summary(gaps)}")
    assert mon.overlaps == [] and mon.guard_conflicts == []
    assert len(gaps) >= 4 and min(gaps) > 0
    assert mon.tokens_increase()


@pytest.mark.parametrize("lose_on_suspend", [True, False])
async def test_blackholed_leader_stops_before_the_next_starts(
    make_client, zk_path, recipe_server: ZooKeeperServer, lose_on_suspend: bool
):
    """The leader's network drops for longer than its session timeout: its body is
    cancelled at SUSPENDED (default), or at the LOST zkwarden presumes one session timeout
    after the last server frame (lose_on_suspend=False, Curator's Session policy), before
    the server expires the session and the next leader starts (the gap is printed); once
    the network is back it queues again."""
    path, guard = f"{zk_path}/latch", f"{zk_path}/guard"
    mon = Monitor()
    with FaultProxy(recipe_server.connect_string) as proxy:
        dropped = await make_client(proxy.connect_string, session_timeout=2.0)
        others = [await make_client(session_timeout=4.0) for _ in range(2)]
        clients = {"p0": dropped, "p1": others[0], "p2": others[1]}
        latches = {name: LeaderLatch(c, path, identifier=name, lose_on_suspend=lose_on_suspend)
                   for name, c in clients.items()}
        for latch in latches.values():
            await latch.start()
        runners = [asyncio.create_task(_participate(mon, latch, clients[name], guard))
                   for name, latch in latches.items()]
        try:
            assert await mon.new_leader(None, 5.0) == "p0"
            await wait_until(lambda: others[0].exists(guard), 5.0, "guard created")
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            proxy.blackhole()
            new = await mon.new_leader("p0", 10.0)
            stop_t = next(t for t, who, what, _ in mon.log if who == "p0" and what == "stop")
            start_t = mon.starts()[-1][0]
            print(f"\nlatch blackhole (T=2s, lose_on_suspend={lose_on_suspend}): old leader stopped {stop_t - t0:.3f}s after the "
                  f"drop, {new} started {start_t - t0:.3f}s after it: gap "
                  f"{(start_t - stop_t) * 1000:.0f} ms")
            if lose_on_suspend:
                assert stop_t < start_t  # stopped at SUSPENDED, ~1/3 T before the expiry
            else:
                # Stopped at the presumed LOST, which counts a session timeout from the last
                # server frame: the server cannot expire the session before about then
                # (measured 30-70 ms before the next leader starts). Allow scheduling jitter
                # on a loaded machine, but no real overlap.
                assert start_t - stop_t > -0.1
            proxy.pass_through()
            await wait_until(lambda: latches["p0"].node_path is not None, 15.0, "re-queued")
            ids = await latches["p1"].participants()
            assert ids[0] == new and ids[-1] == "p0"
        finally:
            for latch in latches.values():
                await latch.close()
            await asyncio.gather(*runners, return_exceptions=True)
    assert mon.overlaps == [] and mon.guard_conflicts == []


async def test_short_suspension_default_and_session_policy(make_client, zk_path):
    """A drop shorter than the session timeout: by default (Curator's Standard policy)
    the body is cancelled at SUSPENDED and the same node leads again after the reconnect
    (same token, nobody else in between); with lose_on_suspend=False it is not cancelled."""
    path = f"{zk_path}/latch"
    direct = await make_client()
    with FaultProxy(direct.connect_string) as proxy:
        zk = await make_client(proxy.connect_string, session_timeout=4.0)
        other = await make_client()
        for lose_on_suspend in (True, False):
            latch = LeaderLatch(zk, path, identifier="a", lose_on_suspend=lose_on_suspend)
            follower = LeaderLatch(other, path, identifier="b")
            await latch.start()
            await follower.start()
            try:
                assert await latch.wait_leader(timeout=5.0)
                first = latch.term
                assert first is not None
                lost: list[str] = []

                async def body(lt: LeaderLatch = latch, out: list[str] = lost) -> None:
                    try:
                        async with lt.leadership():
                            await asyncio.sleep(30)
                    except LeaseLostError as exc:
                        out.append(str(exc))

                task = asyncio.create_task(body())
                await asyncio.sleep(0.1)
                proxy.blackhole()
                await asyncio.sleep(3.2)  # SUSPENDED at ~2/3 of 4 s; the session lives
                proxy.pass_through()
                await wait_until(lambda lt=latch: lt.is_leader and zk.connected, 5.0,
                                 "leading again")
                assert not follower.is_leader
                assert latch.term is not None
                assert latch.term.fencing_token == first.fencing_token
                if lose_on_suspend:
                    assert len(lost) == 1 and "connection suspended" in lost[0]
                    assert first.lost_reason == "connection suspended"
                    assert latch.term is not first
                else:
                    assert lost == [] and not task.done() and latch.term is first
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            finally:
                await latch.close()
                await follower.close()


async def test_deleted_node_ends_the_term(make_client, zk_path):
    zk = await make_client()
    a, b = await make_client(), await make_client()
    latch_a = LeaderLatch(a, f"{zk_path}/latch", identifier="a")
    latch_b = LeaderLatch(b, f"{zk_path}/latch", identifier="b")
    await latch_a.start()
    await latch_b.start()
    try:
        async with latch_a.leadership() as term:
            try:
                await zk.delete(term.node_path)
                await asyncio.sleep(5)
                raise AssertionError("the body was not cancelled")
            except asyncio.CancelledError:
                assert term.lost_reason == "our node was deleted"
                raise
    except LeaseLostError:
        pass
    try:
        assert await latch_b.wait_leader(timeout=5.0)
        await wait_until(lambda: latch_a.node_path is not None
                         and latch_a.node_path != term.node_path, 5.0, "a queues again")
        assert await latch_a.participants() == ["b", "a"]
    finally:
        await latch_a.close()
        await latch_b.close()


async def test_close_from_the_body_and_errors(make_client, zk_path):
    zk = await make_client()
    latch = LeaderLatch(zk, f"{zk_path}/latch", identifier="solo")
    with contextlib.suppress(RecipeError):
        await latch.wait_leader(0.1)
        raise AssertionError("wait_leader before start must raise")
    await latch.start()
    async with latch.leadership() as term:
        await latch.close()  # from inside: not cancelled, no error
        assert term.is_lost
    assert await zk.get_children(f"{zk_path}/latch") == []
    try:
        async with latch.leadership():
            raise AssertionError("entered a closed latch")
    except RecipeError:
        pass
    with contextlib.suppress(RecipeError):
        await latch.start()
        raise AssertionError("restart must raise")
