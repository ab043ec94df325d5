"""Per-call timeouts raise errors.RequestTimeoutError (a builtin TimeoutError)."""

from __future__ import annotations

import time

import pytest
from sync_helpers import wait_until

from zkwarden import Client, ClientState, errors
from zkwarden.testing import FaultProxy


def test_tiny_timeout(zk: Client, zk_path: str) -> None:
    zk.create(zk_path, b"x")
    # A reply that is there when the caller gets the CPU back is still returned, so on a
    # busy machine some tries succeed; the first timeout ends the loop.
    caught: errors.RequestTimeoutError | None = None
    for _ in range(200):
        try:
            zk.get(zk_path, timeout=0.0001)
        except errors.RequestTimeoutError as exc:
            caught = exc
            break
    assert caught is not None
    assert isinstance(caught, TimeoutError) and isinstance(caught, errors.ConnectionLossError)
    # The client goes on working.
    assert zk.get(zk_path, timeout=5.0)[0] == b"x"


def test_timeout_against_a_silent_server(fault_proxy: FaultProxy, zk_path: str) -> None:
    # track_ensemble=False: the tracker's own watch would be counted below
    zk = Client(fault_proxy.connect_string, session_timeout=4.0, track_ensemble=False)
    zk.start()
    try:
        zk.create(zk_path, b"x")
        for call in (lambda: zk.get(zk_path, timeout=0.3),
                     lambda: zk.set(zk_path, b"y", timeout=0.3),
                     lambda: zk.watch(zk_path, "data", print, timeout=0.3),
                     lambda: zk.transaction().create(f"{zk_path}/t").commit(timeout=0.3)):
            # One silence per call: the four together would outlast the read timeout (1.3 s
            # with the shared server's 2 s sessions), and a dropped connection is another test.
            assert wait_until(lambda: zk.state is ClientState.CONNECTED, 5.0)
            fault_proxy.blackhole()
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                call()
            assert 0.25 < time.monotonic() - t0 < 1.0
            # A watch that timed out while arming leaves nothing subscribed (the loop
            # thread cancels it a moment after the caller gave up).
            assert wait_until(lambda: len(zk.async_client._subs.subscribers) == 0, 2.0)
            fault_proxy.pass_through()
        assert wait_until(lambda: zk.state is ClientState.CONNECTED, 5.0)
        assert zk.get(zk_path, timeout=5.0)[0] in (b"x", b"y")
        # nor does the arming read's reply, arriving after the call gave up
        time.sleep(0.2)
        assert len(zk.async_client._subs.subscribers) == 0
    finally:
        t0 = time.monotonic()
        zk.close()
        assert time.monotonic() - t0 < 5.0


def test_close_is_bounded_when_the_server_is_silent(fault_proxy: FaultProxy) -> None:
    zk = Client(fault_proxy.connect_string, session_timeout=4.0)
    zk.start()
    fault_proxy.blackhole()
    t0 = time.monotonic()
    zk.close(timeout=1.0)
    assert time.monotonic() - t0 < 1.5
    assert zk.closed
