"""WatchRegistry.fire: which client-side watch tables an event fires (reference section 7)."""

from __future__ import annotations

import pytest

from zkwarden.protocol.ops import (
    AddWatch,
    Exists,
    GetChildren,
    GetChildren2,
    GetData,
    SetWatches,
    SetWatches2,
    WatchKind,
)
from zkwarden.protocol.watches import WatchRegistry
from zkwarden.types import EventType

K = WatchKind
E = EventType


def _full_registry() -> WatchRegistry[str]:
    """One watcher per table on /a/b, plus persistent/recursive ones around it."""
    reg: WatchRegistry[str] = WatchRegistry()
    reg.add(K.DATA, "/a/b", "data")
    reg.add(K.EXIST, "/a/b", "exist")
    reg.add(K.CHILD, "/a/b", "child")
    reg.add(K.PERSISTENT, "/a/b", "persistent")
    reg.add(K.PERSISTENT_RECURSIVE, "/a/b", "recursive-self")
    reg.add(K.PERSISTENT_RECURSIVE, "/a", "recursive-parent")
    reg.add(K.PERSISTENT_RECURSIVE, "/", "recursive-root")
    # must never fire for an event on /a/b:
    reg.add(K.PERSISTENT, "/a", "persistent-parent")  # persistent is exact-path only
    reg.add(K.PERSISTENT_RECURSIVE, "/a/b/c", "recursive-child")
    reg.add(K.PERSISTENT_RECURSIVE, "/a/bc", "recursive-sibling")
    reg.add(K.PERSISTENT_RECURSIVE, "/a/b/", "recursive-trailing")  # not a real ancestor
    reg.add(K.DATA, "/a", "data-parent")
    reg.add(K.CHILD, "/a", "child-parent")
    reg.add(K.DATA, "/a/bc", "data-sibling")
    return reg


RECURSIVE = {"recursive-self", "recursive-parent", "recursive-root"}

FIRE_TABLE: list[tuple[EventType, set[str]]] = [
    (E.NODE_CREATED, {"data", "exist", "persistent"} | RECURSIVE),
    (E.NODE_DATA_CHANGED, {"data", "exist", "persistent"} | RECURSIVE),
    (E.NODE_CHILDREN_CHANGED, {"child", "persistent"}),  # recursive never gets it
    (E.NODE_DELETED, {"data", "exist", "child", "persistent"} | RECURSIVE),
]

# one-shot tables that each event empties on the path
CONSUMED: dict[EventType, set[WatchKind]] = {
    E.NODE_CREATED: {K.DATA, K.EXIST},
    E.NODE_DATA_CHANGED: {K.DATA, K.EXIST},
    E.NODE_CHILDREN_CHANGED: {K.CHILD},
    E.NODE_DELETED: {K.DATA, K.EXIST, K.CHILD},
}


@pytest.mark.parametrize("event, expected", FIRE_TABLE, ids=[e.name for e, _ in FIRE_TABLE])
def test_fire_table(event: EventType, expected: set[str]) -> None:
    reg = _full_registry()
    fired = reg.fire(event, "/a/b")
    assert len(fired) == len(set(fired)), "each watcher is fired once"
    assert set(fired) == expected


@pytest.mark.parametrize("event", list(CONSUMED), ids=[e.name for e in CONSUMED])
def test_one_shot_removed_persistent_kept(event: EventType) -> None:
    reg = _full_registry()
    reg.fire(event, "/a/b")
    for kind in (K.DATA, K.EXIST, K.CHILD):
        assert reg.has(kind, "/a/b") is (kind not in CONSUMED[event])
    assert reg.has(K.PERSISTENT, "/a/b")
    assert reg.has(K.PERSISTENT_RECURSIVE, "/a/b")
    assert reg.has(K.PERSISTENT_RECURSIVE, "/a")
    # watches on other paths are untouched
    assert reg.has(K.DATA, "/a") and reg.has(K.CHILD, "/a") and reg.has(K.DATA, "/a/bc")
    # firing again: only what is left
    again = set(reg.fire(event, "/a/b"))
    recursive = set() if event is E.NODE_CHILDREN_CHANGED else RECURSIVE
    assert again == {"persistent"} | recursive


