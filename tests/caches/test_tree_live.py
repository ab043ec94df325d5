"""TreeCache and NodeCache against a real ZooKeeper."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from zkwarden import AsyncClient
from zkwarden.caches import NodeAdded, NodeCache, NodeRemoved, NodeUpdated, Resynced, TreeCache
from zkwarden.errors import ClientClosedError, ConfigurationError
from zkwarden.sync import Client
from zkwarden.testing import FaultProxy
from zkwarden.types import WatcherType

from .conftest import data_of, replay, truth, until

pytestmark = pytest.mark.asyncio


def _key(view: Any) -> dict[str, tuple[bytes, int, int]]:
    """What a view must agree on: data, and which incarnation and version of each node."""
    return {p: (d, s.czxid, s.mzxid) for p, (d, s) in view.items()}


async def _commit_as_one_batch(hosts: str, build: Callable[[Any], object]) -> None:
    """Commit one transaction from another thread while this loop is held, so that a
    cache's client finds all its events waiting at once: one batch."""
    blocking = Client(hosts)
    await asyncio.to_thread(blocking.start, 5)
    try:
        with blocking.transaction() as t:
            build(t)
        time.sleep(0.2)  # noqa: ASYNC251 (held on purpose: the events queue up meanwhile)
    finally:
        await asyncio.to_thread(blocking.close)


async def next_change(stream: Any, timeout: float = 5.0) -> Any:
    return await asyncio.wait_for(stream.__anext__(), timeout)


async def test_view_follows_creates_sets_deletes_with_one_read_per_change(mode: Any,
    make_client: Any, zk_path: str
) -> None:
    writer, reader = await make_client(), await make_client()
    root = f"{zk_path}/config"
    await writer.create(f"{root}/db/url", b"pg://a", makepath=True)
    tree = await TreeCache(reader, root, watch_mode=mode).start(timeout=5)
    assert not tree.stale
    assert data_of(tree.nodes()) == {root: b"", f"{root}/db": b"", f"{root}/db/url": b"pg://a"}
    assert tree.children(root) == ["db"] and tree.children(f"{root}/db") == ["url"]
    seen: list[Any] = []

    async def follow() -> None:
        async for change in tree.changes():
            seen.append(change)

    follower = asyncio.create_task(follow())
    reads = tree.reads
    await writer.create(f"{root}/db/user", b"admin")
    await writer.set(f"{root}/db/url", b"pg://b")
    await writer.create(f"{root}/cache", b"on")
    # The cache has the node before it goes: a creation and deletion that reach it together
    # are coalesced by design (nothing published for the node; seen under CI load).
    await until(lambda: tree.get(f"{root}/db/user") is not None)
    await writer.delete(f"{root}/db/user")
    await until(lambda: tree.get(f"{root}/cache") is not None
                and tree.get(f"{root}/db/user") is None
                and tree.get(f"{root}/db/url") == (b"pg://b", tree.get(f"{root}/db/url")[1]))
    expected = await truth(writer, root)
    assert data_of(tree.nodes()) == data_of(expected)
    for path, (_, stat) in expected.items():
        held = tree.get(path)
        assert held is not None and held[1].czxid == stat.czxid and held[1].mzxid == stat.mzxid
    # 2 creates + 1 set read once each; the delete costs nothing with a persistent
    # watch, and at most the read that re-arms its one-shot watch otherwise.
    assert tree.reads - reads <= (3 if mode == "persistent" else 4)
    await until(lambda: data_of(replay(seen)) == data_of(expected))
    kinds = [type(c).__name__ for c in seen]
    assert kinds[0] == "Resynced" and "NodeUpdated" in kinds and "NodeRemoved" in kinds
    assert tree.children(f"{root}/db") == ["url"]
    await tree.close()
    with pytest.raises(ClientClosedError):
        await asyncio.wait_for(follower, 5)


async def test_new_subscriber_gets_current_view_first(mode: Any, make_client: Any, zk_path: str) -> None:
    writer, reader = await make_client(), await make_client()
    root = f"{zk_path}/cfg"
    for i in range(5):
        await writer.create(f"{root}/k{i}", str(i).encode(), makepath=True)
    tree = await TreeCache(reader, root, watch_mode=mode).start(timeout=5)
    streams = [tree.changes() for _ in range(50)]
    firsts = await asyncio.gather(*(next_change(s) for s in streams))
    for first in firsts:
        assert isinstance(first, Resynced) and not first.stale
        assert sorted(first.nodes) == sorted([root] + [f"{root}/k{i}" for i in range(5)])
    await writer.set(f"{root}/k3", b"three")
    nexts = await asyncio.gather(*(next_change(s) for s in streams))
    assert all(isinstance(n, NodeUpdated) and n.path == f"{root}/k3" and n.data == b"three"
               and n.old_data == b"3" for n in nexts)
    # A late subscriber starts from the view as it is now.
    late = await next_change(tree.changes())
    assert isinstance(late, Resynced) and late.nodes[f"{root}/k3"][0] == b"three"
    await tree.close()


