"""Issue 11, defect 7 (facade half): a busy callback does not make its watch queue grow.

One-shot watch handles coalesce to the newest event (it carries the latest state); a
persistent handle keeps at most ``max_queued_events`` and past that delivers one event of
type NONE instead (re-read). Both against a real server.
"""

from __future__ import annotations

import threading
import time

from sync_helpers import wait_until

from zkwarden import Client, EventType, WatchEvent

SETS = 400


def _pending(handle: object) -> int:
    # WatchHandle.pending is new with this fix; on older code report "unbounded" so the
    # assertions below, not an AttributeError, say what is wrong.
    return int(getattr(handle, "pending", 10**9))


def test_blocked_data_watch_callback_coalesces_to_the_latest_state(
    zk: Client, observer: Client, zk_path: str
) -> None:
    observer.create(zk_path, b"0")
    seen: list[bytes | None] = []
    blocked = threading.Event()
    gate = threading.Event()

    def callback(event: WatchEvent) -> None:
        seen.append(event.data)
        if event.data == b"1":
            blocked.set()
            gate.wait(30.0)  # bounded: a broken test must not hang the run

    handle = zk.watch(zk_path, "data", callback)
    try:
        observer.set(zk_path, b"1")
        assert blocked.wait(5.0)
        most_pending = 0
        for i in range(2, SETS + 2):
            observer.set(zk_path, str(i).encode())
            most_pending = max(most_pending, _pending(handle))
        final = str(SETS + 1).encode()
        # Let the stream settle on the last value while the callback is still blocked.
        time.sleep(1.0)
        most_pending = max(most_pending, _pending(handle))
        calls_before = len(seen)
    finally:
        gate.set()
    assert wait_until(lambda: seen[-1:] == [final], 5.0), seen[-5:]
    time.sleep(0.3)  # nothing else may trickle in
    # Old code: every one of the ~400 events waited behind the blocked call, data and all,
    # and ran once it was released.
    assert len(seen) - calls_before <= 2, len(seen) - calls_before
    assert most_pending <= 1
    assert seen[-1] == final


def test_persistent_watch_queue_is_bounded_and_overflow_says_reread(
    zk_hosts: str, observer: Client, zk_path: str
) -> None:
    limit = 50
    zk = Client(zk_hosts, session_timeout=4.0, max_queued_events=limit)
    zk.start()
    try:
        observer.ensure_path(zk_path)
        seen: list[WatchEvent] = []
        blocked = threading.Event()
        gate = threading.Event()

        def callback(event: WatchEvent) -> None:
            seen.append(event)
            if event.type is EventType.NODE_CREATED and not blocked.is_set():
                blocked.set()
                gate.wait(30.0)

        handle = zk.add_watch(zk_path, callback)
        try:
            observer.create(f"{zk_path}/first")
            assert blocked.wait(5.0)
            most_pending = 0
            for i in range(4 * limit):
                observer.create(f"{zk_path}/{i}")
                most_pending = max(most_pending, _pending(handle))
            time.sleep(0.5)
            most_pending = max(most_pending, _pending(handle))
            calls_before = len(seen)
        finally:
            gate.set()
        assert most_pending <= limit
        assert handle.overflows >= 1
        # After the overflow: one NONE (re-read) first, then only events after it.
        assert wait_until(lambda: any(e.type is EventType.NONE for e in seen[calls_before:]),
                          5.0)
        after = seen[calls_before:]
        assert after[0].type is EventType.NONE and after[0].path == zk_path
        assert len(after) <= limit
        # The watch goes on working normally after the overflow.
        observer.create(f"{zk_path}/later")
        assert wait_until(lambda: seen[-1].path == f"{zk_path}/later", 5.0)
        assert handle.active
    finally:
        zk.close()
