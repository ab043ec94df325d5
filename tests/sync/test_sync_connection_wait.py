"""Issue 11, defect 9: blocking calls wait for a connection within a bound by default.

``watch()``/``add_watch()`` used to retry ConnectionLoss without end while no server was
reachable (``get()`` failed after the read timeout). Now every call with the default
timeout gives up with ConnectionLossError; ``timeout=FOREVER`` waits as long as it takes.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sync_helpers import call_in_thread, wait_until

from zkwarden import Client, ClientState, errors
from zkwarden.testing import FaultProxy

SESSION = 2.0
# The default connection wait is the session timeout (arming after a connection came back
# gets one more plus a read timeout). Plus scheduling slack on a loaded machine.
BOUND = SESSION + 3.0
# Longer than any default bound: a call still blocked by then is blocked for good.
HANG = 15.0
# Spelled out rather than imported, so this module also runs against code without it.
FOREVER = math.inf


@pytest.fixture
def cut_off(fault_proxy: FaultProxy, zk_path: str) -> Iterator[Client]:
    """A started Client whose server then becomes unreachable (refused, connections reset)
    for longer than its session: LOST is reported and it keeps trying for a new session
    (the case where the old code's arming loop retried without end)."""
    zk = Client(fault_proxy.connect_string, session_timeout=SESSION)
    lost = threading.Event()
    zk.add_listener(lambda change: change.state is ClientState.LOST and lost.set())
    zk.start()
    try:
        zk.create(zk_path, b"x")
        fault_proxy.refuse_connections()
        fault_proxy.reset()
        assert lost.wait(3 * SESSION)
        yield zk
    finally:
        t0 = time.monotonic()
        zk.close()
        assert time.monotonic() - t0 < 6.0


@pytest.mark.parametrize("call", ["watch", "add_watch", "get"])
def test_default_timeout_gives_up_while_no_server_is_reachable(
    cut_off: Client, zk_path: str, call: str
) -> None:
    calls: dict[str, Callable[[], object]] = {
        "watch": lambda: cut_off.watch(zk_path, "data", lambda event: None),
        "add_watch": lambda: cut_off.add_watch(zk_path, lambda event: None),
        "get": lambda: cut_off.get(zk_path),
    }
    t0 = time.monotonic()
    thread, outcome = call_in_thread(calls[call])
    thread.join(HANG)
    elapsed = time.monotonic() - t0
    assert not thread.is_alive(), f"{call}() still blocked after {HANG}s without a server"
    assert len(outcome) == 1 and isinstance(outcome[0], errors.ConnectionLossError), outcome
    assert elapsed < BOUND, elapsed


def test_forever_waits_past_the_default_bound(
    fault_proxy: FaultProxy, cut_off: Client, observer: Client, zk_path: str
) -> None:
    seen: list[bytes | None] = []
    thread, outcome = call_in_thread(
        lambda: cut_off.watch(zk_path, "data", lambda event: seen.append(event.data),
                              timeout=FOREVER))
    thread.join(BOUND + 1.0)
    assert thread.is_alive() and not outcome, outcome
    fault_proxy.pass_through()
    thread.join(15.0)
    assert not thread.is_alive()
    assert len(outcome) == 1 and getattr(outcome[0], "active", False), outcome
    # Armed on the session it got once the server was back: it sees changes.
    observer.set(zk_path, b"after")
    assert wait_until(lambda: seen[-1:] == [b"after"], 5.0), seen


def test_forever_wait_still_ends_on_close(cut_off: Client, zk_path: str) -> None:
    thread, outcome = call_in_thread(
        lambda: cut_off.add_watch(zk_path, lambda event: None, timeout=FOREVER))
    thread.join(BOUND + 1.0)
    assert thread.is_alive() and not outcome, outcome
    cut_off.close()
    thread.join(6.0)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], errors.ClientClosedError), outcome


def test_forever_get_rides_out_an_outage(fault_proxy: FaultProxy, zk_path: str) -> None:
    # A short connection wait.
    zk = Client(fault_proxy.connect_string, session_timeout=SESSION, request_timeout=0.5)
    zk.start()
    try:
        zk.create(zk_path, b"x")
        fault_proxy.refuse_connections()
        fault_proxy.reset()
        assert wait_until(lambda: zk.state is not ClientState.CONNECTED, 5.0)
        t0 = time.monotonic()
        with pytest.raises(errors.ConnectionLossError):
            zk.get(zk_path)
        assert time.monotonic() - t0 < 0.5 + 2.0
        thread, outcome = call_in_thread(lambda: zk.get(zk_path, timeout=FOREVER))
        time.sleep(1.5)  # three times the default wait (the session may expire meanwhile)
        assert thread.is_alive() and not outcome, outcome
        fault_proxy.pass_through()
        thread.join(10.0)
        assert not thread.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], tuple), outcome
        assert outcome[0][0] == b"x"
    finally:
        zk.close()