async def test_deleted_and_recreated_during_outage_is_removed_then_added(mode: Any,
    make_client: Any, fault_proxy: FaultProxy, zk_path: str
) -> None:
    writer = await make_client()
    watcher = await make_client(fault_proxy.connect_string, session_timeout=2.0)
    root = f"{zk_path}/cfg"
    node = f"{root}/same"
    await writer.create(node, b"v", makepath=True)
    tree = await TreeCache(watcher, root, watch_mode=mode).start(timeout=5)
    old_czxid = tree.get(node)[1].czxid  # type: ignore[index]
    stream = tree.changes()
    assert isinstance(await next_change(stream), Resynced)
    fault_proxy.blackhole()
    await until(lambda: not watcher.connected, 5)
    assert tree.stale and tree.get(node) is not None  # last view kept, marked stale
    await writer.delete(node)
    await writer.create(node, b"v")  # same data, same version 0: only czxid tells
    stale_when_connected: list[bool] = []
    watcher.add_listener(lambda ch: stale_when_connected.append(tree.stale)
                         if ch.state.name == "CONNECTED" else None)
    fault_proxy.pass_through()
    got: list[Any] = []
    while not any(isinstance(c, Resynced) for c in got):
        got.append(await next_change(stream, 10))
    assert [type(c).__name__ for c in got] == ["NodeRemoved", "NodeAdded", "Resynced"]
    assert got[0].stat.czxid == old_czxid and got[1].stat.czxid != old_czxid
    assert got[1].stat.version == 0
    assert stale_when_connected == [True]  # reconnected is not yet re-read
    assert not tree.stale and not got[2].stale
    await tree.close()


async def test_recreated_live_is_removed_then_added(mode: Any, make_client: Any, zk_path: str) -> None:
    writer, reader = await make_client(), await make_client()
    root = f"{zk_path}/cfg"
    await writer.create(f"{root}/n/child", b"c", makepath=True)
    tree = await TreeCache(reader, root, watch_mode=mode).start(timeout=5)
    stream = tree.changes()
    await next_change(stream)
    async with writer.transaction() as t:  # one batch: child, node gone; node back
        t.delete(f"{root}/n/child")
        t.delete(f"{root}/n")
        t.create(f"{root}/n", b"")
    got = [await next_change(stream) for _ in range(3)]
    assert [(type(c).__name__, c.path) for c in got] == [
        ("NodeRemoved", f"{root}/n/child"), ("NodeRemoved", f"{root}/n"),
        ("NodeAdded", f"{root}/n"),
    ]
    assert got[2].stat.czxid > got[1].stat.czxid
    assert tree.children(f"{root}/n") == [] and tree.get(f"{root}/n/child") is None
    await tree.close()


async def test_parent_recreated_and_changed_after_its_child_keeps_the_child_in_the_stream(
    mode: Any, make_client: Any, zk_hosts: str, zk_path: str
) -> None:
    # One batch: child and parent deleted, parent and child created again, then the
    # parent changed. The parent's re-creation removes the old child from the view and
    # the child's own read adds the new one; the stream published the child's addition
    # (its last event came first) before the parent's removal of the old child, so a
    # subscriber's replay lost a node the view held.
    writer, reader = await make_client(), await make_client()
    root = f"{zk_path}/cfg"
    await writer.create(f"{root}/n/child", b"c", makepath=True)
    tree = await TreeCache(reader, root, watch_mode=mode).start(timeout=5)
    seen: list[Any] = []

    async def follow() -> None:
        async for change in tree.changes():
            seen.append(change)

    follower = asyncio.create_task(follow())
    await until(lambda: len(seen) == 1)
    await _commit_as_one_batch(zk_hosts, lambda t: (
        t.delete(f"{root}/n/child"), t.delete(f"{root}/n"), t.create(f"{root}/n", b""),
        t.create(f"{root}/n/child", b"new"), t.set(f"{root}/n", b"changed"),
    ))
    expected = _key(await truth(writer, root))
    assert len(expected) == 3
    await until(lambda: _key(tree.nodes()) == expected)
    await until(lambda: _key(replay(seen)) == expected)
    follower.cancel()
    await tree.close()


