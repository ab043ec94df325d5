"""Registry layouts: where instances live in ZooKeeper and what their nodes hold.

``get_format("curator" | "rpcx" | "dubbo")`` gives a format object; registries and discovery
take either a name or a :class:`RegistryFormat` instance (for options such as
``CuratorFormat(payload_class=...)`` or ``DubboFormat(category="consumers")``).
"""

from __future__ import annotations

from collections.abc import Callable

from ...errors import ConfigurationError
from .base import RegistryFormat
from .curator import CuratorFormat
from .dubbo import DubboFormat
from .rpcx import RpcxFormat

__all__ = (
    "RegistryFormat",
    "CuratorFormat",
    "RpcxFormat",
    "DubboFormat",
    "get_format",
    "format_names",
)

_FACTORIES: dict[str, Callable[[], RegistryFormat]] = {
    CuratorFormat.name: CuratorFormat,
    RpcxFormat.name: RpcxFormat,
    DubboFormat.name: DubboFormat,
}


def format_names() -> tuple[str, ...]:
    """The names :func:`get_format` accepts."""
    return tuple(sorted(_FACTORIES))


def get_format(name: str | RegistryFormat) -> RegistryFormat:
    """The registry format called ``name`` (a new object), or ``name`` itself if it is one.

    Raises:
        ConfigurationError: no format has that name.
    """
    if isinstance(name, RegistryFormat):
        return name
    factory = _FACTORIES.get(name) if isinstance(name, str) else None
    if factory is None:
        raise ConfigurationError(
            f"unknown registry format {name!r}; known formats: {', '.join(format_names())}"
        )
    return factory()
