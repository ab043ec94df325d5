"""rpcx's ZooKeeper registry layout (``rpcxio/rpcx-zookeeper``, formerly
``smallnest/rpcx/serverplugin/zookeeper.go``).

Facts (read from ``rpcxio/rpcx-zookeeper`` and ``rpcxio/libkv`` v0.5.1):

- A server registers service ``<name>`` at ``<base>/<name>/<network>@<address>``, e.g.
  ``/rpcx_test/Arith/tcp@127.0.0.1:8972``. The base node holds ``rpcx_path`` and the
  service node holds the service name; the instance node holds the *metadata* string the
  server was registered with, URL-query encoded (``group=test&tps=100&weight=10``), or
  nothing.
- The instance node is ephemeral when the plugin has an ``UpdateInterval`` (libkv creates
  ephemeral nodes for puts with a TTL) and persistent otherwise; the data does not say
  which.
- Clients parse the metadata with Go's ``url.ParseQuery`` and, only when that succeeds:
  drop servers with ``state=inactive``, keep only servers whose ``group`` values include
  the client's group, and take ``weight`` (``strconv.Atoi``, default 1) for weighted
  selection. A key without ``@`` means network ``tcp``.

Mapping: network <-> ``protocol``, ``weight`` <-> ``weight``, ``state=inactive`` <->
``enabled=False``, the ``group`` values <-> ``tags``, ``zone`` <-> ``zone`` (a zkwarden
convention rpcx ignores), every other key <-> ``metadata`` (first value). The instance id
is the node name. Payload, SSL port, URI spec and registration time are not carried.
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import quote_plus

from ...errors import ConfigurationError
from ..instance import ServiceInstance, ServiceType
from .base import RegistryFormat, _checked_node_name

__all__ = ("RpcxFormat",)

# Metadata keys the format maps to instance fields; user metadata may not use them.
_RESERVED = frozenset({"weight", "state", "group", "zone"})

_HEX = "0123456789abcdefABCDEF"


def _go_query_escape(text: str) -> str:
    # Go's url.QueryEscape keeps A-Z a-z 0-9 - _ . ~ and writes a space as "+", which is
    # exactly Python's quote_plus with nothing extra marked safe.
    return quote_plus(text, safe="")


def _go_query_unescape(text: str) -> str | None:
    """Go's url.QueryUnescape: strict about ``%`` escapes; ``None`` where Go errors."""
    if "%" not in text:
        return text.replace("+", " ")
    out = bytearray()
    i = 0
    raw = text.encode("utf-8", "surrogateescape")
    n = len(raw)
    while i < n:
        byte = raw[i]
        if byte == 0x25:  # %
            if i + 2 >= n:
                return None
            hi, lo = chr(raw[i + 1]), chr(raw[i + 2])
            if hi not in _HEX or lo not in _HEX:
                return None
            out.append(int(hi + lo, 16))
            i += 3
        elif byte == 0x2B:  # +
            out.append(0x20)
            i += 1
        else:
            out.append(byte)
            i += 1
    # Go strings may hold invalid UTF-8; ours cannot.
    return out.decode("utf-8", "replace")


def parse_go_query(query: str) -> tuple[dict[str, list[str]], bool]:
    """Go's ``url.ParseQuery``: (values, ok). ``ok`` is False where Go returns an error.

    Like Go, pairs that fail to parse are skipped and the rest are kept. Never raises.
    """
    values: dict[str, list[str]] = {}
    ok = True
    for pair in query.split("&"):
        if ";" in pair:
            # Go >= 1.17 rejects ";" as a separator.
            ok = False
            continue
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition("=")
        key = _go_query_unescape(raw_key)
        value = _go_query_unescape(raw_value)
        if key is None or value is None:
            ok = False
            continue
        values.setdefault(key, []).append(value)
    return values, ok


def encode_go_query(values: dict[str, list[str]]) -> str:
    """Go's ``url.Values.Encode``: keys sorted, values in order. Never raises."""
    parts: list[str] = []
    for key in sorted(values):
        escaped = _go_query_escape(key)
        for value in values[key]:
            parts.append(f"{escaped}={_go_query_escape(value)}")
    return "&".join(parts)