async def test_parent_recreated_after_a_new_grandchild_was_read_keeps_the_grandchild(
    mode: Any, make_client: Any, zk_hosts: str, zk_path: str
) -> None:
    # One batch: a subtree deleted and created again, the parent and then the child changed
    # last. The grandchild's read comes first (its last event is earliest), then the
    # parent's re-creation drops the old incarnation below it: the old child, but not the
    # new grandchild it already holds in the view (dropping "everything below an old
    # child" lost it for good: no event would bring it back).
    writer, reader = await make_client(), await make_client()
    root = f"{zk_path}/cfg"
    await writer.create(f"{root}/a/c/x", b"old", makepath=True)
    tree = await TreeCache(reader, root, watch_mode=mode).start(timeout=5)
    await _commit_as_one_batch(zk_hosts, lambda t: (
        t.delete(f"{root}/a/c/x"), t.delete(f"{root}/a/c"), t.delete(f"{root}/a"),
        t.create(f"{root}/a", b""), t.create(f"{root}/a/c", b""),
        t.create(f"{root}/a/c/x", b"new"), t.set(f"{root}/a", b"1"), t.set(f"{root}/a/c", b"1"),
    ))
    expected = _key(await truth(writer, root))
    assert len(expected) == 4
    await until(lambda: _key(tree.nodes()) == expected)
    assert tree.children(f"{root}/a/c") == ["x"]
    await tree.close()


async def test_changes_of_one_batch_come_in_the_servers_order(
    mode: Any, make_client: Any, zk_path: str
) -> None:
    writer, reader = await make_client(), await make_client()
    root = f"{zk_path}/cfg"
    await writer.create(f"{root}/a", b"1", makepath=True)
    await writer.create(f"{root}/c", b"c")
    tree = await TreeCache(reader, root, watch_mode=mode).start(timeout=5)
    stream = tree.changes()
    await next_change(stream)
    async with writer.transaction() as t:  # one batch of events: a changed, then c gone
        t.set(f"{root}/a", b"2")
        t.delete(f"{root}/c")
    got = [await next_change(stream) for _ in range(2)]
    assert [(type(c).__name__, c.path) for c in got] == [
        ("NodeUpdated", f"{root}/a"), ("NodeRemoved", f"{root}/c"),
    ]
    await tree.close()


async def test_stale_through_outage_then_resynced_with_the_diff(mode: Any,
    make_client: Any, fault_proxy: FaultProxy, zk_path: str
) -> None:
    writer = await make_client()
    watcher = await make_client(fault_proxy.connect_string, session_timeout=2.0)
    root = f"{zk_path}/cfg"
    await writer.create(f"{root}/a", b"1", makepath=True)
    await writer.create(f"{root}/b", b"1")
    tree = await TreeCache(watcher, root, watch_mode=mode).start(timeout=5)
    stream = tree.changes()
    await next_change(stream)
    fault_proxy.blackhole()
    await until(lambda: tree.stale, 5, "stale")
    await writer.set(f"{root}/a", b"2")
    await writer.delete(f"{root}/b")
    await writer.create(f"{root}/c", b"3")
    await asyncio.sleep(0.5)
    assert data_of(tree.nodes()) == {root: b"", f"{root}/a": b"1", f"{root}/b": b"1"}
    assert tree.stale
    fault_proxy.pass_through()
    got: list[Any] = []
    while not any(isinstance(c, Resynced) for c in got):
        got.append(await next_change(stream, 10))
    summary = sorted((type(c).__name__, getattr(c, "path", "")) for c in got)
    assert summary == sorted([("NodeUpdated", f"{root}/a"), ("NodeRemoved", f"{root}/b"),
                              ("NodeAdded", f"{root}/c"), ("Resynced", "")])
    assert data_of(got[-1].nodes) == data_of(await truth(writer, root))
    assert not tree.stale
    await tree.close()


