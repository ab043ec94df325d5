"""What a TreeCache or NodeCache stream yields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..types import Stat

__all__ = ("NodeAdded", "NodeRemoved", "NodeUpdated", "Resynced", "TreeChange")


@dataclass(frozen=True, slots=True)
class NodeAdded:
    """A node appeared in the view (created, or re-created: a new czxid)."""

    path: str
    data: bytes
    stat: Stat


@dataclass(frozen=True, slots=True)
class NodeUpdated:
    """A node's data changed in place (a new mzxid, same czxid)."""

    path: str
    data: bytes
    stat: Stat
    old_data: bytes
    old_stat: Stat


@dataclass(frozen=True, slots=True)
class NodeRemoved:
    """A node left the view; ``data`` and ``stat`` are the last known."""

    path: str
    data: bytes
    stat: Stat


@dataclass(frozen=True, slots=True)
class Resynced:
    """The whole view (path → (data, Stat)), after a full re-read, and first of all for a
    new subscriber or one that fell too far behind.

    Replace what you keep with ``nodes``. ``stale`` is True when the view is not known to
    be current (no session, served from a snapshot, not loaded yet, or degraded by a
    limit).
    """

    nodes: Mapping[str, tuple[bytes, Stat]]
    stale: bool = False


TreeChange = NodeAdded | NodeRemoved | NodeUpdated | Resynced