def _split_host_port(address: str) -> tuple[str, int | None] | None:
    """``host:port`` (``[v6]:port``) -> (host, port); a bare host has no port."""
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            return None
        host, rest = address[1:end], address[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            return None
        port_text = rest[1:]
    else:
        host, sep, port_text = address.rpartition(":")
        if not sep:
            return address, None
        if ":" in host:
            # An unbracketed IPv6 address without a port.
            return address, None
    if not port_text.isascii() or not port_text.isdigit():
        return None
    port = int(port_text)
    if port > 65535:
        return None
    return host, port


def _join_host_port(host: str, port: int) -> str:
    # Like Go's net.JoinHostPort: IPv6 literals are bracketed.
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


class RpcxFormat(RegistryFormat):
    """rpcx's ``<base>/<service>/<network>@<host:port>`` layout with query-string metadata.

    ``network`` is used for instances whose ``protocol`` is ``None``.
    """

    name: ClassVar[str] = "rpcx"
    default_base_path: ClassVar[str] = "/rpcx_test"

    def __init__(self, *, network: str = "tcp") -> None:
        super().__init__()
        if not network or "@" in network or "/" in network:
            raise ConfigurationError(f"invalid rpcx network: {network!r}")
        self.network = network

    def __repr__(self) -> str:
        return f"RpcxFormat(network={self.network!r})"

    def _network(self, instance: ServiceInstance) -> str:
        network = instance.protocol if instance.protocol is not None else self.network
        if "@" in network:
            raise ConfigurationError(f"rpcx network must not contain '@': {network!r}")
        return network

    def _check(self, instance: ServiceInstance) -> None:
        if instance.service_type.sequential:
            raise ConfigurationError(
                "the rpcx layout names nodes by address; DYNAMIC_SEQUENTIAL is not supported"
            )
        if (
            not instance.address
            or instance.port is None
            or any(ch in instance.address for ch in "[]")
        ):
            raise ConfigurationError(
                "an rpcx instance needs an address (without '[' or ']') and a port: "
                f"{instance.name}/{instance.id}"
            )
        reserved = _RESERVED.intersection(instance.metadata)
        if reserved:
            raise ConfigurationError(
                f"metadata key(s) {sorted(reserved)} are rpcx fields; use the instance fields"
            )

    def instance_node_name(self, instance: ServiceInstance) -> str:
        """``<network>@<host>:<port>``, e.g. ``tcp@10.0.0.5:8972``.

        Raises:
            ConfigurationError: no address or port, or a name rpcx could not use.
        """
        self._check(instance)
        assert instance.address is not None and instance.port is not None
        node = f"{self._network(instance)}@{_join_host_port(instance.address, instance.port)}"
        return _checked_node_name("rpcx node name", node)

    def encode(self, instance: ServiceInstance) -> bytes:
        """The metadata query string, keys sorted like Go's ``url.Values.Encode``.

        Raises:
            ConfigurationError: the instance cannot be expressed in the rpcx layout.
        """
        self._check(instance)
        values: dict[str, list[str]] = {key: [value] for key, value in instance.metadata.items()}
        if instance.weight is not None:
            values["weight"] = [str(instance.weight)]
        if not instance.enabled:
            values["state"] = ["inactive"]
        if instance.tags:
            values["group"] = list(instance.tags)
        if instance.zone is not None:
            values["zone"] = [instance.zone]
        return encode_go_query(values).encode("utf-8")

    def decode(self, name: str, node_name: str, data: bytes) -> ServiceInstance | None:
        """Read an rpcx instance node (see :meth:`RegistryFormat.decode`). Never raises."""
        network, at, address = node_name.partition("@")
        if not at:
            # rpcx's splitNetworkAndAddress: no "@" means tcp.
            network, address = "tcp", node_name
        split = _split_host_port(address) if address else None
        if split is None or not split[0] or not network:
            self._reject(name, node_name, data, "node name is not <network>@<host>:<port>")
            return None
        host, port = split
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._reject(name, node_name, data, f"metadata is not UTF-8: {exc}")
            return None

        values, ok = parse_go_query(text)
        metadata = {k: v[0] for k, v in values.items() if k and k not in _RESERVED}
        zone_values = values.get("zone")
        zone = zone_values[0] if zone_values and zone_values[0] else None
        enabled = True
        tags: tuple[str, ...] = ()
        weight: int | None = None
        if ok:
            # rpcx applies state, group and weight only when the whole string parses.
            enabled = values.get("state", [""])[0] != "inactive"
            tags = tuple(tag for tag in values.get("group", ()) if tag)
            weight = _go_atoi(values.get("weight", [""])[0])
        try:
            return ServiceInstance(
                name,
                id=node_name,
                address=host,
                port=port,
                registration_time=0.0,
                service_type=ServiceType.DYNAMIC,
                enabled=enabled,
                weight=weight,
                zone=zone,
                tags=tags,
                metadata=metadata,
                protocol=network,
            )
        except ConfigurationError as exc:
            self._reject(name, node_name, data, str(exc))
            return None

    def canonical(self, instance: ServiceInstance) -> ServiceInstance:
        """The instance as rpcx readers see it: id = node name, no payload/SSL port/URI spec.

        Raises:
            ConfigurationError: the instance cannot be expressed in the rpcx layout.
        """
        node_name = self.instance_node_name(instance)
        return ServiceInstance(
            instance.name,
            id=node_name,
            address=instance.address,
            port=instance.port,
            registration_time=0.0,
            service_type=ServiceType.DYNAMIC,
            enabled=instance.enabled,
            weight=instance.weight,
            zone=instance.zone,
            tags=instance.tags,
            metadata=instance.metadata,
            protocol=self._network(instance),
        )


def _go_atoi(text: str) -> int | None:
    """Go's strconv.Atoi for a weight; ``None`` (rpcx's default of 1) when unusable."""
    body = text[1:] if text[:1] in ("+", "-") else text
    if not body or not body.isascii() or not body.isdigit():
        return None
    value = int(text)
    # Atoi fails beyond int64; rpcx then keeps its default.
    return value if 0 <= value < 2**63 else None
