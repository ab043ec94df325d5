"""Service registration and discovery on ZooKeeper.

:class:`ServiceRegistry` registers instances and keeps them registered (a reconcile
loop); :class:`ServiceDiscovery` reads them, and its :class:`ServiceCache` follows them
live. :class:`ServiceInstance`, the registry layouts in :mod:`zkwarden.discovery.formats`
(Curator, rpcx, Dubbo), the provider strategies and the disk snapshot are pure.
"""

from __future__ import annotations

from .cache import Added, CacheChange, Removed, Resynced, ServiceCache, Updated
from .discovery import ServiceDiscovery
from .formats import CuratorFormat, DubboFormat, RegistryFormat, RpcxFormat, get_format
from .instance import ServiceInstance, ServiceType
from .registry import ServiceRegistry
from .snapshot import Snapshot, read_snapshot, write_snapshot
from .strategies import ErrorTracker, Provider, Strategy, make_strategy

__all__ = (
    "ServiceRegistry",
    "ServiceDiscovery",
    "ServiceCache",
    "Added",
    "Removed",
    "Updated",
    "Resynced",
    "CacheChange",
    "ServiceInstance",
    "ServiceType",
    "RegistryFormat",
    "CuratorFormat",
    "RpcxFormat",
    "DubboFormat",
    "get_format",
    "Provider",
    "Strategy",
    "ErrorTracker",
    "make_strategy",
    "Snapshot",
    "read_snapshot",
    "write_snapshot",
)
