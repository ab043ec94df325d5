"""Issue 15: an ensemble reconfigured under load, 3 -> 5 -> 3 members.

Twenty clients are started with the three original hosts only. Two members join through
``reconfig`` and two originals leave and are stopped. The clients must keep their
sessions (0 lost) and their watches, end connected only to current members, spread over
them (no member above a fair share + a margin), and the operations in flight may fail
only with ConnectionLossError. The distribution before and after and the time the
clients took to leave the removed members are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from chaos._support import report, wait_for

from zkwarden import AsyncClient, ClientState, ClientStateChange
from zkwarden.errors import ConnectionLossError
from zkwarden.hosts import HostPort
from zkwarden.testing import ZooKeeperEnsemble

CLIENTS = 20
SUPER = ("super", "ensemble-test")


@pytest.fixture(scope="module")
def dynamic_ensemble() -> Iterator[ZooKeeperEnsemble]:
    ensemble = ZooKeeperEnsemble(3, reconfig=True, superuser=SUPER, max_session_timeout=20.0)
    ensemble.start()
    try:
        yield ensemble
    finally:
        ensemble.stop()


def _distribution(clients: list[AsyncClient], ensemble: ZooKeeperEnsemble) -> dict[int, int]:
    """Clients per member index (-1: not connected)."""
    by_address = {HostPort("127.0.0.1", m.port): i for i, m in enumerate(ensemble.members)}
    counts: Counter[int] = Counter()
    for c in clients:
        host = c.current_host
        counts[by_address.get(host, -1) if host is not None else -1] += 1
    return dict(sorted(counts.items()))


async def test_clients_follow_a_3_5_3_reconfiguration(dynamic_ensemble: ZooKeeperEnsemble) -> None:
    ens = dynamic_ensemble
    original = ens.connect_string
    admin = AsyncClient(original, auth=[("digest", ":".join(SUPER))], track_ensemble=False)
    await admin.start()
    clients = [AsyncClient(original, session_timeout=10.0) for _ in range(CLIENTS)]
    lost: list[ClientStateChange] = []

    def on_state(change: ClientStateChange) -> None:
        if change.state is ClientState.LOST or change.new_session:
            lost.append(change)

    errors: Counter[str] = Counter()
    stop = asyncio.Event()
    try:
        await admin.ensure_path("/ens/w")
        for i in range(CLIENTS):
            await admin.create(f"/ens/w/{i}", b"0")
            await admin.create(f"/ens/load/{i}", b"", makepath=True)
        async with asyncio.timeout(30):
            await asyncio.gather(*(c.start() for c in clients))
        for c in clients:
            c.add_listener(on_state)
        sessions = [c.session_id for c in clients]
        streams = [c.watch(f"/ens/w/{i}", "data") for i, c in enumerate(clients)]
        for s in streams:  # the first event: the current data, the watch armed
            first = await asyncio.wait_for(s.__anext__(), 10)
            assert first.data == b"0"

        async def load(i: int, zk: AsyncClient) -> None:
            # Operations keep flowing through the whole reconfiguration; each failure is
            # recorded by class.
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    await zk.set(f"/ens/load/{i}", str(n).encode())
                    await zk.get(f"/ens/w/{i}")
                except ConnectionLossError:
                    errors["ConnectionLossError"] += 1
                    await asyncio.sleep(0.05)
                except Exception as exc:  # anything else fails the test below
                    errors[type(exc).__name__] += 1
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.02)

        before = _distribution(clients, ens)
        print(f"\ndistribution before (member index -> clients): {before}")
        assert sum(n for i, n in before.items() if i >= 0) == CLIENTS

        loads = [asyncio.create_task(load(i, c)) for i, c in enumerate(clients)]

        # --- grow: 3 -> 4 -> 5 ------------------------------------------------------------
        for _ in range(2):
            index = ens.add_member()
            cfg = await admin.reconfig(joining=[ens.server_line(index)])
            assert cfg.member(ens.server_id(index)) is not None
            size = len(cfg.members)
            await wait_for(lambda: all(len(c.hosts) == size for c in clients),  # noqa: B023
                           15, "every client learned the new membership")
        await wait_for(lambda: all(c.connected for c in clients), 15, "all connected")
        await asyncio.sleep(1.5)  # the planned moves' random delays (<= 1 s)
        grown = _distribution(clients, ens)
        print(f"distribution after adding 2 members: {grown}")
        assert set(grown) <= {0, 1, 2, 3, 4}
        assert grown.get(3, 0) + grown.get(4, 0) >= 2, "nobody moved to the new members"

        # --- shrink: remove two originals ------------------------------------------------
        leaving = [0, 1]
        removed = {HostPort("127.0.0.1", ens.members[i].port) for i in leaving}
        t_reconfig = time.monotonic()
        try:
            cfg = await admin.reconfig(leaving=[ens.server_id(i) for i in leaving])
        except ConnectionLossError:
            # Removing the leader drops every connection; the change may be committed.
            await admin.wait_connected(15)
            cfg = await admin.get_config()
        assert {m.id for m in cfg.members} == {3, 4, 5}

        def all_left() -> bool:
            return all(c.connected and c.current_host not in removed for c in clients)

        left_after = await wait_for(all_left, 20, "every client left the removed members")
        elapsed = time.monotonic() - t_reconfig
        print(f"clients left the removed members {elapsed:.2f}s after the reconfig "
              f"({left_after:.2f}s after it returned)")
        for i in leaving:
            ens.remove_member(i)  # stops the server
        await asyncio.sleep(1.5)  # let any move still pending land
        await wait_for(lambda: all(c.connected for c in clients), 20, "all connected")

        stop.set()
        await asyncio.wait_for(asyncio.gather(*loads), 15)
        after = _distribution(clients, ens)
        print(f"distribution after removing 2 originals: {after}")
        print(f"errors of operations in flight: {dict(errors)}; sessions lost: {len(lost)}")

        # --- what must hold ----------------------------------------------------------------
        assert lost == [], "sessions were lost"
        assert [c.session_id for c in clients] == sessions
        assert set(after) <= {2, 3, 4}, "a client is still on a removed member"
        # Independent clients can at best place themselves uniformly at random (ZooKeeper
        # tells no client the others' servers): the margin is 3.5 standard deviations of
        # that placement (20 clients, 3 members: at most 14; exceeded with p < 0.1%).
        fair = CLIENTS / 3
        margin = 3.5 * math.sqrt(CLIENTS * (1 / 3) * (2 / 3))
        assert max(after.values()) <= fair + margin, after
        assert set(errors) <= {"ConnectionLossError"}, errors

        # The watches armed before the reconfiguration survived every move: a change made
        # through the admin now reaches each of those streams.
        for i in range(CLIENTS):
            await admin.set(f"/ens/w/{i}", b"final")
        for s in streams:
            event = await asyncio.wait_for(s.__anext__(), 10)
            assert event.data == b"final"
        for s in streams:
            await s.aclose()
        report("ensemble_3_5_3", before=str(before), grown=str(grown), after=str(after),
               sessions_lost=len(lost), seconds_to_leave=elapsed,
               connection_losses=errors.get("ConnectionLossError", 0))
    finally:
        stop.set()
        await asyncio.gather(*(c.close() for c in clients))
        await admin.close()
