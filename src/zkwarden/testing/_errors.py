"""Errors of the zkwarden.testing harness (all re-exported by :mod:`zkwarden.testing`)."""

from __future__ import annotations

from zkwarden.errors import ConfigurationError, ZooKeeperError

__all__ = (
    "FourLetterWordError",
    "HarnessError",
    "JavaNotFoundError",
    "ProxyError",
    "QuorumError",
    "ServerStartError",
    "ZooKeeperNotFoundError",
)


class HarnessError(ZooKeeperError):
    """A failure of the zkwarden.testing harness itself (server, ensemble or proxy)."""


class ZooKeeperNotFoundError(ConfigurationError):
    """The ZooKeeper jars could not be found on this machine."""


class JavaNotFoundError(ZooKeeperNotFoundError):
    """No ``java`` executable was found (neither ``$JAVA_HOME/bin/java`` nor on ``PATH``)."""


class ServerStartError(HarnessError):
    """The ZooKeeper JVM exited or did not answer in time; the message ends with its log."""


class FourLetterWordError(HarnessError):
    """A four-letter-word command got no answer, or the server refused to run it."""


class QuorumError(HarnessError):
    """An ensemble has no quorum or no leader within the time allowed."""


class ProxyError(HarnessError):
    """The fault proxy could not start, listen again, or carry out a control command."""
