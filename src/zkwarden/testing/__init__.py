"""Test helpers: real ZooKeeper servers and ensembles, and a fault-injecting proxy.

``ZooKeeperServer`` and ``ZooKeeperEnsemble`` run Apache ZooKeeper itself (Debian's
``zookeeper`` package or ``$ZOOKEEPER_HOME``); ``FaultProxy`` sits between a client and
them.  The pytest fixtures live in :mod:`zkwarden.testing.pytest_plugin`.  Nothing here
imports pytest.
"""

from __future__ import annotations

from ._errors import (
    FourLetterWordError,
    HarnessError,
    JavaNotFoundError,
    ProxyError,
    QuorumError,
    ServerStartError,
    ZooKeeperNotFoundError,
)
from ._fourlw import four_letter_word
from ._process import free_port
from .ensemble import ZooKeeperEnsemble
from .expire import expire_session, expire_session_async
from .proxy import FaultProxy, ProxyStats
from .server import ZooKeeperServer, find_java, find_zookeeper_classpath

__all__ = (
    "FaultProxy",
    "FourLetterWordError",
    "HarnessError",
    "JavaNotFoundError",
    "ProxyError",
    "ProxyStats",
    "QuorumError",
    "ServerStartError",
    "ZooKeeperEnsemble",
    "ZooKeeperNotFoundError",
    "ZooKeeperServer",
    "find_java",
    "find_zookeeper_classpath",
    "expire_session",
    "expire_session_async",
    "four_letter_word",
    "free_port",
)
