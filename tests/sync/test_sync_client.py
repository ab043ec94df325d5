"""The blocking facade: operations, lifecycle, transactions, listeners."""

from __future__ import annotations

import threading
import time

import pytest
from sync_helpers import wait_until, zk_threads

from zkwarden import Client, ClientState, ClientStateChange, EventType, WatchEvent, errors
from zkwarden.testing import ZooKeeperServer


def test_operations(zk: Client, zk_path: str) -> None:
    path = zk.create(f"{zk_path}/a", b"v1", makepath=True)
    assert path == f"{zk_path}/a"
    data, stat = zk.get(path)
    assert data == b"v1" and stat.version == 0
    assert zk.set(path, b"v2", version=0).version == 1
    assert zk.exists(path) is not None
    assert zk.exists(f"{zk_path}/missing") is None
    zk.create(f"{path}/c1")
    children, pstat = zk.get_children(path, include_stat=True)
    assert children == ["c1"] and pstat.num_children == 1
    eph = zk.create(f"{zk_path}/e", ephemeral=True)
    assert zk.get_ephemerals(zk_path) == [eph]
    assert zk.get_all_children_number(zk_path) == 3
    results = zk.get_many([path, f"{zk_path}/missing"])
    assert results[0][0] == b"v2"  # type: ignore[index]
    assert isinstance(results[1], errors.NoNodeError)
    assert zk.sync(path) == path
    acls, _ = zk.get_acl(path)
    assert acls
    with pytest.raises(errors.NoNodeError):
        zk.get(f"{zk_path}/missing")
    with pytest.raises(errors.InvalidPathError):
        zk.get("relative")
    with pytest.raises(errors.NotEmptyError):
        zk.delete(path)
    zk.delete(zk_path, recursive=True)
    assert zk.exists(zk_path) is None


def test_transaction(zk: Client, zk_path: str) -> None:
    zk.ensure_path(zk_path)
    with zk.transaction() as t:
        t.create(f"{zk_path}/x", b"x").set(zk_path, b"p").check(zk_path, 1)
    assert t.committed and t.results is not None
    assert t.results[0] == f"{zk_path}/x" and t.results[2] is True
    with pytest.raises(errors.TransactionError) as failure:
        with zk.transaction() as t2:
            t2.create(f"{zk_path}/y")
            t2.check(zk_path, 99)
    assert failure.value.failed_index == 1
    assert zk.exists(f"{zk_path}/y") is None
    # No commit when the block raises.
    with pytest.raises(RuntimeError):
        with zk.transaction() as t3:
            t3.create(f"{zk_path}/z")
            raise RuntimeError("abort")
    assert not t3.committed and zk.exists(f"{zk_path}/z") is None
    t4 = zk.transaction().create(f"{zk_path}/w")
    assert t4.commit() == [f"{zk_path}/w"]


def test_context_manager_and_states(zk_hosts: str, zk_path: str) -> None:
    changes: list[ClientStateChange] = []
    client = Client(zk_hosts, session_timeout=2.0)
    client.add_listener(changes.append)
    client.add_listener(changes.append)  # the same function twice: once
    assert client.state is ClientState.CONNECTING and not client.connected
    with client as zk:
        assert zk.connected and zk.session_id and zk.negotiated_timeout
        zk.create(zk_path, b"")
    assert client.state is ClientState.CLOSED and client.closed
    assert [c.state for c in changes] == [ClientState.CONNECTED, ClientState.CLOSED]
    assert changes[0].new_session
    with pytest.raises(errors.ClientClosedError):
        client.get(zk_path)
    with pytest.raises(errors.ClientClosedError):
        client.start()
    client.close()  # idempotent
    assert not zk_threads()


def test_not_started(zk_hosts: str) -> None:
    client = Client(zk_hosts)
    with pytest.raises(errors.ClientClosedError, match="start"):
        client.get("/")
    client.close()
    assert not zk_threads()


def test_bad_config() -> None:
    with pytest.raises(errors.ConfigurationError):
        Client("")
    with pytest.raises(errors.InvalidArgumentError):
        Client("127.0.0.1:2181", max_callback_threads=0)


def test_watch_validation(zk: Client, zk_path: str) -> None:
    with pytest.raises(errors.InvalidArgumentError):
        zk.watch(zk_path, "nonsense", lambda ev: None)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgumentError):
        zk.watch(zk_path, "data")
    with pytest.raises(errors.InvalidPathError):
        zk.watch("bad", "data", lambda ev: None)
    with pytest.raises(errors.InvalidPathError):
        zk.add_watch("bad/", lambda ev: None)