def test_one_shot_watchers_all_fire_once() -> None:
    reg: WatchRegistry[str] = WatchRegistry()
    for w in ("w1", "w2", "w3"):
        reg.add(K.DATA, "/x", w)
    reg.add(K.DATA, "/x", "w1")  # added twice: still one entry
    assert reg.fire(E.NODE_DATA_CHANGED, "/x") == ["w1", "w2", "w3"]
    assert reg.fire(E.NODE_DATA_CHANGED, "/x") == []
    assert reg.count() == 0


def test_same_watcher_in_several_tables_fires_once() -> None:
    reg: WatchRegistry[str] = WatchRegistry()
    for kind in K:
        reg.add(kind, "/x", "w")
    assert reg.fire(E.NODE_DELETED, "/x") == ["w"]


def test_recursive_on_root_fires_for_deep_paths() -> None:
    reg: WatchRegistry[str] = WatchRegistry()
    reg.add(K.PERSISTENT_RECURSIVE, "/", "root")
    assert reg.fire(E.NODE_CREATED, "/a/b/c/d") == ["root"]
    assert reg.fire(E.NODE_DATA_CHANGED, "/") == ["root"]
    assert reg.fire(E.NODE_CHILDREN_CHANGED, "/") == []
    assert reg.has(K.PERSISTENT_RECURSIVE, "/")


def test_persistent_gets_children_changed_on_exact_path_only() -> None:
    reg: WatchRegistry[str] = WatchRegistry()
    reg.add(K.PERSISTENT, "/p", "p")
    assert reg.fire(E.NODE_CHILDREN_CHANGED, "/p") == ["p"]
    assert reg.fire(E.NODE_CREATED, "/p/child") == []
    assert reg.fire(E.NODE_DELETED, "/p") == ["p"]
    assert reg.has(K.PERSISTENT, "/p")


@pytest.mark.parametrize(
    "event",
    [E.NONE, E.DATA_WATCH_REMOVED, E.CHILD_WATCH_REMOVED, E.PERSISTENT_WATCH_REMOVED],
)
def test_client_local_events_consume_no_one_shot_watch(event: EventType) -> None:
    reg = _full_registry()
    reg.fire(event, "/a/b")
    for kind in (K.DATA, K.EXIST, K.CHILD):
        assert reg.has(kind, "/a/b")


def test_remove_and_clear() -> None:
    reg: WatchRegistry[str] = WatchRegistry()
    reg.add(K.DATA, "/x", "a")
    reg.add(K.DATA, "/x", "b")
    assert reg.remove(K.DATA, "/x", "a") is False  # "b" still watches
    assert reg.remove(K.DATA, "/x", "b") is True
    assert not reg.has(K.DATA, "/x")
    assert reg.remove(K.DATA, "/nothing", "a") is True
    reg.add(K.CHILD, "/y", "c")
    reg.add(K.PERSISTENT, "/z", "d")
    assert sorted(reg.clear()) == ["c", "d"]
    assert reg.count() == 0
    assert reg.set_watches_requests(0) == []


def test_is_one_shot() -> None:
    reg: WatchRegistry[str] = WatchRegistry()
    assert [k for k in K if reg.is_one_shot(k)] == [K.DATA, K.EXIST, K.CHILD]


def test_set_watches_request_kinds() -> None:
    reg: WatchRegistry[str] = WatchRegistry()
    reg.add(K.DATA, "/d", "w")
    reg.add(K.EXIST, "/e", "w")
    reg.add(K.CHILD, "/c", "w")
    (only,) = reg.set_watches_requests(7)
    assert only == SetWatches(7, ["/d"], ["/e"], ["/c"])
    reg.add(K.PERSISTENT_RECURSIVE, "/r", "w")
    (only2,) = reg.set_watches_requests(8)
    assert only2 == SetWatches2(8, ["/d"], ["/e"], ["/c"], [], ["/r"])


@pytest.mark.parametrize(
    "request_, kind",
    [
        (GetData("/a", watch=True), K.DATA),
        (Exists("/a", watch=True), K.EXIST),
        (GetChildren("/a", watch=True), K.CHILD),
        (GetChildren2("/a", watch=True), K.CHILD),
        (GetData("/a"), None),
        (Exists("/a"), None),
        (GetChildren("/a"), None),
        (AddWatch("/a", 0), K.PERSISTENT),
        (AddWatch("/a", 1), K.PERSISTENT_RECURSIVE),
    ],
)
def test_requests_name_the_table_they_arm(request_: object, kind: WatchKind | None) -> None:
    assert request_.watch_kind is kind  # type: ignore[attr-defined]
