"""Connect string parsing: ``"h1:2181,h2:2181,[::1]:2181/chroot"`` → hosts + chroot."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from . import paths
from .errors import ConfigurationError, InvalidPathError

__all__ = ("HostPort", "ConnectString", "parse_connect_string", "DEFAULT_PORT")

DEFAULT_PORT = 2181

# A DNS name (RFC 1123 labels; "_" too, which container and service-discovery names use)
# or a dotted IPv4 address. Anything else (a space, a stray ":", "/") is a typo that would
# otherwise surface only as "cannot reach ZooKeeper" after the connect timeout.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


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
    _check_host(host, item)
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()):
            raise ConfigurationError(f"bad port in {item!r}")
        port = int(port_text)
        if not 0 < port < 65536:
            raise ConfigurationError(f"port out of range in {item!r}")
    else:
        port = DEFAULT_PORT
    return HostPort(host, port)


def _check_host(host: str, item: str) -> None:
    """Refuse what cannot be a server address: an IPv6 literal is checked as one (so
    ``garbage::`` is not taken for an address), a name must be a valid DNS name."""
    if ":" in host:
        address, _, zone = host.partition("%")
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            raise ConfigurationError(f"bad IPv6 address {host!r} in {item!r}") from None
        if "%" in host and not zone:
            raise ConfigurationError(f"empty IPv6 zone in {item!r}")
        return
    if len(host) > 253 or not (host.isascii() and _HOST_NAME.fullmatch(host)):
        raise ConfigurationError(
            f"bad host name {host!r} in {item!r} (letters, digits, '-', '.' only)"
        )


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
