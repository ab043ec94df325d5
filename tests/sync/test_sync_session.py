"""Session expiry through the facade: listeners see LOST then a new session, and a watch
that re-subscribes from on_error (as docs/kazoo-migration.md shows) keeps working."""

from __future__ import annotations

import threading

from sync_helpers import wait_until

from zkwarden import Client, ClientState, ClientStateChange, WatchEvent, errors
from zkwarden.testing.expire import expire_session


def test_resubscribe_after_session_expiry(zk_hosts: str, zk_path: str, observer: Client
                                          ) -> None:
    zk = Client(zk_hosts, session_timeout=2.0)
    changes: list[ClientStateChange] = []
    zk.add_listener(changes.append)
    zk.start()
    try:
        observer.create(zk_path, b"0")
        seen: list[bytes | None] = []
        ends: list[Exception] = []
        resubscribed = threading.Event()

        def on_change(event: WatchEvent) -> None:
            seen.append(event.data)

        def on_end(exc: Exception) -> None:
            ends.append(exc)
            if isinstance(exc, errors.SessionExpiredError):
                # Blocks this watch's callback thread until the new session is up.
                zk.watch(zk_path, "data", on_change, on_error=on_end)
                resubscribed.set()

        zk.watch(zk_path, "data", on_change, on_error=on_end)
        old_session = zk.session_id
        expire_session(zk)
        observer.set(zk_path, b"1")  # while the session is gone
        assert resubscribed.wait(10.0)
        assert isinstance(ends[0], errors.SessionExpiredError)
        assert zk.session_id not in (None, old_session)
        # The new subscription starts with the current state (the change made meanwhile).
        assert wait_until(lambda: seen[-1:] == [b"1"], 2.0), seen
        observer.set(zk_path, b"2")
        assert wait_until(lambda: seen[-1:] == [b"2"], 2.0), seen
        states = [c.state for c in changes]
        assert ClientState.LOST in states
        last_connected = [c for c in changes if c.state is ClientState.CONNECTED][-1]
        assert last_connected.new_session and last_connected.session_id == zk.session_id
    finally:
        zk.close()
