"""zkwarden: a ZooKeeper client for Python that keeps working through faults."""

from __future__ import annotations

from . import errors
from ._aio.client import AsyncClient
from .sasl import SASLOptions
from .sync import Client
from .types import (
    ACL,
    ClientState,
    ClientStateChange,
    CreateMode,
    EventType,
    Id,
    KeeperState,
    Perms,
    Stat,
    WatcherType,
    WatchEvent,
)

__version__ = "0.1.0"

__all__ = (
    "ACL",
    "AsyncClient",
    "Client",
    "ClientState",
    "ClientStateChange",
    "CreateMode",
    "EventType",
    "Id",
    "KeeperState",
    "Perms",
    "SASLOptions",
    "Stat",
    "WatchEvent",
    "WatcherType",
    "errors",
    "__version__",
)