async def test_max_depth_keeps_deeper_nodes_out(mode: Any, make_client: Any, zk_path: str) -> None:
    writer, reader = await make_client(), await make_client()
    root = f"{zk_path}/cfg"
    await writer.create(f"{root}/a/b/c", b"deep", makepath=True)
    tree = await TreeCache(reader, root, max_depth=1, watch_mode=mode).start(timeout=5)
    assert sorted(tree.nodes()) == [root, f"{root}/a"]
    reads = tree.reads
    await writer.create(f"{root}/a/b/d", b"")  # deeper: no read, not in the view
    await writer.create(f"{root}/x", b"")
    await until(lambda: f"{root}/x" in tree)
    assert sorted(tree.nodes()) == [root, f"{root}/a", f"{root}/x"]
    assert tree.reads - reads == 1
    with pytest.raises(ConfigurationError):
        TreeCache(reader, root, max_depth=-1)
    await tree.close()


async def test_max_nodes_stops_growing_marks_degraded_logs_once_then_recovers(mode: Any,
    make_client: Any, zk_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="zkwarden.caches")
    writer, reader = await make_client(), await make_client()
    root = f"{zk_path}/cfg"
    await writer.create(root, b"", makepath=True)
    for i in range(8):
        await writer.create(f"{root}/n{i}", b"")
    tree = await TreeCache(reader, root, max_nodes=10, watch_mode=mode).start(timeout=5)
    assert len(tree) == 9 and not tree.stale and tree.degraded is None
    for i in range(8, 14):
        await writer.create(f"{root}/n{i}", b"")
    await until(lambda: tree.degraded is not None, 5, "degraded")
    await asyncio.sleep(0.3)
    assert len(tree) == 10  # stopped growing at the limit
    assert tree.stale
    warnings = [r for r in caplog.records if "max_nodes" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    # A full re-read of a tree still too big stays bounded and degraded.
    for i in range(0, 3):
        await writer.delete(f"{root}/n{i}")
    await asyncio.sleep(0.3)
    assert len(tree) <= 10 and tree.degraded is not None
    for i in range(3, 8):
        await writer.delete(f"{root}/n{i}")  # 1 + 6 nodes now: under the limit
    expected = await truth(writer, root)
    assert len(expected) == 7
    await until(lambda: tree.degraded is None and data_of(tree.nodes()) == data_of(expected),
                5, "recovered")
    assert not tree.stale
    await tree.close()


async def test_accept_prunes_subtrees(mode: Any, make_client: Any, zk_path: str) -> None:
    writer, reader = await make_client(), await make_client()
    root = f"{zk_path}/cfg"
    await writer.create(f"{root}/keep/x", b"", makepath=True)
    await writer.create(f"{root}/skip/y", b"", makepath=True)
    tree = await TreeCache(reader, root, accept=lambda p: not p.endswith("/skip"), watch_mode=mode).start(timeout=5)
    assert sorted(tree.nodes()) == [root, f"{root}/keep", f"{root}/keep/x"]
    await writer.create(f"{root}/skip/z", b"")
    await writer.create(f"{root}/keep/z", b"")
    await until(lambda: f"{root}/keep/z" in tree)
    assert f"{root}/skip/z" not in tree
    await tree.close()


async def test_subscriber_that_falls_behind_gets_one_resynced(mode: Any,
    make_client: Any, zk_path: str
) -> None:
    writer, reader = await make_client(), await make_client()
    root = f"{zk_path}/cfg"
    await writer.create(root, b"", makepath=True)
    tree = await TreeCache(reader, root, max_queued_changes=5, watch_mode=mode).start(timeout=5)
    slow = tree.changes()
    assert isinstance(await next_change(slow), Resynced)
    for i in range(20):
        await writer.create(f"{root}/n{i}", b"")
    await until(lambda: len(tree) == 21)
    item = await next_change(slow)
    assert isinstance(item, Resynced) and len(item.nodes) == 21
    await writer.create(f"{root}/last", b"")
    item = await next_change(slow)
    assert isinstance(item, NodeAdded) and item.path == f"{root}/last"
    await tree.close()


async def test_watch_stream_overflow_triggers_full_reread(
    make_client: Any, zk_path: str
) -> None:
    writer = await make_client()
    reader = await make_client(max_queued_events=3)
    root = f"{zk_path}/cfg"
    await writer.create(root, b"", makepath=True)
    for i in range(10):
        await writer.create(f"{root}/n{i}", b"x")
    # A cache's stream holds up to two events per node its view may hold (here 40).
    tree = await TreeCache(reader, root, max_nodes=20).start(timeout=5)
    resyncs = tree.resyncs
    # 300 events at once: past the stream's bound even if they arrive in a few reads
    async with writer.transaction() as t:
        for round_ in range(30):
            for i in range(10):
                t.set(f"{root}/n{i}", f"{round_}".encode())
    expected = await truth(writer, root)
    await until(lambda: data_of(tree.nodes()) == data_of(expected), 5)
    assert tree.resyncs > resyncs
    await tree.close()


async def test_snapshot_restores_the_view_when_zookeeper_is_down(mode: Any,
    make_client: Any, zk_path: str, zk_hosts: str, tmp_path: Path
) -> None:
    writer = await make_client()
    root = f"{zk_path}/cfg"
    await writer.create(f"{root}/a", b"\x00\xffbin", makepath=True)
    await writer.create(f"{root}/b", b"x")
    live = await TreeCache(await make_client(), root, snapshot_dir=str(tmp_path), watch_mode=mode).start(timeout=5)
    await writer.set(f"{root}/b", b"y")  # written to the snapshot on change
    await until(lambda: live.get(f"{root}/b") is not None and live.get(f"{root}/b")[0] == b"y")
    saved = live.nodes()
    await live.close()
    with FaultProxy(zk_hosts) as proxy:
        proxy.blackhole()
        client = AsyncClient(proxy.connect_string, session_timeout=2.0)
        await client.start(wait=False)
        cold = await TreeCache(client, root, snapshot_dir=str(tmp_path), watch_mode=mode).start(timeout=5)
        assert cold.stale and cold.nodes() == saved
        assert cold.children(root) == ["a", "b"]
        first = await next_change(cold.changes())
        assert isinstance(first, Resynced) and first.stale and dict(first.nodes) == saved
        await writer.delete(f"{root}/a")
        proxy.pass_through()
        await until(lambda: not cold.stale, 15, "live")
        assert sorted(cold.nodes()) == [root, f"{root}/b"]
        await cold.close()
        await client.close()


async def test_corrupt_snapshot_is_ignored(mode: Any, make_client: Any, zk_path: str, tmp_path: Path,
                                           zk_hosts: str) -> None:
    from zkwarden.caches._snapshot import snapshot_filename

    root = f"{zk_path}/cfg"
    (tmp_path / snapshot_filename(root)).write_bytes(b"{not json")
    with FaultProxy(zk_hosts) as proxy:
        proxy.blackhole()
        client = AsyncClient(proxy.connect_string, session_timeout=2.0)
        await client.start(wait=False)
        tree = TreeCache(client, root, snapshot_dir=str(tmp_path), watch_mode=mode)
        await tree.start(wait=False)
        assert not tree.loaded and tree.nodes() == {}
        await tree.close()
        await client.close()


async def test_absent_root_then_created_then_deleted(mode: Any, make_client: Any, zk_path: str) -> None:
    writer, reader = await make_client(), await make_client()
    root = f"{zk_path}/later"
    tree = await TreeCache(reader, root, watch_mode=mode).start(timeout=5)
    assert tree.nodes() == {} and not tree.stale
    await writer.create(f"{root}/x", b"1", makepath=True)
    await until(lambda: sorted(tree.nodes()) == [root, f"{root}/x"])
    await writer.delete(root, recursive=True)
    await until(lambda: tree.nodes() == {})
    assert tree.children(root) == []
    await tree.close()


async def test_node_cache_absent_created_updated_deleted(mode: Any, make_client: Any, zk_path: str) -> None:
    writer, reader = await make_client(), await make_client()
    path = f"{zk_path}/flag"
    cache = await NodeCache(reader, path, watch_mode=mode).start(timeout=5)
    assert cache.get() is None and not cache.stale
    stream = cache.changes()
    first = await next_change(stream)
    assert isinstance(first, Resynced) and dict(first.nodes) == {}
    await writer.create(path, b"on", makepath=True)
    added = await next_change(stream)
    assert isinstance(added, NodeAdded) and added.data == b"on"
    assert cache.get() is not None and cache.get()[0] == b"on"  # type: ignore[index]
    await writer.create(f"{path}/child", b"")  # children are not the node's business
    await writer.set(path, b"off")
    updated = await next_change(stream)
    assert isinstance(updated, NodeUpdated) and updated.data == b"off" and updated.old_data == b"on"
    await writer.delete(path, recursive=True)
    removed = await next_change(stream)
    assert isinstance(removed, NodeRemoved) and removed.data == b"off"
    assert cache.get() is None
    await writer.create(path, b"back")
    again = await next_change(stream)
    assert isinstance(again, NodeAdded) and again.data == b"back"
    await cache.close()
    with pytest.raises(ClientClosedError):
        await next_change(stream)


async def test_client_close_ends_streams_and_close_is_idempotent(mode: Any,
    zk_hosts: str, zk_path: str
) -> None:
    client = AsyncClient(zk_hosts, session_timeout=2.0)
    await client.start()
    tree = await TreeCache(client, zk_path, watch_mode=mode).start(timeout=5)
    stream = tree.changes()
    await next_change(stream)
    await client.close()
    with pytest.raises(ClientClosedError):
        await next_change(stream)
    await tree.close()
    await tree.close()
    with pytest.raises(ClientClosedError):
        tree.start_soon()


class _NoAddWatch:
    """What arming a persistent watch does on a ZooKeeper 3.5 server."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.ended = False

    async def arm(self) -> None:
        from zkwarden.errors import UnimplementedError

        raise UnimplementedError("addWatch is not implemented by this server")

    async def aclose(self) -> None:
        self.ended = True


async def test_server_without_persistent_watches_fails_start_clearly_when_persistent_forced(
    make_client: Any, zk_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zkwarden.errors import UnimplementedError

    client = await make_client()
    monkeypatch.setattr(client, "add_watch", lambda path, recursive=True: _NoAddWatch(path))
    tree = TreeCache(client, zk_path, watch_mode="persistent")
    with pytest.raises(UnimplementedError):
        await tree.start(timeout=5)
    with pytest.raises(UnimplementedError):
        await next_change(tree.changes())
    assert not tree.loaded and tree.stale
    await tree.close()


async def test_auto_falls_back_to_one_shot_when_add_watch_is_refused(
    make_client: Any, zk_path: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer, client = await make_client(), await make_client()
    root = f"{zk_path}/old"
    await writer.create(f"{root}/a", b"1", makepath=True)
    # What a ZooKeeper 3.5 server answers to addWatch.
    monkeypatch.setattr(client, "add_watch", lambda path, recursive=True: _NoAddWatch(path))
    caplog.set_level(logging.WARNING, logger="zkwarden.caches")
    tree = await TreeCache(client, root).start(timeout=5)
    node = await NodeCache(client, f"{root}/a").start(timeout=5)
    assert tree.watch_mode == "auto" and tree.watch_mode_in_use == "one-shot"
    assert node.watch_mode_in_use == "one-shot"
    assert "falling back to one-shot watches" in caplog.text
    # One-shot watches on the server: data and children of the root, data of the leaf.
    await client.check_watches(root, WatcherType.DATA)
    await client.check_watches(root, WatcherType.CHILDREN)
    await client.check_watches(f"{root}/a", WatcherType.DATA)
    assert data_of(tree.nodes()) == {root: b"", f"{root}/a": b"1"}
    await writer.set(f"{root}/a", b"2")
    await writer.create(f"{root}/b", b"3")
    await until(lambda: data_of(tree.nodes()) == {root: b"", f"{root}/a": b"2",
                                                  f"{root}/b": b"3"}, 5)
    await until(lambda: (node.get() or (b"",))[0] == b"2", 5)
    await tree.close()
    await node.close()


async def test_auto_chooses_persistent_on_a_server_that_has_it(
    make_client: Any, zk_path: str
) -> None:
    client = await make_client()
    await client.create(zk_path + "/x", b"", makepath=True)
    tree = await TreeCache(client, zk_path).start(timeout=5)
    node = await NodeCache(client, zk_path + "/x").start(timeout=5)
    assert tree.watch_mode_in_use == "persistent" and node.watch_mode_in_use == "persistent"
    await tree.close()
    await node.close()


async def test_unknown_watch_mode_is_refused(make_client: Any, zk_path: str) -> None:
    client = await make_client()
    with pytest.raises(ConfigurationError):
        TreeCache(client, zk_path, watch_mode="sometimes")  # type: ignore[arg-type]


async def test_close_during_start_leaves_no_task(make_client: Any, zk_path: str) -> None:
    from _tasks_support import package_dirs, tasks_running_code_of

    import zkwarden.caches as caches_pkg

    client = await make_client()
    await client.create(f"{zk_path}/a/b", b"", makepath=True)
    for delay in (0.0, 0.001, 0.005, 0.02):
        tree = TreeCache(client, zk_path)
        tree.start_soon()
        await asyncio.sleep(delay)
        await asyncio.wait_for(tree.close(), 5)
        assert tasks_running_code_of(package_dirs(caches_pkg)) == []
    # The client still serves a new cache on the same path.
    fresh = await TreeCache(client, zk_path).start(timeout=5)
    assert fresh.get(f"{zk_path}/a/b") is not None
    await fresh.close()
