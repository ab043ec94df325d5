"""Case 4: the leader of a 3-node ensemble is killed under a steady write load from 5
clients. Every acknowledged write is there afterwards, every unacknowledged one was
reported to its caller as ConnectionLossError, and no client is stuck."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from zkwarden import AsyncClient, ClientState, errors
from zkwarden.testing import ZooKeeperEnsemble

from ._support import CpuMeter, LoopErrors, StateLog, WarningLog, report, wait_for

pytestmark = pytest.mark.asyncio

CLIENTS = 5
#: No single write may take longer than this: beyond it the client counts as stuck.
OP_BOUND = 10.0
#: Writes each client must get acknowledged after the kill, before the load stops.
ACKS_AFTER_KILL = 20


@dataclass
class Writer:
    index: int
    client: AsyncClient
    states: StateLog
    acked: dict[str, float] = field(default_factory=dict)  # path -> time acknowledged
    lost: list[str] = field(default_factory=list)  # ConnectionLossError: outcome unknown
    # SessionExpiredError: the call waited for a connection of a session that was lost
    # meanwhile (an election longer than the session on a loaded machine): never sent
    expired: list[str] = field(default_factory=list)
    other: list[tuple[str, BaseException]] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)

    def acked_after(self, t: float) -> int:
        return sum(1 for at in self.acked.values() if at > t)


async def _load(writer: Writer, base: str, stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        path = f"{base}/c{writer.index}-{n:06d}"
        n += 1
        try:
            await asyncio.wait_for(writer.client.create(path, path.encode()), OP_BOUND)
        except errors.ConnectionLossError:
            writer.lost.append(path)
        except errors.SessionExpiredError:
            writer.expired.append(path)
        except TimeoutError:
            writer.stuck.append(path)
        except Exception as exc:  # noqa: BLE001 - any other outcome breaks the invariant
            writer.other.append((path, exc))
        else:
            writer.acked[path] = time.monotonic()


async def test_leader_killed_under_write_load(
    zk_ensemble: ZooKeeperEnsemble, zk_path: str, zk_warnings: WarningLog
) -> None:
    loop_errors = LoopErrors().install()
    leader = await asyncio.to_thread(zk_ensemble.leader)
    members = [zk_ensemble.member_connect_string(i) for i in range(zk_ensemble.size)]
    # Two clients start on the leader, so the kill cuts writes in flight there too.
    leader_first = ",".join([members[leader]] + [m for i, m in enumerate(members) if i != leader])
    async with AsyncClient(zk_ensemble.connect_string, session_timeout=2.0) as setup:
        await setup.ensure_path(zk_path)

    writers: list[Writer] = []
    for i in range(CLIENTS):
        on_leader = i < 2
        client = AsyncClient(
            leader_first if on_leader else zk_ensemble.connect_string,
            session_timeout=2.0, randomize_hosts=not on_leader,
        )
        writers.append(Writer(i, client, StateLog().attach(client)))
    await asyncio.gather(*(w.client.start() for w in writers))
    on_leader_count = sum(
        1 for w in writers
        if w.client.current_host is not None
        and w.client.current_host.port == zk_ensemble.members[leader].port
    )
    assert on_leader_count >= 2
    try:
        stop = asyncio.Event()
        loads = [asyncio.create_task(_load(w, zk_path, stop)) for w in writers]
        await wait_for(lambda: all(len(w.acked) >= 20 for w in writers), 15, "steady load")
        leader_port = zk_ensemble.members[leader].port
        on_leader = [w for w in writers
                     if w.client.current_host is not None
                     and w.client.current_host.port == leader_port]
        assert on_leader, "no client on the leader when it is killed"
        cpu = CpuMeter()
        t_kill = time.monotonic()
        await asyncio.to_thread(zk_ensemble.kill_member, leader)
        new_leader = await asyncio.to_thread(zk_ensemble.leader, 30.0)
        t_elected = time.monotonic()
        assert new_leader != leader
        # No client is stuck: each gets writes acknowledged again after the failover.
        await wait_for(lambda: all(w.acked_after(t_kill) >= ACKS_AFTER_KILL for w in writers),
                       30, "every client writing again after the failover")
        t_all_writing = time.monotonic()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*loads), OP_BOUND + 1)
        cpu_s = cpu.elapsed()

        # The truth, read after a sync through a client that took no part.
        async with AsyncClient(zk_ensemble.connect_string, session_timeout=2.0) as check:
            await check.sync(zk_path)
            present = set(await check.get_children(zk_path))
        acked = {p.rsplit("/", 1)[1] for w in writers for p in w.acked}
        lost = {p.rsplit("/", 1)[1] for w in writers for p in w.lost}
        missing = acked - present
        assert not missing, sorted(missing)
        # Whatever is there was written by someone: acknowledged, or reported as lost.
        assert present <= acked | lost, sorted(present - acked - lost)
        # A call failed because its session was lost while it waited was never applied.
        expired = {p.rsplit("/", 1)[1] for w in writers for p in w.expired}
        assert not expired & present, sorted(expired & present)
        for w in writers:
            assert not w.stuck, (w.index, w.stuck)
            assert not w.other, (w.index, w.other)
            assert w.client.connected, (w.index, w.client.state)
        # The kill hit the clients of the leader (and their writes in flight, if any).
        for w in on_leader:
            assert w.states.first_time(ClientState.SUSPENDED, t_kill) is not None, w.index
        assert not loop_errors.contexts, loop_errors.messages()
        # What each client lived through: its longest wait between two acknowledged
        # writes around the kill.
        stall = [
            max(b - a for a, b in zip(times, times[1:], strict=False))
            for times in (sorted(t for t in w.acked.values() if t >= t_kill - 1.0)
                          for w in writers)
        ]
        report(
            "4-leader-killed",
            clients=CLIENTS,
            clients_on_leader=len(on_leader),
            acked=len(acked),
            lost_reported=len(lost),
            lost_but_applied=len(lost & present),
            expired_unapplied=len(expired),
            election_s=t_elected - t_kill,
            stall_max_s=max(stall),
            stall_per_client_s=[round(x, 3) for x in stall],
            all_writing_after_s=t_all_writing - t_kill,
            lost_sessions=sum(w.states.count(ClientState.LOST) for w in writers),
            cpu_s=cpu_s,
            warnings=len(zk_warnings.between(t_kill)),
            connect_attempts=sum(w.client.connect_attempts for w in writers),
        )
    finally:
        await asyncio.gather(*(w.client.close() for w in writers))
