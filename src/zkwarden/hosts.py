"""Connect string parsing: ``"h1:2181,h2:2181,[::1]:2181/chroot"`` → hosts + chroot."""

from __future__ import annotations

from dataclasses import dataclass

from . import paths
from .errors import ConfigurationError, InvalidPathError

__all__ = ("HostPort", "ConnectString", "parse_connect_string", "DEFAULT_PORT")

DEFAULT_PORT = 2181


@dataclass(frozen=True, slots=True)
class HostPort:
    """One server address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ConnectString:
    """Parsed connect string: the servers, in the given order, and the chroot ("" if none)."""

    hosts: tuple[HostPort, ...]
    chroot: str

    def __str__(self) -> str:
        return ",".join(str(h) for h in self.hosts) + self.chroot


def _parse_host(item: str) -> HostPort:
    item = item.strip()
    if not item:
        raise ConfigurationError("empty host in connect string")
    if item.startswith("["):
        end = item.find("]")
        if end < 0:
            raise ConfigurationError(f"unterminated IPv6 address: {item!r}")
        host, rest = item[1:end], item[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ConfigurationError(f"bad host: {item!r}")
        port_text = rest[1:] if rest else ""
    elif item.count(":") == 1:
        host, port_text = item.split(":")
    elif ":" in item:  # bare IPv6 address without brackets and without port
        host, port_text = item, ""
    else:
        host, port_text = item, ""
    if not host:
        raise ConfigurationError(f"empty host name in {item!r}")
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()):
            raise ConfigurationError(f"bad port in {item!r}")
        port = int(port_text)
        if not 0 < port < 65536:
            raise ConfigurationError(f"port out of range in {item!r}")
    else:
        port = DEFAULT_PORT
    return HostPort(host, port)


def parse_connect_string(text: str) -> ConnectString:
    """Parse a ZooKeeper connect string.

    Raises:
        ConfigurationError: empty string, bad host, bad port, or invalid chroot.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError("connect string must be a non-empty str")
    text = text.strip()
    slash = text.find("/")
    hosts_part, chroot = (text, "") if slash < 0 else (text[:slash], text[slash:])
    if chroot == "/":
        chroot = ""
    if chroot:
        try:
            paths.validate(chroot)
        except InvalidPathError as exc:
            raise ConfigurationError(f"invalid chroot {chroot!r}: {exc}") from exc
    hosts = tuple(_parse_host(h) for h in hosts_part.split(","))
    return ConnectString(hosts, chroot)
