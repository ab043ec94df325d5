"""Watch events built for speed: every notification needs one.

Dict lookups instead of Enum calls, and WatchEvent (a frozen dataclass of 7 fields) built
through its slots instead of its ``__init__``.
"""

from __future__ import annotations

import dataclasses

from ..types import EventType, KeeperState, WatchEvent

__all__ = ("EVENT_TYPES", "KEEPER_STATES", "watch_event")

EVENT_TYPES: dict[int, EventType] = {int(e): e for e in EventType}
KEEPER_STATES: dict[int, KeeperState] = {int(k): k for k in KeeperState}
_WATCH_EVENT_FIELDS = ("type", "state", "path", "zxid", "data", "stat", "children")
_WATCH_EVENT_FAST = tuple(f.name for f in dataclasses.fields(WatchEvent)) == _WATCH_EVENT_FIELDS
_WATCH_EVENT_SLOTS = tuple(getattr(WatchEvent, n).__set__ for n in _WATCH_EVENT_FIELDS)


def watch_event(etype: EventType, state: KeeperState, path: str, zxid: int) -> WatchEvent:
    """``WatchEvent(etype, state, path, zxid)``, the other fields at their defaults."""
    if not _WATCH_EVENT_FAST:  # WatchEvent grew a field: take the slow, always right way
        return WatchEvent(etype, state, path, zxid)
    event: WatchEvent = object.__new__(WatchEvent)
    set_type, set_state, set_path, set_zxid, set_data, set_stat, set_children = (
        _WATCH_EVENT_SLOTS
    )
    set_type(event, etype)
    set_state(event, state)
    set_path(event, path)
    set_zxid(event, zxid)
    set_data(event, None)
    set_stat(event, None)
    set_children(event, None)
    return event
