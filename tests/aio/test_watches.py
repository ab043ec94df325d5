"""Watch semantics against a real ZooKeeper (DESIGN rules 1 and 2)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from zkwarden import EventType, errors
from zkwarden._aio.subscriptions import Subscriptions

pytestmark = pytest.mark.asyncio


async def _next(stream: Any, timeout: float = 5.0) -> Any:
    return await asyncio.wait_for(stream.__anext__(), timeout)


async def test_data_watch_fires_once_per_change_and_rearms(zk: Any, zk2: Any, zk_path: str) -> None:
    await zk.create(f"{zk_path}/d", b"0", makepath=True)
    stream = zk.watch(f"{zk_path}/d", "data")
    first = await _next(stream)
    assert first.type is EventType.NONE and first.data == b"0" and first.exists
    for i in range(1, 4):
        await zk2.set(f"{zk_path}/d", str(i).encode())
        event = await _next(stream)
        assert event.type is EventType.NODE_DATA_CHANGED
        assert event.data == str(i).encode() and event.stat.version == i
    # Exactly one event per change: nothing further is pending.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(stream.__anext__(), 0.3)
    await stream.aclose()


async def test_data_watch_survives_absent_and_deleted_node(zk: Any, zk2: Any, zk_path: str) -> None:
    await zk.ensure_path(zk_path)
    stream = zk.watch(f"{zk_path}/later", "data")
    first = await _next(stream)
    assert first.type is EventType.NONE and not first.exists and first.data is None
    await zk2.create(f"{zk_path}/later", b"born")
    created = await _next(stream)
    assert created.type is EventType.NODE_CREATED and created.data == b"born"
    await zk2.delete(f"{zk_path}/later")
    deleted = await _next(stream)
    assert deleted.type is EventType.NODE_DELETED and not deleted.exists
    await zk2.create(f"{zk_path}/later", b"again")
    again = await _next(stream)
    assert again.type is EventType.NODE_CREATED and again.data == b"again"
    assert again.stat.czxid > created.stat.czxid
    await stream.aclose()


async def test_exists_and_children_watches(zk: Any, zk2: Any, zk_path: str) -> None:
    await zk.ensure_path(zk_path)
    exists = zk.watch(f"{zk_path}/x", "exists")
    children = zk.watch(zk_path, "children")
    assert not (await _next(exists)).exists
    assert (await _next(children)).children == ()
    await zk2.create(f"{zk_path}/x", b"")
    ev = await _next(exists)
    assert ev.type is EventType.NODE_CREATED and ev.exists
    ch = await _next(children)
    assert ch.type is EventType.NODE_CHILDREN_CHANGED and ch.children == ("x",)
    await zk2.create(f"{zk_path}/y", b"")
    ch = await _next(children)
    assert sorted(ch.children) == ["x", "y"]
    await zk2.delete(f"{zk_path}/x")
    ev = await _next(exists)
    assert ev.type is EventType.NODE_DELETED and not ev.exists
    ch = await _next(children)
    assert ch.children == ("y",)
    await exists.aclose()
    await children.aclose()


async def test_burst_of_1000_writes_ends_on_final_value(zk: Any, zk2: Any, zk_path: str) -> None:
    await zk.create(f"{zk_path}/burst", b"-1", makepath=True)
    stream = zk.watch(f"{zk_path}/burst", "data")
    seen: list[bytes] = []

    async def consume() -> None:
        async for event in stream:
            seen.append(event.data)
            if event.data == b"999":
                return

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    await asyncio.gather(*(zk2.set(f"{zk_path}/burst", str(i).encode()) for i in range(1000)))
    await asyncio.wait_for(consumer, 10)
    assert seen[-1] == b"999"
    # Versions only move forward: the stream may coalesce but never goes back in time.
    numbers = [int(v) for v in seen]
    assert numbers == sorted(numbers)
    await stream.aclose()


async def test_persistent_recursive_watch_sees_subtree(zk: Any, zk2: Any, zk_path: str) -> None:
    await zk.ensure_path(f"{zk_path}/r")
    stream = await zk.add_watch(f"{zk_path}/r", recursive=True)
    armed = await _next(stream)
    assert armed.type is EventType.NONE
    await zk2.create(f"{zk_path}/r/c", b"")
    await zk2.create(f"{zk_path}/r/c/d", b"")
    await zk2.set(f"{zk_path}/r/c/d", b"1")
    await zk2.delete(f"{zk_path}/r/c/d")
    await zk2.set(f"{zk_path}/r", b"root")
    got = [(e.type, e.path) for e in [await _next(stream) for _ in range(5)]]
    assert got == [
        (EventType.NODE_CREATED, f"{zk_path}/r/c"),
        (EventType.NODE_CREATED, f"{zk_path}/r/c/d"),
        (EventType.NODE_DATA_CHANGED, f"{zk_path}/r/c/d"),
        (EventType.NODE_DELETED, f"{zk_path}/r/c/d"),
        (EventType.NODE_DATA_CHANGED, f"{zk_path}/r"),
    ]
    # Recursive watches never get NodeChildrenChanged.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(stream.__anext__(), 0.3)
    await stream.aclose()
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_persistent_watch_is_not_recursive(zk: Any, zk2: Any, zk_path: str) -> None:
    await zk.ensure_path(f"{zk_path}/p")
    stream = await zk.add_watch(f"{zk_path}/p", recursive=False)
    assert (await _next(stream)).type is EventType.NONE
    await zk2.create(f"{zk_path}/p/child", b"")
    await zk2.create(f"{zk_path}/p/child/grand", b"")  # not delivered: grandchild
    await zk2.set(f"{zk_path}/p", b"x")
    first = await _next(stream)
    second = await _next(stream)
    assert (first.type, first.path) == (EventType.NODE_CHILDREN_CHANGED, f"{zk_path}/p")
    assert (second.type, second.path) == (EventType.NODE_DATA_CHANGED, f"{zk_path}/p")
    await stream.aclose()


async def test_many_subscribers_same_path(zk: Any, zk2: Any, zk_path: str) -> None:
    await zk.create(f"{zk_path}/shared", b"0", makepath=True)
    streams = [zk.watch(f"{zk_path}/shared") for _ in range(50)]
    firsts = await asyncio.gather(*(_next(s) for s in streams))
    assert all(f.data == b"0" for f in firsts)
    await zk2.set(f"{zk_path}/shared", b"1")
    events = await asyncio.gather(*(_next(s) for s in streams))
    assert all(e.data == b"1" for e in events)
    for s in streams:
        await s.aclose()


async def test_stream_ends_once_on_close(zk_hosts: str, zk_path: str) -> None:
    from zkwarden import AsyncClient

    client = AsyncClient(zk_hosts, session_timeout=4.0)
    await client.start()
    stream = client.watch(f"{zk_path}/whatever")
    await _next(stream)
    waiter = asyncio.create_task(_next(stream))
    await asyncio.sleep(0.05)
    await client.close()
    with pytest.raises(errors.ClientClosedError):
        await waiter
    for _ in range(3):
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()


async def test_closing_persistent_watch_keeps_rearming_one_shot_watch(
    zk: Any, zk2: Any, zk_path: str
) -> None:
    # On ZooKeeper 3.8 removing a persistent watch (type 4) fails and the client falls
    # back to RemoveWatches(ANY), which would also strip a one-shot watch on the same path
    # whose re-arming read went out just before. Steer the re-arm into that window.
    path = f"{zk_path}/both"
    await zk.create(path, b"0", makepath=True)
    one_shot = zk.watch(path)
    await _next(one_shot)
    persistent = await zk.add_watch(path, recursive=False)
    await _next(persistent)
    await zk2.set(path, b"1")
    await asyncio.sleep(0.2)  # the one-shot watch has fired; its stream has not re-read
    rearm: list[asyncio.Task[Any]] = []
    real_remove = zk._subs.remove_persistent_watch

    async def remove_watches(p: str, kind: Any) -> None:
        try:
            await real_remove(p, kind)
        finally:
            if not rearm:  # after the first removal attempt: re-arm now, in the window
                rearm.append(asyncio.create_task(one_shot.__anext__()))
                await asyncio.sleep(0)

    zk._subs.remove_persistent_watch = remove_watches
    await persistent.aclose()
    assert rearm, "the persistent watch was not removed from the server"
    assert (await asyncio.wait_for(rearm[0], 5)).data == b"1"
    await zk2.set(path, b"2")
    assert (await _next(one_shot)).data == b"2"
    await one_shot.aclose()


async def test_break_out_of_async_for_leaves_nothing_behind(
    zk: Any, zk2: Any, zk_path: str, zk_server: Any
) -> None:
    import gc

    path = f"{zk_path}/left"
    await zk.create(path, b"0", makepath=True)

    async def read_one(stream: Any) -> None:
        async for _event in stream:
            break  # no aclose(): a plain async iterator is simply dropped

    def watched_paths() -> str:
        return str(zk_server.four_letter_word("wchc"))

    await read_one(zk.add_watch(path, recursive=True))
    await read_one(zk.watch(path, "data"))
    await read_one(zk.watch(path, "children"))
    gc.collect()
    await asyncio.sleep(0.3)  # the removal of the persistent watch is sent in the background
    assert zk._subs.subscribers == set()
    # The server holds no persistent watch for this session any more: a change reaches
    # only the one-shot watches that were armed (and they fire once, then are gone).
    await zk2.set(path, b"1")
    await asyncio.sleep(0.2)
    assert path not in watched_paths()


async def test_persistent_stream_closed_while_arming_leaves_no_watch(
    zk: Any, zk2: Any, zk_path: str, zk_server: Any
) -> None:
    path = f"{zk_path}/arming"
    await zk.create(path, b"0", makepath=True)
    stream = zk.add_watch(path, recursive=True)
    arming = asyncio.create_task(stream.arm())
    await asyncio.sleep(0)  # AddWatch is on its way
    await stream.aclose()  # closed before the reply came back
    await arming
    await asyncio.sleep(0.2)
    assert zk._engine.watches.count() == 0
    assert path not in str(zk_server.four_letter_word("wchc"))


async def test_closed_one_shot_stream_leaves_no_watch_on_the_server(
    zk: Any, zk2: Any, zk_path: str, zk_server: Any
) -> None:
    # A data stream on a node that is then deleted re-arms as an exists watch on a path
    # that may never come back: closing the stream must take it off the server.
    path = f"{zk_path}/gone"
    await zk.create(path, b"0", makepath=True)
    stream = zk.watch(path, "data")
    first = await asyncio.wait_for(anext(stream), 5)
    assert first.data == b"0"
    await zk2.delete(path)
    deleted = await asyncio.wait_for(anext(stream), 5)
    assert deleted.type is EventType.NODE_DELETED and deleted.stat is None
    assert path in str(zk_server.four_letter_word("wchc"))  # the re-armed exists watch
    await stream.aclose()
    assert zk._engine.watches.count() == 0
    with pytest.raises(errors.NoWatcherError):
        await zk.check_watches(path)
    assert path not in str(zk_server.four_letter_word("wchc"))


async def test_closing_one_of_two_streams_keeps_the_others_watch(
    zk: Any, zk2: Any, zk_path: str
) -> None:
    path = f"{zk_path}/shared"
    await zk.create(path, b"0", makepath=True)
    one, two = zk.watch(path, "data"), zk.watch(path, "data")
    await asyncio.wait_for(anext(one), 5)
    await asyncio.wait_for(anext(two), 5)
    await one.aclose()
    await zk.check_watches(path)  # still there for the other stream
    await zk2.set(path, b"1")
    changed = await asyncio.wait_for(anext(two), 5)
    assert changed.data == b"1"
    await two.aclose()


async def test_closing_a_stream_with_two_watch_kinds_spares_a_stream_opened_meanwhile(
    zk: Any, zk2: Any, zk_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A children stream whose node appeared between its getChildren (NoNode) and the
    # exists that followed holds two watches: the exists (a data watch, the node being
    # there) and, after its next read, a child watch. Closing it sent RemoveWatches for
    # one kind, awaited the reply, then for the other: a data stream on the same path
    # that started meanwhile had its fresh watch stripped by the second request and
    # never heard of the node again (a TreeCache in one-shot mode lost a node so).
    path = f"{zk_path}/both"
    await zk.create(zk_path, makepath=True)
    original = Subscriptions.exists_watched
    created = []

    async def create_first(self: Subscriptions, p: str, sub: Any) -> Any:
        if p == path and not created:
            created.append(await zk2.create(path, b"0"))
        return await original(self, p, sub)

    monkeypatch.setattr(Subscriptions, "exists_watched", create_first)
    children = zk.watch(path, "children")
    first = await asyncio.wait_for(anext(children), 5)
    assert created and first.exists and first.children == ()
    monkeypatch.setattr(Subscriptions, "exists_watched", original)

    data = zk.watch(path, "data")
    closing = asyncio.create_task(children.aclose())
    opened = asyncio.create_task(anext(data))  # registers and arms while the close runs
    await asyncio.wait_for(closing, 5)
    assert (await asyncio.wait_for(opened, 5)).data == b"0"
    await zk.check_watches(path)  # the data stream's watch is still on the server
    await zk2.set(path, b"1")
    changed = await asyncio.wait_for(anext(data), 5)
    assert changed.type is EventType.NODE_DATA_CHANGED and changed.data == b"1"
    await data.aclose()
