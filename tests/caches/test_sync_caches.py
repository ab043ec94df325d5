"""The blocking caches (zkwarden.caches.sync) through zkwarden.Client, real ZooKeeper."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from zkwarden import Client
from zkwarden.caches import NodeAdded, NodeRemoved, NodeUpdated, Resynced
from zkwarden.caches.sync import NodeCache, TreeCache
from zkwarden.errors import ClientClosedError, RequestTimeoutError
from zkwarden.testing import FaultProxy

from .conftest import replay


def wait_for(predicate: Callable[[], object], timeout: float = 5.0, what: str = "it") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not within {timeout}s"
        time.sleep(0.01)


def test_blocking_tree_cache_view_and_callbacks(zk_hosts: str, zk_path: str) -> None:
    root = f"{zk_path}/cfg"
    with Client(zk_hosts, session_timeout=2.0) as writer, \
            Client(zk_hosts, session_timeout=2.0) as reader:
        writer.create(f"{root}/a", b"1", makepath=True)
        tree = TreeCache(reader, root).start(timeout=5)
        assert tree.get(f"{root}/a") is not None and tree.get(f"{root}/a")[0] == b"1"  # type: ignore[index]
        assert tree.children(root) == ["a"] and not tree.stale and tree.loaded
        seen: list[Any] = []
        threads: set[str] = set()
        errors: list[Exception] = []

        def on_change(change: Any) -> None:
            threads.add(threading.current_thread().name)
            seen.append(change)

        handle = tree.subscribe(on_change, on_error=errors.append)
        # One change at a time: changes that reach the cache in one batch are coalesced
        # (b created and deleted in one batch would publish nothing for b).
        writer.create(f"{root}/b", b"2")
        wait_for(lambda: len(seen) >= 2, what="2 callbacks")
        writer.set(f"{root}/a", b"3")
        wait_for(lambda: len(seen) >= 3, what="3 callbacks")
        writer.delete(f"{root}/b")
        wait_for(lambda: len(seen) >= 4, what="4 callbacks")
        assert isinstance(seen[0], Resynced) and sorted(seen[0].nodes) == [root, f"{root}/a"]
        assert [type(c) for c in seen[1:4]] == [NodeAdded, NodeUpdated, NodeRemoved]
        assert {p: d for p, (d, _) in replay(seen).items()} == {root: b"", f"{root}/a": b"3"}
        assert threading.main_thread().name not in threads
        assert tree.nodes().keys() == {root, f"{root}/a"}
        tree.close()
        wait_for(lambda: errors, what="on_error")
        assert isinstance(errors[0], ClientClosedError) and not handle.active


def test_blocking_node_cache_absent_created_deleted(zk_hosts: str, zk_path: str) -> None:
    path = f"{zk_path}/flag"
    with Client(zk_hosts, session_timeout=2.0) as zk:
        with NodeCache(zk, path) as cache:
            assert cache.get() is None
            seen: list[Any] = []
            handle = cache.subscribe(seen.append)
            zk.create(path, b"on", makepath=True)
            wait_for(lambda: cache.get() is not None, what="created")
            zk.delete(path)
            wait_for(lambda: cache.get() is None, what="deleted")
            wait_for(lambda: len(seen) >= 3, what="3 callbacks")
            assert [type(c) for c in seen] == [Resynced, NodeAdded, NodeRemoved]
            assert dict(seen[0].nodes) == {}
            handle.cancel()


def test_slow_callback_gets_one_resynced_instead_of_a_backlog(
    zk_hosts: str, zk_path: str
) -> None:
    root = f"{zk_path}/cfg"
    with Client(zk_hosts, session_timeout=2.0) as zk:
        zk.create(root, b"", makepath=True)
        tree = TreeCache(zk, root).start(timeout=5)
        gate = threading.Event()
        seen: list[Any] = []

        def slow(change: Any) -> None:
            gate.wait(10)
            seen.append(change)

        tree.subscribe(slow, max_queued_callbacks=5)
        with zk.transaction() as t:
            for i in range(40):
                t.create(f"{root}/n{i}", b"")
        wait_for(lambda: len(tree.nodes()) == 41, what="41 nodes")
        time.sleep(0.2)
        gate.set()
        wait_for(lambda: replay(seen).keys() == tree.nodes().keys(), what="caught up")
        assert len(seen) < 1 + 40  # the backlog was replaced, not delivered
        assert any(isinstance(c, Resynced) and len(c.nodes) > 1 for c in seen)
        tree.close()


def test_blocking_start_timeout_then_loads_when_reachable(
    zk_hosts: str, zk_path: str, fault_proxy: FaultProxy
) -> None:
    root = f"{zk_path}/cfg"
    with Client(zk_hosts, session_timeout=2.0) as writer, \
            Client(fault_proxy.connect_string, session_timeout=2.0) as zk:
        writer.create(root, b"r", makepath=True)
        fault_proxy.blackhole()
        wait_for(lambda: zk.state.name != "CONNECTED", what="disconnected")
        tree = TreeCache(zk, root)
        with pytest.raises(RequestTimeoutError):
            tree.start(timeout=0.5)
        assert tree.stale and not tree.loaded
        fault_proxy.pass_through()
        tree.wait_ready(10)
        assert tree.get(root) is not None and not tree.stale
        tree.close()
