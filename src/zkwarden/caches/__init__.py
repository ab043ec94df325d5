"""Caches of any subtree (:class:`TreeCache`) or of one node (:class:`NodeCache`).

    from zkwarden.caches import TreeCache, NodeAdded, NodeRemoved, NodeUpdated, Resynced

    tree = await TreeCache(zk, "/config").start()
    tree.get("/config/db")            # (data, Stat) or None, from memory
    async for change in tree.changes():
        ...                           # Resynced (the view now), then every change

One implementation of the cache rules (one persistent recursive watch, or one-shot
watches armed by every read on servers without addWatch: ``watch_mode``; one read per
created or changed node, full re-read plus diff plus ``Resynced`` after every reconnect
and overflow, czxid/mzxid, stale through outages, optional snapshot, bounded memory);
the discovery ServiceCache is built on it. Blocking forms: :mod:`zkwarden.caches.sync`.
"""

from __future__ import annotations

from ._feed import DEFAULT_MAX_QUEUED_CHANGES
from .events import NodeAdded, NodeRemoved, NodeUpdated, Resynced, TreeChange
from .node import NodeCache
from .tree import DEFAULT_MAX_NODES, TreeCache, WatchMode

__all__ = (
    "TreeCache",
    "NodeCache",
    "NodeAdded",
    "NodeRemoved",
    "NodeUpdated",
    "Resynced",
    "TreeChange",
    "DEFAULT_MAX_NODES",
    "DEFAULT_MAX_QUEUED_CHANGES",
    "WatchMode",
)