def test_watch_streams(zk: Client, observer: Client, zk_path: str) -> None:
    data_events: list[WatchEvent] = []
    child_events: list[WatchEvent] = []
    rec_events: list[WatchEvent] = []
    zk.ensure_path(zk_path)
    node = f"{zk_path}/n"
    h_data = zk.watch(node, "data", data_events.append)
    h_children = zk.watch(zk_path, "children", child_events.append)
    # Its own subtree: a 3.8 server does not fire a one-shot watch on a path that also has
    # a persistent one from the same session (ZOOKEEPER-4466, fixed in 3.9).
    rec_node = zk.create(f"{zk_path}-rec", b"")
    h_rec = zk.add_watch(rec_node, rec_events.append)
    # Armed on return: the first event (current state) is already queued.
    assert wait_until(lambda: data_events and child_events and rec_events, 2.0)
    assert data_events[0].type is EventType.NONE and not data_events[0].exists
    assert child_events[0].children == ()
    observer.create(node, b"1")
    observer.set(node, b"2")
    observer.create(f"{rec_node}/r", b"")
    observer.set(f"{rec_node}/r", b"1")
    assert wait_until(lambda: data_events and data_events[-1].data == b"2", 2.0)
    assert wait_until(lambda: child_events[-1].children == ("n",), 2.0)
    assert wait_until(lambda: len(rec_events) >= 3, 2.0)
    assert [e.type for e in rec_events[:3]] == [
        EventType.NONE, EventType.NODE_CREATED, EventType.NODE_DATA_CHANGED]
    for h in (h_data, h_children, h_rec):
        assert h.active
        h.cancel()
        h.cancel()
        assert h.cancelled and not h.active
    seen = (len(data_events), len(child_events), len(rec_events))
    observer.set(node, b"3")
    observer.create(f"{node}2")
    observer.set(f"{rec_node}/r", b"2")
    time.sleep(0.3)
    assert (len(data_events), len(child_events), len(rec_events)) == seen
    observer.delete(rec_node, recursive=True)


def test_watch_ends_with_on_error_on_close(zk_hosts: str, zk_path: str) -> None:
    ended: list[Exception] = []
    client = Client(zk_hosts, session_timeout=2.0)
    client.start()
    handle = client.watch(zk_path, "exists", lambda ev: None, on_error=ended.append)
    client.close()
    # close() from a non-callback thread waits for the callbacks it queued.
    assert len(ended) == 1 and isinstance(ended[0], errors.ClientClosedError)
    assert isinstance(handle.error, errors.ClientClosedError) and not handle.active


def test_listener_remove(zk_hosts: str) -> None:
    seen: list[ClientState] = []

    def listener(change: ClientStateChange) -> None:
        seen.append(change.state)

    client = Client(zk_hosts)
    client.add_listener(listener)
    client.remove_listener(listener)
    client.remove_listener(listener)  # no-op
    client.start()
    client.close()
    assert seen == []


def test_blocking_call_on_loop_thread_is_refused(zk: Client, zk_path: str) -> None:
    async def misuse() -> str:
        try:
            zk.get(zk_path)
        except errors.ClientError as exc:
            return type(exc).__name__
        return "no error"

    assert zk.run_coroutine(misuse()) == "ClientError"

    async def via_async() -> bool:
        return await zk.async_client.exists(zk_path) is None

    assert zk.run_coroutine(via_async(), timeout=5)


def test_close_from_loop_thread(zk_hosts: str, zk_path: str, observer: Client) -> None:
    client = Client(zk_hosts, session_timeout=2.0)
    client.start()
    observer.ensure_path(zk_path)
    node = client.create(f"{zk_path}/e", ephemeral=True)

    async def close_here() -> None:
        client.close()  # must neither block the loop nor raise

    client.run_coroutine(close_here(), timeout=2.0)
    assert wait_until(lambda: client.state is ClientState.CLOSED, 2.0)
    assert wait_until(lambda: observer.exists(node) is None, 2.0)
    assert wait_until(lambda: not [t for t in zk_threads()
                                   if t.name.startswith(client._name + "-")], 2.0)


def test_concurrent_close_from_many_threads(zk_hosts: str) -> None:
    client = Client(zk_hosts, session_timeout=2.0)
    client.start()
    barrier = threading.Barrier(8)
    durations: list[float] = []

    def closer() -> None:
        barrier.wait()
        t0 = time.monotonic()
        client.close()
        durations.append(time.monotonic() - t0)

    threads = [threading.Thread(target=closer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(durations) == 8 and max(durations) < 2.0
    assert client.state is ClientState.CLOSED
    assert wait_until(lambda: not zk_threads(), 2.0)


def test_start_timeout(zk_hosts: str) -> None:
    # A port nothing listens on: start gives up with a TimeoutError and cleans up.
    from zkwarden.testing import free_port

    client = Client(f"127.0.0.1:{free_port()}", session_timeout=1.0, connect_timeout=0.2)
    t0 = time.monotonic()
    with pytest.raises(errors.RequestTimeoutError):
        client.start(timeout=0.5)
    assert time.monotonic() - t0 < 3.0
    assert client.closed
    assert wait_until(lambda: not zk_threads(), 2.0)


def test_chroot(zk_server: ZooKeeperServer, zk_path: str, observer: Client) -> None:
    observer.ensure_path(zk_path)
    with Client(zk_server.connect_string + zk_path) as zk:
        assert zk.chroot == zk_path
        zk.create("/inside", b"1")
    assert observer.get(f"{zk_path}/inside")[0] == b"1"


def test_auth_failure_at_start_cleans_up(zk_hosts: str) -> None:
    client = Client(zk_hosts, auth=[("nosuchscheme", "x")])
    with pytest.raises(errors.AuthFailedError):
        client.start(timeout=5.0)
    assert wait_until(lambda: not zk_threads(), 3.0), zk_threads()
    with pytest.raises(errors.ClientClosedError):
        client.get("/")
