"""The blocking Client's direct path: get/exists/get_children/set on a live connection are
sent from the loop thread without a coroutine or a task, their reply answering the waiting
caller synchronously. Same results and errors as the coroutine path, and every call still
ends: a dropped connection, a close, a timeout, a send that cannot happen."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any

import pytest
from sync_helpers import call_in_thread, wait_until

from zkwarden import Client, ClientState, errors
from zkwarden.sync._portal import Portal
from zkwarden.testing import FaultProxy

BOUND = 10.0  # no call below may take longer: a hang is a failure, not a stuck run


def _count_tasks(zk: Client) -> list[int]:
    """Count the tasks created on the client's loop from now on."""
    created = [0]
    loop = zk.async_client._engine.loop
    assert loop is not None

    def factory(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any],
                **kwargs: Any) -> asyncio.Task[Any]:
        created[0] += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    zk.run_coroutine(_set_factory(loop, factory), timeout=BOUND)
    return created


async def _set_factory(loop: asyncio.AbstractEventLoop, factory: Any) -> None:
    loop.set_task_factory(factory)


def test_live_reads_and_sets_answer_like_the_coroutine_path_without_a_task(
        zk: Client, zk_path: str) -> None:
    zk.create(zk_path, b"v0")
    zk.create(f"{zk_path}/a")
    zk.create(f"{zk_path}/b")
    created = _count_tasks(zk)
    for i in range(50):
        data, stat = zk.get(zk_path)
        assert data == f"v{i}".encode() and stat.version == i
        assert zk.exists(zk_path) == stat
        assert zk.exists(f"{zk_path}/absent") is None
        assert sorted(zk.get_children(zk_path)) == ["a", "b"]
        assert zk.set(zk_path, f"v{i + 1}".encode()).version == i + 1
    with pytest.raises(errors.NoNodeError):
        zk.get(f"{zk_path}/absent")
    with pytest.raises(errors.BadVersionError):
        zk.set(zk_path, b"x", version=0)
    with pytest.raises(errors.InvalidPathError):
        zk.get("no-slash")
    assert created[0] == 0
    zk.delete(zk_path, recursive=True)


def _started_and_blocked(fault_proxy: FaultProxy, zk_path: str) -> tuple[
        Client, threading.Thread, list[object]]:
    zk = Client(fault_proxy.connect_string, session_timeout=4.0, track_ensemble=False)
    zk.start()
    zk.create(zk_path, b"x")
    fault_proxy.blackhole("downstream")  # the request goes out, no reply comes back
    thread, outcome = call_in_thread(lambda: zk.get(zk_path))
    time.sleep(0.2)
    assert thread.is_alive() and not outcome
    return zk, thread, outcome


def test_call_in_flight_when_the_connection_drops_raises_connection_loss(
        fault_proxy: FaultProxy, zk_path: str) -> None:
    zk, thread, outcome = _started_and_blocked(fault_proxy, zk_path)
    try:
        fault_proxy.reset()  # the held reply goes with the connection
        thread.join(BOUND)
        fault_proxy.pass_through()
        assert not thread.is_alive()
        assert isinstance(outcome[0], errors.ConnectionLossError), outcome
        assert wait_until(lambda: zk.state is ClientState.CONNECTED, BOUND)
        assert zk.get(zk_path, timeout=BOUND)[0] == b"x"
        zk.delete(zk_path)
    finally:
        zk.close()


def test_call_in_flight_when_the_client_closes_ends(fault_proxy: FaultProxy,
                                                    zk_path: str) -> None:
    zk, thread, outcome = _started_and_blocked(fault_proxy, zk_path)
    zk.close(timeout=2.0)
    thread.join(BOUND)
    assert not thread.is_alive()
    assert isinstance(outcome[0], (errors.ClientClosedError, errors.ConnectionLossError)), outcome


# --- the portal alone (no server needed: these are the facade's own mechanics) -----------


@pytest.fixture
def portal() -> Any:
    p = Portal("test-portal")
    p.start()
    yield p
    assert p.stop(5.0)


async def _answer() -> str:
    return "from the fallback"


def test_a_send_that_cannot_happen_runs_the_fallback(portal: Portal) -> None:
    assert portal.run_direct(lambda sink: False, _answer, BOUND, "get") == "from the fallback"


def test_a_failing_send_raises_in_the_caller(portal: Portal) -> None:
    def send(sink: Any) -> bool:
        raise errors.DataTooLargeError("too big")

    with pytest.raises(errors.DataTooLargeError):
        portal.run_direct(send, _answer, BOUND, "set")


def test_an_answer_from_the_loop_reaches_the_caller(portal: Portal) -> None:
    def send(sink: Any) -> bool:
        portal.loop.call_later(0.05, sink.set_result, 42)
        return True

    assert portal.run_direct(send, _answer, BOUND, "get") == 42

    def fail(sink: Any) -> bool:
        portal.loop.call_later(0.05, sink.set_exception, errors.NoNodeError("/x"))
        return True

    with pytest.raises(errors.NoNodeError):
        portal.run_direct(fail, _answer, BOUND, "get")


def test_a_timed_out_call_is_forgotten_and_its_late_answer_ignored(portal: Portal) -> None:
    sinks: list[Any] = []

    def send(sink: Any) -> bool:
        sinks.append(sink)
        return True  # never answered in time

    with pytest.raises(errors.RequestTimeoutError):
        portal.run_direct(send, _answer, 0.1, "get")
    assert wait_until(lambda: sinks and sinks[0].done(), BOUND)
    assert wait_until(lambda: not portal._pending, BOUND)
    # the reply that arrives after the caller gave up changes nothing
    portal.call_soon(lambda: sinks[0].set_result("late"))
    assert portal.run_direct(lambda sink: False, _answer, BOUND, "get") == "from the fallback"


def test_a_call_in_flight_when_the_portal_stops_is_answered(portal: Portal) -> None:
    thread, outcome = call_in_thread(lambda: portal.run_direct(lambda sink: True, _answer, None,
                                                           "get"))
    assert wait_until(lambda: bool(portal._pending), BOUND)
    assert portal.stop(5.0)
    thread.join(BOUND)
    assert isinstance(outcome[0], errors.ClientClosedError), outcome
