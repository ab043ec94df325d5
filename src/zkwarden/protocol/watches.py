"""The client-side watch registry, and the SetWatches frames that restore it.

Watchers are opaque objects (the I/O layer decides what they are). The registry maps
server paths to watchers per table, answers "which watchers does this event fire" (with
the rules of the Java client's ZKWatchManager), removes one-shot watchers when they fire,
and builds SetWatches/SetWatches2 requests after a reconnect.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from ..types import EventType
from .ops import Request, SetWatches, SetWatches2, WatchKind

__all__ = ("WatchRegistry", "SET_WATCHES_MAX_BYTES")

W = TypeVar("W")

#: The Java client's SET_WATCHES_MAX_LENGTH: batches stay under 128 KiB of paths.
SET_WATCHES_MAX_BYTES = 128 * 1024

# Which tables an event fires (one-shot tables lose the watcher when fired).
_FIRES: dict[EventType, tuple[WatchKind, ...]] = {
    EventType.NODE_CREATED: (WatchKind.DATA, WatchKind.EXIST),
    EventType.NODE_DATA_CHANGED: (WatchKind.DATA, WatchKind.EXIST),
    EventType.NODE_CHILDREN_CHANGED: (WatchKind.CHILD,),
    EventType.NODE_DELETED: (WatchKind.DATA, WatchKind.EXIST, WatchKind.CHILD),
}
_ONE_SHOT = (WatchKind.DATA, WatchKind.EXIST, WatchKind.CHILD)


def _ancestors(path: str) -> Iterator[str]:
    """``/a/b/c`` → ``/a/b/c``, ``/a/b``, ``/a``, ``/``."""
    yield path
    while path != "/":
        path = path.rpartition("/")[0] or "/"
        yield path


class WatchRegistry(Generic[W]):
    """Watchers per (kind, server path). Not thread-safe: owned by the event loop."""

    def __init__(self) -> None:
        self._tables: dict[WatchKind, dict[str, list[W]]] = {k: {} for k in WatchKind}

    def add(self, kind: WatchKind, path: str, watcher: W) -> None:
        watchers = self._tables[kind].setdefault(path, [])
        if watcher not in watchers:
            watchers.append(watcher)

    def remove(self, kind: WatchKind, path: str, watcher: W) -> bool:
        """Forget one watcher; True when no watcher of that kind is left on the path."""
        table = self._tables[kind]
        watchers = table.get(path)
        if watchers is None:
            return True
        if watcher in watchers:
            watchers.remove(watcher)
        if not watchers:
            del table[path]
            return True
        return False

    def holds(self, kind: WatchKind, path: str, watcher: W) -> bool:
        """True when ``watcher`` is registered for ``kind`` on ``path``."""
        watchers = self._tables[kind].get(path)
        return watchers is not None and watcher in watchers

    def has(self, kind: WatchKind, path: str) -> bool:
        return path in self._tables[kind]

    def fire(self, event_type: EventType, path: str) -> list[W]:
        """Return the watchers an event fires; one-shot ones are removed."""
        fired: list[W] = []
        tables = self._tables
        for kind in _FIRES.get(event_type, ()):
            table = tables[kind]
            if table:
                watchers = table.pop(path, None)
                if watchers:
                    fired.extend(w for w in watchers if w not in fired)
        persistent = tables[WatchKind.PERSISTENT]
        if persistent:
            watchers = persistent.get(path)
            if watchers:
                fired.extend(w for w in watchers if w not in fired)
        recursive_table = tables[WatchKind.PERSISTENT_RECURSIVE]
        # Recursive watches never get NodeChildrenChanged (the server does not send it
        # to them; a same-path persistent watch may still trigger one).
        if recursive_table and event_type != EventType.NODE_CHILDREN_CHANGED:
            get = recursive_table.get
            ancestor = path
            while True:  # path, its parent, ..., "/" (as _ancestors, without a generator)
                watchers = get(ancestor)
                if watchers:
                    for w in watchers:
                        if w not in fired:
                            fired.append(w)
                if ancestor == "/":
                    break
                ancestor = ancestor.rpartition("/")[0] or "/"
        return fired

    def all_watchers(self) -> list[W]:
        """Every watcher once, in the order first found. By identity: a membership test
        on the list would make closing a client with N watches O(N²) (121 s at 100,000)."""
        seen: dict[int, W] = {}
        for table in self._tables.values():
            for watchers in table.values():
                for w in watchers:
                    seen.setdefault(id(w), w)
        return list(seen.values())

    def clear(self) -> list[W]:
        """Drop everything (session expired or client closed); return who was watching."""
        watchers = self.all_watchers()
        for table in self._tables.values():
            table.clear()
        return watchers

    def paths(self, kind: WatchKind) -> list[str]:
        return list(self._tables[kind])

    def count(self) -> int:
        return sum(len(t) for t in self._tables.values())

    def set_watches_requests(
        self, relative_zxid: int, max_frame: int | None = None
    ) -> list[Request]:
        """Requests restoring every watch, batched under SET_WATCHES_MAX_BYTES of paths.

        Sizes are counted in encoded bytes (UTF-8 plus each string's 4-byte length), and a
        batch also stays within ``max_frame`` (the largest frame the client may send), so
        a batch never fails the send-size check. Uses SetWatches (101) when there are no
        persistent watches, so servers older than 3.6 keep working; SetWatches2 (105)
        otherwise.
        """
        kinds = list(WatchKind)
        pending = {k: self.paths(k) for k in kinds}
        has_persistent = bool(pending[WatchKind.PERSISTENT]) or bool(
            pending[WatchKind.PERSISTENT_RECURSIVE]
        )
        limit = SET_WATCHES_MAX_BYTES
        if max_frame is not None:
            # header (xid, opcode), relativeZxid, and one vector length per table
            limit = max(1, min(limit, max_frame - 8 - 8 - 4 * len(kinds)))
        requests: list[Request] = []
        while any(pending.values()):
            batch: dict[WatchKind, list[str]] = {k: [] for k in kinds}
            size = 0
            full = False
            for k in kinds:
                src = pending[k]
                while src:
                    cost = len(src[-1].encode()) + 4
                    if size + cost > limit and size > 0:
                        full = True
                        break
                    # (a single path over the limit goes alone)
                    batch[k].append(src.pop())
                    size += cost
                if full:
                    break
            if has_persistent:
                requests.append(
                    SetWatches2(
                        relative_zxid,
                        batch[WatchKind.DATA],
                        batch[WatchKind.EXIST],
                        batch[WatchKind.CHILD],
                        batch[WatchKind.PERSISTENT],
                        batch[WatchKind.PERSISTENT_RECURSIVE],
                    )
                )
            else:
                requests.append(
                    SetWatches(
                        relative_zxid,
                        batch[WatchKind.DATA],
                        batch[WatchKind.EXIST],
                        batch[WatchKind.CHILD],
                    )
                )
        return requests

    def is_one_shot(self, kind: WatchKind) -> bool:
        return kind in _ONE_SHOT
