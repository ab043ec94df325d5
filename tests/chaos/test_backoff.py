"""Case 5: TCP connects, then the connection is closed at once (accept-then-close), for
20 s: reconnect attempts follow capped exponential backoff with full jitter, replayed
exactly from the seeded random generator; the client connects within one backoff step
of the recovery."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, NamedTuple

import pytest

from zkwarden import AsyncClient, ClientState
from zkwarden._aio import supervisor as supervisor_module
from zkwarden._aio.retry import backoff_delay
from zkwarden.hosts import HostPort
from zkwarden.testing import FaultProxy

from ._support import CpuMeter, LoopErrors, StateLog, WarningLog, report, wait_for

pytestmark = pytest.mark.asyncio

OUTAGE = 20.0
SEED = 20240611
#: How far an attempt may start from its replayed time (event-loop and thread jitter).
SLACK = 0.1


class _Sleep(NamedTuple):
    requested: float
    called: float
    woke: float


class _TracedAsyncio:
    """The supervisor's ``asyncio``, with every backoff sleep recorded: how long it asked
    for and how late the loop woke it (on a loaded machine a timer can fire late)."""

    def __init__(self, sleeps: list[_Sleep]) -> None:
        self._sleeps = sleeps

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def sleep(self, delay: float) -> None:
        called = time.monotonic()
        await asyncio.sleep(delay)
        self._sleeps.append(_Sleep(delay, called, time.monotonic()))


async def test_accept_then_close_backoff_schedule(
    chaos_proxy: FaultProxy, zk_warnings: WarningLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_errors = LoopErrors().install()
    sleeps: list[_Sleep] = []
    monkeypatch.setattr(supervisor_module, "asyncio", _TracedAsyncio(sleeps))
    session_timeout = 2.0
    client = AsyncClient(chaos_proxy.connect_string, session_timeout=session_timeout)
    client._supervisor.rng = random.Random(SEED)
    starts: list[float] = []
    ends: list[float] = []
    original_connect = client._supervisor.connect

    async def traced_connect(host: HostPort) -> object:
        starts.append(time.monotonic())
        try:
            return await original_connect(host)
        finally:
            ends.append(time.monotonic())

    client._supervisor.connect = traced_connect  # type: ignore[method-assign,assignment]
    states = StateLog().attach(client)
    await client.start()
    try:
        old_session = client.session_id
        backoff = client._supervisor.backoff
        initial, maximum = backoff.initial, backoff.maximum
        assert (initial, maximum) == (0.1, 10.0)
        negotiated = client.negotiated_timeout
        assert negotiated == session_timeout
        alive_cap = min(maximum, negotiated / 3)
        # The connection must have stayed up a while, so the backoff starts from zero.
        connected_at = states.times[0]
        await asyncio.sleep(max(0.0, connected_at + negotiated - time.monotonic()))
        await client.exists("/")

        first_attempt = len(starts)
        chaos_proxy.accept_then_close(True)
        cpu = CpuMeter()
        t0 = time.monotonic()
        chaos_proxy.reset()
        await wait_for(states.reached(ClientState.SUSPENDED), 1, "SUSPENDED")
        await wait_for(states.reached(ClientState.LOST), negotiated + 1, "presumed LOST")
        lost_at = states.first_time(ClientState.LOST)
        assert lost_at is not None
        await asyncio.sleep(max(0.0, t0 + OUTAGE - time.monotonic()))
        chaos_proxy.accept_then_close(False)
        t_heal = time.monotonic()
        outage_cpu = cpu.elapsed()
        outage_warnings = zk_warnings.between(t0, t_heal)
        failed = [(s, e) for s, e in zip(starts[first_attempt:], ends[first_attempt:],
                                          strict=False) if s < t_heal]
        refused = chaos_proxy.stats().accept_then_closed

        await wait_for(
            lambda: states.connected_again(t_heal)() and client.session_id != old_session,
            maximum + 2 * negotiated, "new session after recovery",
        )
        t_connected = time.monotonic()
        after = starts[first_attempt + len(failed):]

        # --- the schedule, replayed from the same seed ---------------------------------
        rng = random.Random(SEED)
        assert failed[0][0] - t0 < 0.3, "the first attempt after a stable link is at once"
        steps: list[dict[str, float]] = []
        for n in range(1, len(failed) + 1):
            # After n failed attempts, backoff step n. Its cap depends on whether LOST had
            # been reported when it was computed (at the end of the last attempt); right at
            # that moment either cap is accepted.
            end_prev = failed[n - 1][1]
            caps = {alive_cap, maximum}
            if end_prev < lost_at - SLACK:
                caps = {alive_cap}
            elif end_prev > lost_at + SLACK:
                caps = {maximum}
            state = rng.getstate()
            expected: dict[float, float] = {}
            for cap in caps:  # the client's own function, draw for draw
                rng.setstate(state)
                expected[min(cap, initial * 2 ** (n - 1))] = backoff_delay(n, initial, cap, rng)
            start = failed[n][0] if n < len(failed) else after[0]
            gap = start - end_prev
            between = [s for s in sleeps if end_prev <= s.called <= start]
            assert len(between) == 1, f"backoff step {n}: sleeps {between}"
            sleep = between[0]
            # The delay asked for is the replayed draw, exactly; the time waited is that
            # delay, give or take the loop's jitter plus however late the timer fired.
            matched = [c for c, d in expected.items() if d == sleep.requested]
            assert matched, (
                f"backoff step {n}: slept {sleep.requested!r}s, the replay says {expected}"
            )
            ceiling = matched[0]  # the cap the client used (when either was possible)
            late = max(0.0, sleep.woke - sleep.called - sleep.requested)
            assert abs(gap - sleep.requested) <= SLACK + late, (
                f"backoff step {n}: waited {gap:.3f}s for {sleep.requested:.3f}s "
                f"(timer {late:.3f}s late)"
            )
            assert sleep.requested <= ceiling and gap <= ceiling + SLACK + late, (
                n, gap, ceiling, expected)
            steps.append({"gap": round(gap, 3), "ceiling": round(ceiling, 3)})

        # Before LOST the cap is a third of the session timeout, after it the full maximum.
        assert any(s["ceiling"] > alive_cap for s in steps), steps
        # Not a storm: the expected number of attempts for capped exponential backoff.
        assert 5 <= len(failed) <= 25, len(failed)
        assert refused == len(failed), (refused, len(failed))
        # The recovery: the first attempt after it connects, within one backoff step (it
        # closes the session given up as presumed expired, then opens a new one).
        recovery = t_connected - t_heal
        assert recovery <= steps[-1]["ceiling"] + 1.0, (recovery, steps[-1])
        assert len(after) == 1, after
        assert states.states == [
            ClientState.CONNECTED, ClientState.SUSPENDED, ClientState.LOST, ClientState.CONNECTED
        ], states.changes
        assert outage_cpu < 0.02 * OUTAGE, outage_cpu
        assert len(outage_warnings) <= 3 + 5, outage_warnings
        assert not loop_errors.contexts, loop_errors.messages()
        report(
            "5-accept-then-close",
            outage_s=t_heal - t0,
            lost_after_s=lost_at - t0,
            connect_attempts=len(failed),
            proxy_refused=refused,
            backoff_gaps_s=[s["gap"] for s in steps],
            backoff_ceilings_s=[s["ceiling"] for s in steps],
            recovery_s=recovery,
            cpu_s=outage_cpu,
            warnings=len(outage_warnings),
        )
    finally:
        await client.close()
