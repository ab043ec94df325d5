"""Issue 11, defect 10: watch callbacks cannot starve state listeners.

With every callback thread (``max_callback_threads``) held by a blocked watch callback, a
session expiry must still reach the state listeners as LOST, promptly.
"""

from __future__ import annotations

import threading
import time

from zkwarden import Client, ClientState, ClientStateChange, WatchEvent
from zkwarden.testing.expire import expire_session

THREADS = 2


def test_lost_reaches_listeners_while_every_callback_thread_is_blocked(
    zk_hosts: str, observer: Client, zk_path: str
) -> None:
    zk = Client(zk_hosts, session_timeout=2.0, max_callback_threads=THREADS)
    lost = threading.Event()
    changes: list[tuple[float, ClientStateChange]] = []

    def listener(change: ClientStateChange) -> None:
        changes.append((time.monotonic(), change))
        if change.state is ClientState.LOST:
            lost.set()

    zk.add_listener(listener)
    zk.start()
    gate = threading.Event()
    blocked = threading.Semaphore(0)

    def blocker(event: WatchEvent) -> None:
        if event.data == b"1":
            blocked.release()
            gate.wait(30.0)  # bounded: a broken test must not hang the run

    try:
        paths = [f"{zk_path}/{i}" for i in range(THREADS)]
        for path in paths:
            observer.create(path, b"0", makepath=True)
            zk.watch(path, "data", blocker)
        for path in paths:
            observer.set(path, b"1")
        for _ in paths:
            assert blocked.acquire(timeout=5.0), "the watch callbacks never blocked"
        # Every callback thread is now held by a blocked callback.
        t0 = time.monotonic()
        expire_session(zk)
        assert lost.wait(5.0), [c.state for _, c in changes]
        lost_at = next(t for t, c in changes if c.state is ClientState.LOST)
        assert lost_at - t0 < 5.0
        assert not gate.is_set()
    finally:
        gate.set()
        zk.close()
