"""Callbacks run on dispatcher threads: in order per watch, isolated from each other."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from sync_helpers import wait_until

from zkwarden import Client, ClientState, ClientStateChange, WatchEvent


def test_callbacks_in_order_per_watch(zk: Client, observer: Client, zk_path: str) -> None:
    observer.ensure_path(zk_path)
    seen: list[int] = []
    threads: set[str] = set()
    active = threading.Semaphore(1)
    overlap: list[bool] = []

    def callback(event: WatchEvent) -> None:
        # Never two at once for one watch, and in order.
        overlap.append(not active.acquire(blocking=False))
        threads.add(threading.current_thread().name)
        if event.type.name == "NODE_CREATED":
            seen.append(int(event.path.rsplit("/", 1)[1]))
        time.sleep(0.001)
        active.release()

    zk.add_watch(zk_path, callback)
    for i in range(200):
        observer.create(f"{zk_path}/{i}")
    assert wait_until(lambda: len(seen) == 200, 5.0)
    assert seen == list(range(200))
    assert not any(overlap)
    assert threading.current_thread().name not in threads
    assert all("callbacks" in name for name in threads)


def test_raising_and_blocking_callbacks_do_not_stop_others(
    zk_hosts: str, observer: Client, zk_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A short session: if a blocked callback stalled the loop, pings would stop and the
    # session would be SUSPENDED within the 2 s the callback blocks.
    zk = Client(zk_hosts, session_timeout=1.0)
    states: list[ClientState] = []
    zk.add_listener(lambda change: states.append(change.state))
    zk.start()
    try:
        session = zk.session_id
        for name in ("raiser", "blocker", "normal"):
            observer.create(f"{zk_path}/{name}", b"0", makepath=True)
        raised: list[bytes | None] = []
        blocked: list[bytes | None] = []
        normal: list[tuple[float, bytes | None]] = []
        blocking = threading.Event()

        def raiser(event: WatchEvent) -> None:
            raised.append(event.data)
            raise RuntimeError(f"callback failure {event.data!r}")

        def blocker(event: WatchEvent) -> None:
            blocked.append(event.data)
            if event.data == b"1":
                blocking.set()
                time.sleep(2.0)

        zk.watch(f"{zk_path}/raiser", "data", raiser)
        zk.watch(f"{zk_path}/blocker", "data", blocker)
        zk.watch(f"{zk_path}/normal", "data", lambda ev: normal.append((time.monotonic(),
                                                                         ev.data)))
        with caplog.at_level(logging.ERROR, logger="zkwarden.sync"):
            observer.set(f"{zk_path}/blocker", b"1")
            assert blocking.wait(2.0)
            # While one callback blocks, the others keep receiving their changes.
            for i in range(1, 6):
                t_set = time.monotonic()
                observer.set(f"{zk_path}/raiser", str(i).encode())
                observer.set(f"{zk_path}/normal", str(i).encode())
                assert wait_until(lambda i=i: normal[-1][1] == str(i).encode(), 0.5)
                assert normal[-1][0] - t_set < 0.5
                time.sleep(0.2)
            observer.set(f"{zk_path}/blocker", b"2")
            assert wait_until(lambda: blocked[-1:] == [b"2"], 3.0)
            assert wait_until(lambda: raised[-1:] == [b"5"], 1.0)
        assert raised[0] == b"0" and blocked[:2] == [b"0", b"1"]
        assert sum("callback failure" in r.getMessage() or
                   (r.exc_info is not None and "callback failure" in str(r.exc_info[1]))
                   for r in caplog.records) >= 5
        # The session never dropped while the callback blocked.
        assert zk.session_id == session and zk.state is ClientState.CONNECTED
        assert states == [ClientState.CONNECTED]
    finally:
        zk.close()


def test_callback_may_call_client_and_watch_again(
    zk: Client, observer: Client, zk_path: str
) -> None:
    observer.ensure_path(zk_path)
    copies: list[bytes] = []
    nested: list[WatchEvent] = []

    def mirror(event: WatchEvent) -> None:
        if event.data is None:
            return
        # Blocking reads, writes and a new watch from inside a callback.
        current, _ = zk.get(event.path)
        assert current >= event.data
        zk.set(zk_path, event.data)
        copies.append(event.data)
        if event.data == b"2":
            zk.watch(zk_path, "data", nested.append)

    observer.create(f"{zk_path}/src", b"1")
    zk.watch(f"{zk_path}/src", "data", mirror)
    observer.set(f"{zk_path}/src", b"2")
    assert wait_until(lambda: copies == [b"1", b"2"] and nested, 2.0), (copies, nested)
    assert observer.get(zk_path)[0] == b"2"
    assert nested[0].data == b"2"


def test_cancel_from_inside_callback(zk: Client, observer: Client, zk_path: str) -> None:
    observer.create(zk_path, b"0")
    calls: list[bytes | None] = []
    handles = []

    def once(event: WatchEvent) -> None:
        calls.append(event.data)
        if event.data == b"1":
            handles[0].cancel()

    handles.append(zk.watch(zk_path, "data", once))
    observer.set(zk_path, b"1")
    assert wait_until(lambda: calls == [b"0", b"1"], 2.0)
    observer.set(zk_path, b"2")
    time.sleep(0.3)
    assert calls == [b"0", b"1"]


def test_listener_raising_is_logged_and_others_still_called(
    zk_hosts: str, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[ClientState] = []

    def bad(change: ClientStateChange) -> None:
        raise ValueError("listener failure")

    client = Client(zk_hosts)
    client.add_listener(bad)
    client.add_listener(lambda change: got.append(change.state))
    with caplog.at_level(logging.ERROR, logger="zkwarden.sync"):
        client.start()
        client.close()
    assert got == [ClientState.CONNECTED, ClientState.CLOSED]
    assert sum(r.exc_info is not None and "listener failure" in str(r.exc_info[1])
               for r in caplog.records) == 2
