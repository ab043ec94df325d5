"""Real-server regression tests of issue 11 (harden the core), one per defect.

Each drives a real ZooKeeper through a FaultProxy into the fault the issue reproduced,
and asserts what the client must do instead.  Every wait is bounded: a hang fails the
test, it does not stall the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from zkwarden import AsyncClient, ClientState, EventType, WatchEvent
from zkwarden.errors import (
    ClientClosedError,
    ConnectionLossError,
    DataTooLargeError,
    NoAuthError,
    RequestTimeoutError,
    SessionExpiredError,
    ZooKeeperError,
)
from zkwarden.testing import FaultProxy, ZooKeeperServer, expire_session_async
from zkwarden.types import make_digest_acl

from ._support import StateLog, anext_within, wait_for

CLOSE_BOUND = 10.0


@pytest.fixture
def path() -> str:
    return f"/hardening-{uuid.uuid4().hex}"


@contextlib.asynccontextmanager
async def started(proxy: FaultProxy, **options: Any) -> AsyncIterator[AsyncClient]:
    """An AsyncClient through ``proxy``, started, and closed (bounded) afterwards."""
    options.setdefault("session_timeout", 4.0)
    zk = AsyncClient(proxy.connect_string, **options)
    await asyncio.wait_for(zk.start(), 10.0)
    try:
        yield zk
    finally:
        await asyncio.wait_for(zk.close(), CLOSE_BOUND)


async def _until_absent(observer: AsyncClient, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await observer.exists(path) is not None:
        assert time.monotonic() < deadline, f"{path} still exists after {timeout}s"
        await asyncio.sleep(0.05)


async def _next_change(stream: Any, timeout: float) -> WatchEvent:
    """The next event that is not a NONE (reconnect/initial) marker."""
    deadline = time.monotonic() + timeout
    while True:
        event: WatchEvent = await anext_within(stream, max(0.01, deadline - time.monotonic()))
        if event.type is not EventType.NONE:
            return event


# --- D1 ----------------------------------------------------------------------------------


async def test_d1_undecodable_reply_body_is_a_prompt_connection_loss(
    chaos_proxy: FaultProxy, observer: AsyncClient, path: str
) -> None:
    await observer.create(path, b"payload")
    async with started(chaos_proxy) as zk:
        log = StateLog().attach(zk)
        assert (await asyncio.wait_for(zk.get(path), 5.0))[0] == b"payload"
        faulted = time.monotonic()
        chaos_proxy.corrupt_next_reply_body()
        # Before the fix the request left the FIFO before its body failed to decode and
        # nobody ever failed it: the call hung.  A timeout of ours is not the answer.
        with pytest.raises(ConnectionLossError) as caught:
            await asyncio.wait_for(zk.get(path), 2.0)
        assert not isinstance(caught.value, RequestTimeoutError)
        assert time.monotonic() - faulted < 2.0
        await wait_for(log.connected_again(faulted), 10.0, "CONNECTED after the bad reply")
        assert (await asyncio.wait_for(zk.get(path), 5.0))[0] == b"payload"
        assert zk.state is ClientState.CONNECTED


# --- D2 ----------------------------------------------------------------------------------


async def _collect_states(zk: AsyncClient) -> list[ClientState]:
    return [change.state async for change in zk.state_changes()]


async def _drain_until_end(stream: Any) -> BaseException | None:
    try:
        async for _ in stream:
            pass
    except ZooKeeperError as exc:
        return exc
    return None


async def test_d2_cancelled_close_still_closes_everything(
    chaos_proxy: FaultProxy, observer: AsyncClient, path: str
) -> None:
    await observer.create(path)
    zk = AsyncClient(chaos_proxy.connect_string, session_timeout=4.0)
    await asyncio.wait_for(zk.start(), 10.0)
    try:
        await zk.create(f"{path}/eph", ephemeral=True)
        states = asyncio.create_task(_collect_states(zk))
        stream = await asyncio.wait_for(zk.add_watch(path), 5.0)
        watch_end = asyncio.create_task(_drain_until_end(stream))
        await asyncio.sleep(0.1)  # both consumers are waiting
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(zk.close(), 0.0005)
        # A second close() returns only once the client is closed ...
        await asyncio.wait_for(zk.close(), CLOSE_BOUND)
        assert zk.state is ClientState.CLOSED
        # ... consumers of the state and of a persistent watch see the end ...
        seen = await asyncio.wait_for(states, 5.0)
        assert seen and seen[-1] is ClientState.CLOSED, seen
        assert isinstance(await asyncio.wait_for(watch_end, 5.0), ClientClosedError)
        # ... and the session is gone on the server (its ephemeral node with it).
        await _until_absent(observer, f"{path}/eph", 5.0)
    finally:
        await asyncio.wait_for(zk.close(), CLOSE_BOUND)


async def test_d2_cancelled_close_reaches_closed_by_itself(
    chaos_proxy: FaultProxy, observer: AsyncClient, path: str
) -> None:
    zk = AsyncClient(chaos_proxy.connect_string, session_timeout=4.0)
    await asyncio.wait_for(zk.start(), 10.0)
    try:
        await zk.create(path, ephemeral=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(zk.close(), 0.0005)
        await wait_for(lambda: zk.state is ClientState.CLOSED, 5.0, "CLOSED after a cancelled close")
        await _until_absent(observer, path, 5.0)
    finally:
        await asyncio.wait_for(zk.close(), CLOSE_BOUND)


# --- D3 ----------------------------------------------------------------------------------


async def test_d3_calls_after_a_presumed_expiry_raise_only_zkwarden_errors(
    chaos_proxy: FaultProxy, observer: AsyncClient, path: str
) -> None:
    await observer.create(path)
    async with started(chaos_proxy, session_timeout=1.0) as zk:
        log = StateLog().attach(zk)
        old = zk.session_id
        outage = time.monotonic()
        # Discard: no ConnectRequest of an attempt given up during the outage reaches
        # the server later.
        chaos_proxy.blackhole(discard=True)
        await wait_for(log.reached(ClientState.LOST, outage), 10.0, "LOST (presumed)")
        calls: list[asyncio.Task[Any]] = []

        async def call_for(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                calls.append(asyncio.create_task(asyncio.wait_for(zk.exists(path), 6.0)))
                await asyncio.sleep(0.1)

        await call_for(1.5)  # the server expires the session meanwhile
        # The outage goes on, except that a server answers once: the client learns that
        # its session expired (the ConnectResponse), then finds every connection refused.
        chaos_proxy.drop_after_server_frames(1, then_refuse=True)
        chaos_proxy.end_blackhole()
        await call_for(2.5)
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert chaos_proxy.stats().dropped_after_frames == 1  # the outage did go on
        # TimeoutError (of our wait_for) would be a hang; AssertionError the old defect.
        wrong = [repr(o) for o in outcomes if isinstance(o, BaseException)
                 and not isinstance(o, (ConnectionLossError, SessionExpiredError))]
        assert not wrong, wrong
        back = time.monotonic()
        chaos_proxy.pass_through()
        await wait_for(log.connected_again(back), 15.0, "CONNECTED after the outage")
        assert zk.session_id not in (None, old)
        assert await asyncio.wait_for(zk.exists(path), 5.0) is not None


async def test_d3_calls_while_a_presumed_lost_session_is_closed(
    chaos_proxy: FaultProxy, observer: AsyncClient, path: str
) -> None:
    # The server keeps the session (the client's ConnectRequests reach it) while the client
    # hears nothing and presumes it lost; once the server answers again the client closes
    # that session before opening a new one, slowly (replies delayed): calls made in that
    # window must end with zkwarden errors or results (the old client raised
    # AssertionError: it marked the session connected on a connection it never kept).
    await observer.create(path)
    async with started(chaos_proxy, session_timeout=2.0) as zk:
        log = StateLog().attach(zk)
        old = zk.session_id
        outage = time.monotonic()
        chaos_proxy.blackhole("downstream", discard=True)
        await wait_for(log.reached(ClientState.LOST, outage), 10.0, "LOST (presumed)")
        chaos_proxy.pass_through()  # the server answers again, slowly
        chaos_proxy.delay(0.25)  # a round trip within the per-host connect timeout
        calls: list[asyncio.Task[Any]] = []
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            calls.append(asyncio.create_task(asyncio.wait_for(zk.exists(path), 8.0)))
            await asyncio.sleep(0.02)
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        wrong = [repr(o) for o in outcomes if isinstance(o, BaseException)
                 and not isinstance(o, (ConnectionLossError, SessionExpiredError))]
        assert not wrong, wrong[:5]
        chaos_proxy.pass_through()
        await wait_for(lambda: zk.state is ClientState.CONNECTED, 15.0, "CONNECTED")
        assert zk.session_id not in (None, old)
        assert await asyncio.wait_for(zk.exists(path), 5.0) is not None


# --- D4 ----------------------------------------------------------------------------------


async def test_d4_streams_made_after_lost_live_on_in_the_new_session(
    chaos_proxy: FaultProxy, observer: AsyncClient, path: str
) -> None:
    await observer.create(path, b"v1")
    async with started(chaos_proxy, session_timeout=1.0) as zk:
        log = StateLog().attach(zk)
        outage = time.monotonic()
        chaos_proxy.blackhole()
        await wait_for(log.reached(ClientState.LOST, outage), 10.0, "LOST (presumed)")
        # What applications are told to do after LOST: subscribe again.
        data = zk.watch(path, "data")
        persistent = zk.add_watch(path, recursive=False)
        first_data = asyncio.create_task(anext_within(data, 20.0))
        first_persistent = asyncio.create_task(anext_within(persistent, 20.0))
        await asyncio.sleep(1.5)  # the server expires the session meanwhile
        back = time.monotonic()
        chaos_proxy.pass_through()
        initial = await asyncio.wait_for(first_data, 20.0)
        assert initial.type is EventType.NONE and initial.data == b"v1"
        assert (await asyncio.wait_for(first_persistent, 20.0)).type is EventType.NONE
        await wait_for(log.connected_again(back), 15.0, "CONNECTED with a new session")
        await observer.set(path, b"v2")
        changed = await _next_change(data, 10.0)
        assert changed.type is EventType.NODE_DATA_CHANGED and changed.data == b"v2"
        assert (await _next_change(persistent, 10.0)).type is EventType.NODE_DATA_CHANGED


# --- D5 ----------------------------------------------------------------------------------


async def _record(stream: Any, into: list[WatchEvent]) -> None:
    async for event in stream:
        into.append(event)


async def test_d5_exists_watch_on_a_present_node_fires_nothing_on_reconnect(
    chaos_proxy: FaultProxy, observer: AsyncClient, path: str
) -> None:
    await observer.create(path, b"a")
    async with started(chaos_proxy) as zk:
        log = StateLog().attach(zk)
        stream = zk.watch(path, "exists")
        events: list[WatchEvent] = []
        recorder = asyncio.create_task(_record(stream, events))
        try:
            await wait_for(lambda: bool(events), 5.0, "the initial state")
            assert events[0].type is EventType.NONE and events[0].stat is not None
            for _ in range(2):
                cut = time.monotonic()
                chaos_proxy.reset()
                await wait_for(log.connected_again(cut), 10.0, "CONNECTED after a reset")
                await asyncio.sleep(0.7)  # a replayed NodeCreated would be here by now
            assert [e.type for e in events] == [EventType.NONE], events
            await observer.set(path, b"b")
            await wait_for(lambda: len(events) > 1, 5.0, "the real change")
            assert events[1].type is EventType.NODE_DATA_CHANGED
        finally:
            recorder.cancel()
            await asyncio.gather(recorder, return_exceptions=True)


# --- D6 ----------------------------------------------------------------------------------


async def test_d6_new_session_is_reported_once_even_if_its_first_connection_drops(
    chaos_server: ZooKeeperServer, chaos_proxy: FaultProxy, path: str
) -> None:
    # With auth and a watch, every connection of a session has a set-up phase (auth and
    # SetWatches sent after the ConnectResponse): the drop lands inside it.
    async with started(chaos_proxy, auth=[("digest", "hardening:pw")]) as zk:
        await zk.create(path)
        stream = zk.watch(path, "data")
        await anext_within(stream, 5.0)
        log = StateLog().attach(zk)
        old = zk.session_id
        chaos_proxy.drop_after_server_frames(1, new_session=True)
        await expire_session_async(zk, hosts=chaos_server.connect_string)
        await wait_for(
            lambda: bool(log.changes)
            and log.changes[-1].state is ClientState.CONNECTED
            and log.changes[-1].session_id not in (None, old),
            15.0, "CONNECTED with a new session",
        )
        assert chaos_proxy.stats().dropped_after_frames == 1  # the fault did happen
        new = zk.session_id
        assert {c.session_id for c in log.changes} <= {None, old, new}
        flagged = [c for c in log.changes if c.new_session]
        assert [(c.session_id, c.state) for c in flagged] == [(new, ClientState.CONNECTED)], (
            log.changes
        )
        await asyncio.sleep(0.3)
        assert zk.state is ClientState.CONNECTED
        assert await asyncio.wait_for(zk.exists(path), 5.0) is not None


# --- D7 ----------------------------------------------------------------------------------


async def test_d7_slow_persistent_consumer_is_bounded_and_told(
    chaos_proxy: FaultProxy, observer: AsyncClient, path: str
) -> None:
    await observer.create(path)
    async with started(chaos_proxy, max_queued_events=100) as zk:
        stream = await asyncio.wait_for(zk.add_watch(path), 5.0)
        assert (await anext_within(stream, 5.0)).type is EventType.NONE
        for start in range(0, 600, 200):  # the consumer reads nothing meanwhile
            await asyncio.gather(
                *(observer.set(path, str(i).encode()) for i in range(start, start + 200))
            )
        # Notifications precede the replies that follow them: after this read, all 600
        # changes have reached the client.
        await asyncio.wait_for(zk.sync(path), 5.0)
        await asyncio.wait_for(zk.get(path), 5.0)
        backlog: list[WatchEvent] = []
        with contextlib.suppress(TimeoutError):
            while True:
                backlog.append(await anext_within(stream, 0.5))
        assert 1 <= len(backlog) <= 101, len(backlog)
        assert sum(1 for e in backlog if e.type is EventType.NONE) == 1, backlog[:5]
        await observer.set(path, b"after")
        assert (await _next_change(stream, 5.0)).type is EventType.NODE_DATA_CHANGED


# --- D8 ----------------------------------------------------------------------------------


async def test_d8_watch_denied_read_raises_noauth_then_stops(
    chaos_proxy: FaultProxy, observer: AsyncClient, path: str
) -> None:
    await observer.create(path, b"secret", acl=[make_digest_acl("owner", "pw")])
    async with started(chaos_proxy) as zk:
        stream = zk.watch(path, "data")
        with pytest.raises(NoAuthError):
            await anext_within(stream, 5.0)
        # Then the end, once and at once: not a wait on a watch that was never armed.
        with pytest.raises(StopAsyncIteration):
            await anext_within(stream, 2.0)
        with pytest.raises(StopAsyncIteration):
            await anext_within(stream, 2.0)
        assert zk.state is ClientState.CONNECTED


# --- suspected defects -------------------------------------------------------------------


async def test_suspected_oversized_add_auth_fails_at_once_and_auth_still_works(
    chaos_proxy: FaultProxy, path: str
) -> None:
    async with started(chaos_proxy, max_request_size=4096) as zk:
        with pytest.raises(DataTooLargeError):
            await asyncio.wait_for(zk.add_auth("digest", "big:" + "x" * 10_000), 2.0)
        await asyncio.wait_for(zk.add_auth("digest", "small:pw"), 5.0)
        # The identity is really in place: a node only small:pw may read is readable.
        await zk.create(path, b"mine", acl=[make_digest_acl("small", "pw")])
        assert (await asyncio.wait_for(zk.get(path), 5.0))[0] == b"mine"
        await asyncio.wait_for(zk.add_auth("digest", "other:pw"), 5.0)


async def test_suspected_setwatches_over_the_request_limit_still_restores(
    chaos_proxy: FaultProxy, observer: AsyncClient, path: str
) -> None:
    # 'é' is 2 bytes in UTF-8: a batch limit counted in characters overshoots by 2x.
    paths = [f"{path}/{'é' * 200}-{i}" for i in range(40)]
    await observer.create(path)
    await asyncio.gather(*(observer.create(p, b"0") for p in paths))
    async with started(chaos_proxy, max_request_size=8192) as zk:
        log = StateLog().attach(zk)
        streams = [zk.watch(p, "data") for p in paths]
        await asyncio.gather(*(anext_within(s, 10.0) for s in streams))
        cut = time.monotonic()
        chaos_proxy.reset()
        await wait_for(log.connected_again(cut), 15.0, "CONNECTED with 40 watches restored")
        await asyncio.gather(*(observer.set(p, b"1") for p in paths))
        changes = await asyncio.gather(*(_next_change(s, 10.0) for s in streams))
        assert {e.type for e in changes} == {EventType.NODE_DATA_CHANGED}
        assert zk.state is ClientState.CONNECTED


async def test_suspected_requests_waiting_through_suspended_fail_at_lost(
    chaos_proxy: FaultProxy, observer: AsyncClient, path: str
) -> None:
    async with started(chaos_proxy, session_timeout=1.0, request_timeout=30.0) as zk:
        log = StateLog().attach(zk)
        outage = time.monotonic()
        chaos_proxy.blackhole()
        await wait_for(log.reached(ClientState.SUSPENDED, outage), 5.0, "SUSPENDED")
        waiting = asyncio.create_task(zk.create(path))
        await wait_for(log.reached(ClientState.LOST, outage), 10.0, "LOST (presumed)")
        await asyncio.sleep(0.5)
        back = time.monotonic()
        chaos_proxy.pass_through()
        with pytest.raises(SessionExpiredError):
            await asyncio.wait_for(waiting, 10.0)
        await wait_for(log.connected_again(back), 15.0, "CONNECTED with a new session")
        await asyncio.sleep(0.3)
        assert await observer.exists(path) is None  # it did not run on the new session


async def test_suspected_state_changes_iterator_sees_changes_before_its_first_read(
    chaos_proxy: FaultProxy,
) -> None:
    async with started(chaos_proxy) as zk:
        log = StateLog().attach(zk)
        changes = zk.state_changes()
        try:
            cut = time.monotonic()
            chaos_proxy.reset()
            await wait_for(log.connected_again(cut), 10.0, "CONNECTED after a reset")
            first = await anext_within(changes, 2.0)
            assert first.state is ClientState.SUSPENDED
            assert (await anext_within(changes, 2.0)).state is ClientState.CONNECTED
        finally:
            await asyncio.wait_for(changes.aclose(), 2.0)
