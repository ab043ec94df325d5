"""Client.watch callbacks as CallbackWatch subscribers (no task, stream or coroutine per
watch): they re-arm after each event, follow a node through deletion and re-creation,
survive a reconnect, and leave nothing subscribed after cancel() or close()."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from sync_helpers import wait_until

from zkwarden import Client, ClientState, WatchEvent, errors
from zkwarden.testing import FaultProxy


def _watch_tasks(zk: Client) -> list[str]:
    """Names of the loop's tasks that run watch code of the facade or the streams."""

    async def names() -> list[str]:
        out = []
        for task in asyncio.all_tasks():
            coro: Any = task.get_coro()
            code = getattr(coro, "cr_code", None)
            if code is not None and ("_watch" in code.co_filename
                                     or code.co_filename.endswith("_aio/watch.py")):
                out.append(code.co_qualname)
        return out

    return zk.run_coroutine(names(), timeout=5.0)


def test_rearms_after_each_event_in_order_without_a_task(
    zk: Client, observer: Client, zk_path: str
) -> None:
    observer.create(zk_path, b"0")
    seen: list[bytes | None] = []
    handles = [zk.watch(zk_path, "data", lambda e: seen.append(e.data))]
    handles += [zk.watch(f"{zk_path}", "exists", lambda e: None),
                zk.watch(zk_path, "children", lambda e: None)]
    assert wait_until(lambda: seen == [b"0"], 2.0), seen
    # Armed and idle: nothing runs for these watches on the loop.
    assert _watch_tasks(zk) == []
    for i in range(1, 6):
        observer.set(zk_path, str(i).encode())
        # Each set is seen before the next: one event per change, in order, each re-armed.
        assert wait_until(lambda i=i: seen[-1:] == [str(i).encode()], 2.0), seen
    assert seen == [str(i).encode() for i in range(6)]
    assert _watch_tasks(zk) == []
    for h in handles:
        h.cancel()


def test_follows_deletion_and_recreation(zk: Client, observer: Client, zk_path: str) -> None:
    observer.create(zk_path, b"a")
    events: list[WatchEvent] = []
    handle = zk.watch(zk_path, "data", events.append)
    assert wait_until(lambda: len(events) == 1, 2.0)
    observer.delete(zk_path)
    # Re-read after the deletion: NoNode, so an exists watch is armed instead.
    assert wait_until(lambda: len(events) == 2, 2.0), events
    assert events[1].stat is None and events[1].data is None
    observer.create(zk_path, b"b")
    assert wait_until(lambda: len(events) == 3, 2.0), events
    assert events[2].data == b"b" and events[2].stat is not None
    observer.set(zk_path, b"c")
    assert wait_until(lambda: events[-1].data == b"c", 2.0), events
    assert handle.active and handle.error is None
    handle.cancel()


def test_survives_a_reconnect(zk_hosts: str, observer: Client, zk_path: str) -> None:
    observer.create(zk_path, b"0")
    with FaultProxy(zk_hosts) as proxy:
        zk = Client(proxy.connect_string, session_timeout=6.0, track_ensemble=False)
        zk.start()
        try:
            seen: list[bytes | None] = []
            ends: list[Exception] = []
            zk.watch(zk_path, "data", lambda e: seen.append(e.data), on_error=ends.append)
            assert wait_until(lambda: seen == [b"0"], 2.0)
            session = zk.session_id
            proxy.reset()  # drops the connection; the session lives on
            assert wait_until(lambda: zk.state is not ClientState.CONNECTED, 3.0)
            assert wait_until(lambda: zk.state is ClientState.CONNECTED, 10.0)
            assert zk.session_id == session
            observer.set(zk_path, b"1")
            assert wait_until(lambda: seen[-1:] == [b"1"], 3.0), seen
            observer.set(zk_path, b"2")
            assert wait_until(lambda: seen[-1:] == [b"2"], 3.0), seen
            assert ends == []
        finally:
            zk.close()


def test_cancel_leaves_nothing_subscribed(zk_hosts: str, observer: Client, zk_path: str,
                                          zk_server: Any) -> None:
    observer.create(zk_path, b"0")
    # (no ensemble tracker: its own watch would be counted)
    with Client(zk_hosts, session_timeout=4.0, track_ensemble=False) as zk:
        _cancel_leaves_nothing_subscribed(zk, observer, zk_path, zk_server)


def _cancel_leaves_nothing_subscribed(zk: Client, observer: Client, zk_path: str,
                                      zk_server: Any) -> None:
    calls = threading.Semaphore(0)
    handle = zk.watch(zk_path, "data", lambda e: calls.release())
    assert calls.acquire(timeout=2.0)
    subs = zk.async_client._subs
    assert len(subs.subscribers) == 1
    assert zk_path in str(zk_server.four_letter_word("wchc"))
    handle.cancel()
    assert wait_until(lambda: not subs.subscribers, 2.0)
    assert wait_until(lambda: zk.async_client._engine.watches.count() == 0, 2.0)
    # The watch it had armed is removed from the server too (in the background).
    assert wait_until(lambda: zk_path not in str(zk_server.four_letter_word("wchc")), 3.0)
    observer.set(zk_path, b"1")
    assert not calls.acquire(timeout=0.5)  # no callback after cancel()
    assert not handle.active and handle.error is None


def test_close_ends_each_watch_once_with_client_closed(zk_hosts: str, observer: Client,
                                                       zk_path: str) -> None:
    observer.create(zk_path, b"0")
    zk = Client(zk_hosts, session_timeout=4.0, track_ensemble=False)
    zk.start()
    ends: list[Exception] = []
    handles = [zk.watch(zk_path, kind, lambda e: None, on_error=ends.append)
               for kind in ("data", "exists", "children")]
    subs = zk.async_client._subs
    zk.close()
    # close() hands every watch's end to the dispatcher before it stops.
    assert len(ends) == 3, ends
    assert all(isinstance(e, errors.ClientClosedError) for e in ends)
    assert all(isinstance(h.error, errors.ClientClosedError) for h in handles)
    assert not subs.subscribers


def test_failed_arming_leaves_nothing_subscribed(zk_hosts: str, zk_path: str) -> None:
    with Client(zk_hosts, session_timeout=4.0, track_ensemble=False) as zk:
        _failed_arming_leaves_nothing_subscribed(zk, zk_path)


def _failed_arming_leaves_nothing_subscribed(zk: Client, zk_path: str) -> None:
    subs = zk.async_client._subs
    try:
        zk.watch(zk_path, "bogus", lambda e: None)  # type: ignore[arg-type]
    except errors.InvalidArgumentError:
        pass
    else:
        raise AssertionError("an unknown kind must raise")
    try:
        zk.watch("no-slash", "data", lambda e: None)
    except errors.InvalidPathError:
        pass
    else:
        raise AssertionError("an invalid path must raise")
    assert not subs.subscribers
