"""Cases 1 and 2: a network that silently drops everything (iptables DROP), shorter and
longer than the session timeout."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

import pytest

from zkwarden import AsyncClient, ClientState, EventType, WatchEvent, errors
from zkwarden.testing import FaultProxy

from ._support import (
    CpuMeter,
    LoopErrors,
    StateLog,
    WarningLog,
    anext_within,
    report,
    wait_for,
)

pytestmark = pytest.mark.asyncio


async def _collect(stream: AsyncIterator[WatchEvent], into: list[WatchEvent]) -> BaseException:
    """Consume a stream until it ends; return how it ended."""
    try:
        async for event in stream:
            into.append(event)
    except BaseException as exc:  # noqa: BLE001 - the ending is what we assert on
        return exc
    return StopAsyncIteration()


async def test_blackhole_shorter_than_session_timeout(
    chaos_proxy: FaultProxy, observer: AsyncClient, zk_path: str, zk_warnings: WarningLog
) -> None:
    """Case 1: SUSPENDED then CONNECTED on the same session; the ephemeral never
    disappears for another client; a change made during the outage reaches the data
    watch; pending operations fail with ConnectionLossError by the read timeout."""
    loop_errors = LoopErrors().install()
    session_timeout = 4.0
    client = AsyncClient(chaos_proxy.connect_string, session_timeout=session_timeout)
    states = StateLog().attach(client)
    await client.start()
    try:
        assert client.negotiated_timeout == session_timeout
        read_timeout = session_timeout * 2 / 3
        session_id = client.session_id
        eph, data = f"{zk_path}/eph", f"{zk_path}/data"
        await client.create(data, b"before", makepath=True)
        await client.create(eph, ephemeral=True)

        # The outside view: every state of the ephemeral another client sees.
        seen_by_observer: list[WatchEvent] = []
        observer_stream = observer.watch(eph, "exists")
        first = await anext_within(observer_stream, 5)
        assert first.stat is not None and first.stat.ephemeral_owner == session_id
        observer_task = asyncio.create_task(_collect(observer_stream, seen_by_observer))

        data_stream = client.watch(data)
        assert (await anext_within(data_stream, 5)).data == b"before"

        # Talk to the server right before the fault, so it last heard from us now.
        await client.exists("/")
        attempts0 = client.connect_attempts
        cpu = CpuMeter()
        t0 = time.monotonic()
        chaos_proxy.blackhole()
        in_flight = asyncio.create_task(client.get(data))

        # The in-flight read fails by the read timeout (2/3 of the session timeout).
        with pytest.raises(errors.ConnectionLossError):
            await asyncio.wait_for(in_flight, read_timeout + 2)
        failed_after = time.monotonic() - t0
        assert failed_after <= read_timeout + 0.5, failed_after
        await wait_for(states.reached(ClientState.SUSPENDED), 2, "SUSPENDED")
        suspended_at = states.first_time(ClientState.SUSPENDED)
        assert suspended_at is not None
        assert suspended_at - t0 <= read_timeout + 0.5

        # A change made by someone else while we cannot see it.
        await observer.set(data, b"during")
        # An operation issued while SUSPENDED waits for the session, bounded.
        while_suspended = asyncio.create_task(client.get(data))

        # Lift the fault well inside the session timeout (the server last heard from us
        # at t0, so the session is alive until t0 + session_timeout).
        heal_at = suspended_at + 0.3
        await asyncio.sleep(max(0.0, heal_at - time.monotonic()))
        chaos_proxy.pass_through()
        t_heal = time.monotonic()
        outage = t_heal - t0
        assert outage < session_timeout - 0.5, outage

        await wait_for(states.connected_again(t_heal), session_timeout, "reconnect")
        recovery = time.monotonic() - t_heal
        cpu_s = cpu.elapsed()

        assert client.session_id == session_id
        assert states.states == [
            ClientState.CONNECTED, ClientState.SUSPENDED, ClientState.CONNECTED
        ], states.changes
        assert not states.changes[-1].new_session
        assert states.changes[-1].session_id == session_id

        # The change made during the outage reaches the data watch after the resume.
        event = await anext_within(data_stream, 5)
        assert event.type is EventType.NODE_DATA_CHANGED and event.data == b"during"

        # The operation issued while SUSPENDED finished, one way or the other, in bound.
        outcome = await asyncio.wait_for(while_suspended, session_timeout + 1)
        assert outcome[0] == b"during"

        # The ephemeral never disappeared for the other client.
        stat = await observer.exists(eph)
        assert stat is not None and stat.ephemeral_owner == session_id
        assert not any(e.stat is None for e in seen_by_observer), seen_by_observer
        assert not observer_task.done()
        observer_task.cancel()
        await asyncio.gather(observer_task, return_exceptions=True)
        await data_stream.aclose()

        assert not loop_errors.contexts, loop_errors.messages()
        warnings = zk_warnings.between(t0)
        report(
            "1-blackhole-short",
            session_timeout=session_timeout,
            outage_s=outage,
            in_flight_failed_after_s=failed_after,
            suspended_after_s=suspended_at - t0,
            recovery_s=recovery,
            cpu_s=cpu_s,
            warnings=len(warnings),
            connect_attempts=client.connect_attempts - attempts0,
        )
    finally:
        await client.close()


#: The long outage of case 2.
LONG_OUTAGE = 30.0


def warning_bound(outage: float) -> int:
    """The most WARNING+ lines an outage of ``outage`` seconds may log.

    One each for the read timeout, the disconnect and the presumed loss, plus the
    rate-limited "cannot connect" line: at most one per backoff step of the limiter,
    whose interval starts at 1 s and doubles after each line (lines at 0, 1, 3, 7, 15,
    31 s …), i.e. ``floor(log2(outage + 1)) + 1`` lines. For 30 s: 3 + 5 = 8.
    """
    return 3 + math.floor(math.log2(outage + 1)) + 1


async def test_blackhole_longer_than_session_timeout(
    chaos_proxy: FaultProxy, observer: AsyncClient, zk_path: str, zk_warnings: WarningLog
) -> None:
    """Case 2: LOST once (presumed, later confirmed without a second LOST), streams end
    with SessionExpiredError and stay ended, a new session when the network returns;
    the 30 s outage costs under 2% of a core and a bounded number of log lines."""
    loop_errors = LoopErrors().install()
    session_timeout = 2.0
    client = AsyncClient(chaos_proxy.connect_string, session_timeout=session_timeout)
    states = StateLog().attach(client)
    await client.start()
    try:
        old_session = client.session_id
        eph, data = f"{zk_path}/eph", f"{zk_path}/data"
        await client.create(data, b"v0", makepath=True)
        await client.create(eph, ephemeral=True)

        streams = {
            "data": client.watch(data),
            "exists": client.watch(eph, "exists"),
            "children": client.watch(zk_path, "children"),
            "persistent": await client.add_watch(zk_path, recursive=True),
        }
        seen: dict[str, list[WatchEvent]] = {name: [] for name in streams}
        for name, stream in streams.items():
            seen[name].append(await anext_within(stream, 5))
        consumers = {
            name: asyncio.create_task(_collect(stream, seen[name]))
            for name, stream in streams.items()
        }
        await asyncio.sleep(0)
        before = {name: len(events) for name, events in seen.items()}

        await client.exists("/")
        attempts0 = client.connect_attempts
        cpu = CpuMeter()
        t0 = time.monotonic()
        chaos_proxy.blackhole()

        await wait_for(states.reached(ClientState.LOST), session_timeout + 2, "LOST")
        lost_at = states.first_time(ClientState.LOST)
        assert lost_at is not None
        # Presumed: no server heard for a whole session timeout.
        assert session_timeout - 0.2 <= lost_at - t0 <= session_timeout + 0.5, lost_at - t0
        # Every stream ends with SessionExpiredError, right away.
        endings = await asyncio.wait_for(asyncio.gather(*consumers.values()), 2)
        for name, ending in zip(consumers, endings, strict=True):
            assert isinstance(ending, errors.SessionExpiredError), (name, ending)
            assert len(seen[name]) == before[name], (name, seen[name])

        # The rest of the outage: nothing to do but wait (this is what is measured).
        await asyncio.sleep(max(0.0, t0 + LONG_OUTAGE - time.monotonic()))
        outage_cpu = cpu.elapsed()
        outage_attempts = client.connect_attempts - attempts0
        outage_warnings = zk_warnings.between(t0)
        assert client.state is ClientState.LOST
        # Ended streams stay ended: StopAsyncIteration at once, every time, no event.
        for name, stream in streams.items():
            for _ in range(200):
                with pytest.raises(StopAsyncIteration):
                    await asyncio.wait_for(stream.__anext__(), 0.5)
            assert len(seen[name]) == before[name], (name, seen[name])
        chaos_proxy.pass_through()
        t_heal = time.monotonic()

        # A new session opens by itself, within one full backoff step (10 s) + a connect.
        await wait_for(states.connected_again(t_heal), 10.0 + 2 * session_timeout,
                       "new session")
        recovery = time.monotonic() - t_heal
        new_session = client.session_id
        assert new_session is not None and new_session != old_session
        assert states.states == [
            ClientState.CONNECTED, ClientState.SUSPENDED, ClientState.LOST, ClientState.CONNECTED
        ], states.changes
        lost = states.changes[2]
        assert lost.session_id == old_session and not lost.confirmed
        assert states.changes[3].new_session and states.changes[3].session_id == new_session

        # The old session is gone on the server with its ephemeral; the client works.
        assert await observer.exists(eph) is None
        fresh = client.watch(data)
        assert (await anext_within(fresh, 5)).data == b"v0"
        await observer.set(data, b"v1")
        assert (await anext_within(fresh, 5)).data == b"v1"
        await fresh.aclose()

        assert outage_cpu < 0.02 * LONG_OUTAGE, f"{outage_cpu:.3f}s CPU during the outage"
        bound = warning_bound(LONG_OUTAGE)
        assert len(outage_warnings) <= bound, outage_warnings
        assert not zk_warnings.errors()
        assert not loop_errors.contexts, loop_errors.messages()
        report(
            "2-blackhole-long",
            session_timeout=session_timeout,
            outage_s=t_heal - t0,
            lost_after_s=lost_at - t0,
            recovery_s=recovery,
            cpu_s=outage_cpu,
            cpu_share=outage_cpu / (t_heal - t0),
            warnings=len(outage_warnings),
            warning_bound=bound,
            connect_attempts=outage_attempts,
        )
    finally:
        await client.close()
