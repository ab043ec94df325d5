"""The contract every registry layout implements, and what they share.

A *format* knows where the instances of a service live under a base path, what an
instance's node is called, and how its bytes look. It never does I/O: the registry and the
discovery code read and write nodes and ask the format what they mean.

Decoding is the trust boundary. Nodes are written by other programs (Java, Go, humans
with ``zkCli``); :meth:`RegistryFormat.decode` returns ``None`` and logs a warning for data
it cannot read, and never raises. The same bad node read again (every cache refresh does)
is logged at debug level only, so one broken node cannot flood the log.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import threading
from collections import OrderedDict
from typing import ClassVar

from ... import paths
from ...errors import ConfigurationError, InvalidPathError
from ..instance import ServiceInstance

__all__ = ("RegistryFormat", "log")

log = logging.getLogger("zkwarden.discovery")

# How many distinct bad nodes to remember for log de-duplication.
_WARNED_LIMIT = 1024


class RegistryFormat(abc.ABC):
    """A registry layout: paths, node names and node bytes for service instances."""

    #: The name :func:`~zkwarden.discovery.formats.get_format` knows this format by.
    name: ClassVar[str]
    #: The base path the ecosystem uses when none is configured.
    default_base_path: ClassVar[str]

    def __init__(self) -> None:
        self._warned: OrderedDict[bytes, None] = OrderedDict()
        self._warned_lock = threading.Lock()

    # --- layout -------------------------------------------------------------------------

    def service_path(self, base_path: str, name: str) -> str:
        """The node whose children are the instances of service ``name``.

        Raises:
            InvalidPathError: ``base_path`` is not a valid absolute path.
            ConfigurationError: ``name`` cannot be a node name in this layout.
        """
        paths.validate(base_path)
        return paths.join(base_path, self.service_node_name(name))

    def service_node_name(self, name: str) -> str:
        """The node name of service ``name`` directly under the base path.

        Raises:
            ConfigurationError: ``name`` cannot be a node name in this layout.
        """
        return _checked_node_name("service name", name)

    def service_name(self, node_name: str) -> str | None:
        """The service a child of the base path stands for, or ``None`` if it is not one.

        Never raises.
        """
        return node_name or None

    @abc.abstractmethod
    def instance_node_name(self, instance: ServiceInstance) -> str:
        """The node name of ``instance`` under its service path (before any sequence suffix).

        Raises:
            ConfigurationError: the instance cannot be expressed in this layout.
        """

    def instance_path(self, base_path: str, instance: ServiceInstance) -> str:
        """The full path of ``instance``'s node.

        Raises:
            InvalidPathError: ``base_path`` is not a valid absolute path.
            ConfigurationError: the instance cannot be expressed in this layout.
        """
        return paths.join(
            self.service_path(base_path, instance.name), self.instance_node_name(instance)
        )

    def ephemeral(self, instance: ServiceInstance) -> bool:
        """True when ``instance``'s node must be ephemeral (tied to the session)."""
        return instance.service_type.ephemeral

    def sequential(self, instance: ServiceInstance) -> bool:
        """True when ZooKeeper must append a sequence number to the node name."""
        return instance.service_type.sequential

    # --- bytes --------------------------------------------------------------------------

    @abc.abstractmethod
    def encode(self, instance: ServiceInstance) -> bytes:
        """The node data for ``instance``.

        Raises:
            ConfigurationError: the instance cannot be expressed in this format.
        """

    @abc.abstractmethod
    def decode(self, name: str, node_name: str, data: bytes) -> ServiceInstance | None:
        """Read the instance node ``node_name`` of service ``name`` holding ``data``.

        Returns ``None``, with a warning in the ``zkwarden.discovery`` log, for empty,
        malformed or foreign data. Never raises.
        """

    def canonical(self, instance: ServiceInstance) -> ServiceInstance:
        """``instance`` as a reader of this format sees it after it is written.

        Formats drop what they cannot carry and derive what their layout fixes (the id, for
        layouts that name nodes by address), so
        ``decode(name, instance_node_name(i), encode(i)) == canonical(i)``.

        Raises:
            ConfigurationError: the instance cannot be expressed in this format.
        """
        return instance

    # --- helpers for implementations ----------------------------------------------------

    def _reject(self, name: str, node_name: str, data: bytes, reason: str) -> None:
        """Log that a node was skipped: a warning the first time, debug after that."""
        digest = hashlib.blake2b(
            b"\0".join(
                (name.encode("utf-8", "replace"), node_name.encode("utf-8", "replace"), data)
            ),
            digest_size=16,
        ).digest()
        with self._warned_lock:
            seen = digest in self._warned
            if seen:
                self._warned.move_to_end(digest)
            else:
                self._warned[digest] = None
                if len(self._warned) > _WARNED_LIMIT:
                    self._warned.popitem(last=False)
        level = logging.DEBUG if seen else logging.WARNING
        log.log(
            level,
            "skipping %s instance node %r of service %r (%d bytes): %s",
            self.name,
            node_name,
            name,
            len(data),
            reason,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _checked_node_name(what: str, value: str) -> str:
    if not isinstance(value, str) or not value or "/" in value:
        raise ConfigurationError(f"{what} is not a valid node name: {value!r}")
    try:
        paths.validate("/" + value)
    except InvalidPathError as exc:
        raise ConfigurationError(f"{what} is not a valid node name: {value!r}") from exc
    return value
