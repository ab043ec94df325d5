"""close() from inside callbacks (DESIGN rule 4), and nothing left behind."""

from __future__ import annotations

import threading
import time

import pytest
from sync_helpers import no_new_threads, wait_until, zk_threads

from zkwarden import Client, ClientState, ClientStateChange, WatchEvent, errors
from zkwarden.testing import ZooKeeperServer


def _baseline(zk_server: ZooKeeperServer) -> tuple[int, set[threading.Thread]]:
    return zk_server.alive_connections(), set(zk_threads())


def test_close_from_watch_callback(
    zk_server: ZooKeeperServer, zk_hosts: str, zk_path: str, observer: Client
) -> None:
    observer.ensure_path(zk_path)
    connections, before = _baseline(zk_server)
    client = Client(zk_hosts, session_timeout=4.0)
    client.start()
    assert zk_server.alive_connections() == connections + 1
    node = client.create(f"{zk_path}/eph", b"", ephemeral=True)
    result: dict[str, object] = {}
    done = threading.Event()

    def callback(event: WatchEvent) -> None:
        if event.data != b"close":
            return
        t0 = time.monotonic()
        try:
            client.close()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            result["error"] = exc
        result["took"] = time.monotonic() - t0
        result["thread"] = threading.current_thread().name
        done.set()

    client.watch(node, "data", callback)
    client.set(node, b"close")
    assert done.wait(5.0)
    assert "error" not in result
    assert result["took"] < 1.0  # type: ignore[operator]
    assert "callbacks" in str(result["thread"])  # ran on the dispatcher, not the loop
    closed_at = time.monotonic()
    assert wait_until(lambda: observer.exists(node) is None, 1.0)
    assert time.monotonic() - closed_at < 1.0
    assert wait_until(lambda: zk_server.alive_connections() == connections, 1.0)
    assert client.state is ClientState.CLOSED
    assert no_new_threads(before), zk_threads()


def test_close_from_state_listener(
    zk_server: ZooKeeperServer, zk_hosts: str, zk_path: str, observer: Client
) -> None:
    observer.ensure_path(zk_path)
    connections, before = _baseline(zk_server)
    client = Client(zk_hosts, session_timeout=4.0)
    result: dict[str, object] = {}
    done = threading.Event()

    def listener(change: ClientStateChange) -> None:
        if change.state is not ClientState.CONNECTED:
            return
        # A blocking call from a listener, then close from it.
        result["node"] = client.create(f"{zk_path}/eph", ephemeral=True)
        t0 = time.monotonic()
        client.close()
        result["took"] = time.monotonic() - t0
        done.set()

    client.add_listener(listener)
    client.start()
    assert done.wait(5.0)
    assert result["took"] < 1.0  # type: ignore[operator]
    assert wait_until(lambda: observer.exists(str(result["node"])) is None, 1.0)
    assert wait_until(lambda: zk_server.alive_connections() == connections, 1.0)
    assert no_new_threads(before), zk_threads()


def test_close_from_callback_while_other_threads_call(
    zk_hosts: str, zk_path: str
) -> None:
    # Calls blocked in other threads fail with ClientClosedError; nobody hangs.
    before = set(zk_threads())
    client = Client(zk_hosts, session_timeout=4.0)
    client.start()
    client.ensure_path(zk_path)
    stop = threading.Event()
    outcomes: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                client.get(zk_path)
            except errors.ClientClosedError:
                outcomes.append("closed")
                return
        outcomes.append("stopped")

    readers = [threading.Thread(target=reader) for _ in range(8)]
    for t in readers:
        t.start()
    closed = threading.Event()

    def callback(event: WatchEvent) -> None:
        if event.stat is not None and event.stat.version > 0:
            client.close()
            closed.set()

    client.watch(zk_path, "data", callback)
    client.set(zk_path, b"x")
    assert closed.wait(5.0)
    for t in readers:
        t.join(5.0)
    stop.set()
    assert outcomes == ["closed"] * 8
    assert no_new_threads(before)


def test_thousand_close_from_callback_cycles(
    zk_server: ZooKeeperServer, zk_hosts: str, zk_path: str, observer: Client
) -> None:
    observer.ensure_path(zk_path)
    connections, before = _baseline(zk_server)
    threads = threading.active_count()
    sessions = zk_server.sessions()
    t0 = time.monotonic()
    for i in range(1000):
        client = Client(zk_hosts, session_timeout=4.0)
        client.start()
        node = client.create(f"{zk_path}/n{i}", ephemeral=True)
        done = threading.Event()

        def callback(event: WatchEvent, client: Client = client, done: threading.Event = done
                     ) -> None:
            client.close()
            done.set()

        client.watch(node, "data", callback)
        assert done.wait(5.0), f"cycle {i}: close from the callback did not return"
    elapsed = time.monotonic() - t0
    print(f"1000 cycles in {elapsed:.1f}s ({elapsed:.1f} ms/cycle)")
    assert observer.get_children(zk_path) == []
    assert wait_until(lambda: threading.active_count() == threads, 2.0), threading.enumerate()
    assert no_new_threads(before)
    assert wait_until(lambda: zk_server.alive_connections() == connections, 2.0)
    assert wait_until(lambda: zk_server.sessions() <= sessions, 2.0), (
        zk_server.sessions() - sessions)
    assert elapsed < 60.0


@pytest.mark.parametrize("where", ["main", "callback"])
def test_close_returns_while_a_callback_blocks(zk_hosts: str, zk_path: str, where: str) -> None:
    # A callback stuck forever must not make close() hang (it is bounded) nor keep the
    # session open.
    before = set(zk_threads())
    client = Client(zk_hosts, session_timeout=4.0)
    client.start()
    stuck = threading.Event()
    release = threading.Event()
    client.ensure_path(zk_path)

    def blocker(event: WatchEvent) -> None:
        stuck.set()
        release.wait(30)

    client.watch(zk_path, "exists", blocker)
    assert stuck.wait(2.0)
    t0 = time.monotonic()
    if where == "main":
        client.close(timeout=1.0)
    else:
        finished = threading.Event()
        client.add_watch(zk_path, lambda ev: (client.close(), finished.set()))
        assert finished.wait(5.0)
    assert time.monotonic() - t0 < 2.0
    assert client.state is ClientState.CLOSED
    release.set()
    assert no_new_threads(before)
