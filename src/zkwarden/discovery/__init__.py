"""Service registration and discovery on ZooKeeper.

The pure parts live here: :class:`ServiceInstance`, the registry layouts in
:mod:`zkwarden.discovery.formats` (Curator, rpcx, Dubbo), the provider strategies in
:mod:`zkwarden.discovery.strategies` and the disk snapshot in
:mod:`zkwarden.discovery.snapshot`. Nothing here does ZooKeeper I/O.
"""

from __future__ import annotations

from .formats import CuratorFormat, DubboFormat, RegistryFormat, RpcxFormat, get_format
from .instance import ServiceInstance, ServiceType
from .snapshot import Snapshot, read_snapshot, write_snapshot
from .strategies import ErrorTracker, Provider, Strategy, make_strategy

__all__ = (
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
