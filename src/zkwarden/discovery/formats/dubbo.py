"""Apache Dubbo's ZooKeeper registry layout (interface-level registration, Dubbo 2.7-3.x).

Facts (read from ``apache/dubbo`` branch 3.3: ``ZookeeperRegistry``, ``URL``,
``URLStrParser``, ``Curator5ZookeeperClient``, ``RegistryDirectory``):

- A provider of interface ``com.foo.DemoService`` is the node
  ``/dubbo/<URL.encode(interface)>/providers/<URL.encode(url.toFullString())>``; consumers
  register under ``consumers/`` the same way. The root is the registry URL's ``group``
  (default ``dubbo``). ``URL.encode`` is ``java.net.URLEncoder`` (UTF-8): letters, digits
  and ``. - * _`` stay, a space becomes ``+``, everything else is ``%XX``.
- ``toFullString()`` is ``protocol://[user[:password]@]host[:port][/path]?k=v&…`` with the
  parameters sorted by key (a ``TreeMap``), values trimmed and not escaped.
- The node is ephemeral unless the URL says ``dynamic=false``. It is created without data,
  so Curator stores its default, the registering host's IP address; readers ignore it.
- Readers only consider children containing ``%3A%2F%2F`` (an encoded ``://``); parameters
  split on ``&`` and ``;``; a ``default.x`` key also sets ``x`` when absent; the interface
  is the ``interface`` parameter, else the path.
- A provider is disabled when ``disabled`` is present and true, else when ``enabled`` is
  present and not ``true``. The weight is the ``weight`` parameter, default 100.

Everything in the instance comes from the node *name*. Mapping: interface <-> ``name``,
protocol <-> ``protocol``, ``timestamp`` (ms) <-> ``registration_time``, ``weight`` <->
``weight``, ``enabled``/``disabled`` <-> ``enabled``, ``dynamic=false`` <-> ``STATIC``,
``zone`` <-> ``zone`` (a zkwarden convention Dubbo ignores), every other parameter
(``application``, ``version``, ``group``, ``methods``, ``side`` …) <-> ``metadata``. The id
is derived from protocol, address, group and version (``dubbo@10.0.0.5:20880;version=1.0``).
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import quote_plus

from ...errors import ConfigurationError
from ..instance import ServiceInstance, ServiceType, registration_time_ms
from .base import RegistryFormat, _checked_node_name

__all__ = ("DubboFormat", "java_url_encode", "java_url_decode")

#: Dubbo's DEFAULT_WEIGHT (dubbo-cluster Constants).
DUBBO_DEFAULT_WEIGHT = 100

# Parameters mapped to instance fields; user metadata may not use them.
_MAPPED = frozenset({"interface", "weight", "enabled", "disabled", "dynamic", "zone", "timestamp"})
_DEFAULT_PREFIX = "default."
_SIDES = {"providers": "provider", "consumers": "consumer"}
_HEX = "0123456789abcdefABCDEF"


def java_url_encode(text: str) -> str:
    """``java.net.URLEncoder.encode(text, "UTF-8")``. Never raises."""
    # quote_plus also keeps "~", which Java encodes.
    return quote_plus(text, safe="*").replace("~", "%7E")


def java_url_decode(text: str) -> str | None:
    """``java.net.URLDecoder.decode(text, "UTF-8")``; ``None`` where Java throws."""
    if "%" not in text:
        return text.replace("+", " ")
    out: list[str] = []
    pending = bytearray()
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "%":
            if i + 2 >= n or text[i + 1] not in _HEX or text[i + 2] not in _HEX:
                return None
            pending.append(int(text[i + 1 : i + 3], 16))
            i += 3
            continue
        if pending:
            # Java decodes each run of escapes as UTF-8, replacing malformed bytes.
            out.append(pending.decode("utf-8", "replace"))
            pending.clear()
        out.append(" " if ch == "+" else ch)
        i += 1
    if pending:
        out.append(pending.decode("utf-8", "replace"))
    return "".join(out)


def _java_string_order(key: str) -> bytes:
    # TreeMap<String> orders by UTF-16 code units, not code points.
    return key.encode("utf-16-be", "surrogatepass")


def _parse_params(query: str) -> dict[str, str]:
    """URLStrParser's parameter parsing on a decoded query string. Never raises."""
    params: dict[str, str] = {}
    for segment in query.replace(";", "&").split("&"):
        # A leading "=" is skipped (the name starts after it); the first later "=" splits.
        start = 0
        while start < len(segment) and segment[start] == "=":
            start += 1
        segment = segment[start:]
        if not segment:
            continue
        key, _, value = segment.partition("=")
        params[key] = value
        if key.startswith(_DEFAULT_PREFIX):
            params.setdefault(key[len(_DEFAULT_PREFIX) :], value)
    return params


def _java_bool(value: str | None, default: bool) -> bool:
    # URL.getParameter(key, boolean): empty -> default, else Boolean.parseBoolean.
    if not value:
        return default
    return value.lower() == "true"


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class DubboFormat(RegistryFormat):
    """Dubbo's ``<base>/<interface>/<category>/<encoded URL>`` layout.

    ``category`` is ``providers`` (the default) or ``consumers``; ``protocol`` is used
    for instances whose ``protocol`` is ``None``.
    """

    name: ClassVar[str] = "dubbo"
    default_base_path: ClassVar[str] = "/dubbo"

    def __init__(self, *, category: str = "providers", protocol: str = "dubbo") -> None:
        super().__init__()
        _checked_node_name("dubbo category", category)
        if not protocol or any(ch in protocol for ch in ":/?@#&;="):
            raise ConfigurationError(f"invalid dubbo protocol: {protocol!r}")
        self.category = category
        self.protocol = protocol

    def __repr__(self) -> str:
        return f"DubboFormat(category={self.category!r}, protocol={self.protocol!r})"

    # --- layout -------------------------------------------------------------------------

    def service_node_name(self, name: str) -> str:
        """``URL.encode(interface)``.

        Raises:
            ConfigurationError: ``name`` is empty.
        """
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"dubbo interface name is empty: {name!r}")
        return _checked_node_name("dubbo interface node", java_url_encode(name))

    def service_path(self, base_path: str, name: str) -> str:
        """``<base>/<URL.encode(interface)>/<category>``.

        Raises:
            InvalidPathError: ``base_path`` is not a valid absolute path.
            ConfigurationError: ``name`` is empty.
        """
        return f"{super().service_path(base_path, name)}/{self.category}"

    def service_name(self, node_name: str) -> str | None:
        """The interface a child of the base path stands for. Never raises."""
        # Dubbo's config center, metadata report and service-name mapping share the
        # root ("/dubbo/config", "/dubbo/metadata", "/dubbo/mapping"); they are not services.
        if node_name in ("config", "metadata", "mapping"):
            return None
        return java_url_decode(node_name) or None

    def ephemeral(self, instance: ServiceInstance) -> bool:
        """Ephemeral unless the instance is STATIC/PERMANENT (``dynamic=false``)."""
        return instance.service_type.ephemeral

    def sequential(self, instance: ServiceInstance) -> bool:
        """Never: the node name is the provider URL."""
        return False

    # --- encoding -----------------------------------------------------------------------

    def _protocol(self, instance: ServiceInstance) -> str:
        return instance.protocol if instance.protocol is not None else self.protocol

    def _params(self, instance: ServiceInstance) -> dict[str, str]:
        if instance.service_type.sequential:
            raise ConfigurationError(
                "the dubbo layout names nodes by URL; DYNAMIC_SEQUENTIAL is not supported"
            )
        if not instance.address:
            raise ConfigurationError(f"a dubbo instance needs an address: {instance.name}")
        protocol = self._protocol(instance)
        if any(ch in protocol for ch in ":/?@#&;="):
            raise ConfigurationError(f"invalid dubbo protocol: {protocol!r}")
        if any(ch in instance.address for ch in "/?@#&;[]") or not instance.address.strip():
            raise ConfigurationError(f"address not usable in a dubbo URL: {instance.address!r}")
        if any(ch in instance.name for ch in "?#&;=") or instance.name != instance.name.strip():
            raise ConfigurationError(f"interface name not usable in a dubbo URL: {instance.name!r}")
        params: dict[str, str] = {}
        for key, value in instance.metadata.items():
            plain = key[len(_DEFAULT_PREFIX) :] if key.startswith(_DEFAULT_PREFIX) else key
            if key in _MAPPED or plain in _MAPPED:
                raise ConfigurationError(
                    f"metadata key {key!r} is a dubbo field; use the instance fields"
                )
            if any(ch in key for ch in "=&;") or key.startswith(" ") or key != key.strip():
                raise ConfigurationError(f"metadata key not usable in a dubbo URL: {key!r}")
            if any(ch in value for ch in "&;") or value != value.strip():
                # Dubbo splits on these and trims values; the value would not come back.
                raise ConfigurationError(
                    f"metadata value for {key!r} not usable in a dubbo URL: {value!r}"
                )
            params[key] = value
        if instance.zone is not None:
            if any(ch in instance.zone for ch in "&;") or instance.zone != instance.zone.strip():
                raise ConfigurationError(f"zone not usable in a dubbo URL: {instance.zone!r}")
            params["zone"] = instance.zone
        params["interface"] = instance.name
        side = _SIDES.get(self.category)
        if side is not None:
            params.setdefault("side", side)
        if instance.weight is not None:
            if instance.weight >= 2**31:
                raise ConfigurationError(f"weight {instance.weight} does not fit Dubbo's int")
            params["weight"] = str(instance.weight)
        if not instance.enabled:
            params["enabled"] = "false"
        if not instance.service_type.ephemeral:
            params["dynamic"] = "false"
        millis = registration_time_ms(instance.registration_time)
        if millis > 0:
            params["timestamp"] = str(millis)
        return params

    def url(self, instance: ServiceInstance) -> str:
        """The provider URL Dubbo's ``toFullString()`` would give for ``instance``.

        Raises:
            ConfigurationError: the instance cannot be expressed as a dubbo URL.
        """
        params = self._params(instance)
        assert instance.address is not None
        hostport = _host_for_url(instance.address)
        if instance.port:
            hostport += f":{instance.port}"
        query = "&".join(f"{key}={params[key]}" for key in sorted(params, key=_java_string_order))
        return f"{self._protocol(instance)}://{hostport}/{instance.name}?{query}"

    def instance_node_name(self, instance: ServiceInstance) -> str:
        """``URL.encode(url)`` (see :meth:`url`).

        Raises:
            ConfigurationError: the instance cannot be expressed as a dubbo URL.
        """
        return _checked_node_name("dubbo node name", java_url_encode(self.url(instance)))

    def encode(self, instance: ServiceInstance) -> bytes:
        """The node data: the provider's address, as Dubbo's Curator client leaves it.

        Raises:
            ConfigurationError: the instance cannot be expressed as a dubbo URL.
        """
        self._params(instance)
        assert instance.address is not None
        return instance.address.encode("utf-8")

    # --- decoding -----------------------------------------------------------------------

    def decode(self, name: str, node_name: str, data: bytes) -> ServiceInstance | None:
        """Read a Dubbo node from its name (``data`` is ignored). Never raises."""
        if "%3A%2F%2F" not in node_name:
            self._reject(name, node_name, data, "node name is not an encoded dubbo URL")
            return None
        text = java_url_decode(node_name)
        if text is None:
            self._reject(name, node_name, data, "node name has a malformed %-escape")
            return None
        parsed = _parse_url(text)
        if isinstance(parsed, str):
            self._reject(name, node_name, data, parsed)
            return None
        protocol, host, port, path, params = parsed
        interface = params.get("interface") or path or name
        weight = _weight(params.get("weight"))
        disabled = params.get("disabled")
        enabled = (
            not _java_bool(disabled, False)
            if disabled is not None
            else _java_bool(params.get("enabled"), True)
        )
        dynamic = _java_bool(params.get("dynamic"), True)
        timestamp = params.get("timestamp", "")
        millis = int(timestamp) if timestamp.isascii() and timestamp.isdigit() else 0
        zone = params.get("zone") or None
        metadata = {k: v for k, v in params.items() if k and k not in _MAPPED}
        try:
            return ServiceInstance(
                interface,
                id=_derive_id(protocol, host, port, metadata),
                address=host,
                port=port,
                registration_time=millis / 1000,
                service_type=ServiceType.DYNAMIC if dynamic else ServiceType.STATIC,
                enabled=enabled,
                weight=weight,
                zone=zone,
                metadata=metadata,
                protocol=protocol,
            )
        except ConfigurationError as exc:
            self._reject(name, node_name, data, str(exc))
            return None

    def canonical(self, instance: ServiceInstance) -> ServiceInstance:
        """The instance as Dubbo readers see it (derived id, weight default 100, …).

        Raises:
            ConfigurationError: the instance cannot be expressed as a dubbo URL.
        """
        params = self._params(instance)
        metadata = {k: v for k, v in params.items() if k not in _MAPPED}
        for key, value in list(metadata.items()):
            if key.startswith(_DEFAULT_PREFIX):
                metadata.setdefault(key[len(_DEFAULT_PREFIX) :], value)
        assert instance.address is not None
        port = instance.port or None
        protocol = self._protocol(instance)
        return ServiceInstance(
            instance.name,
            id=_derive_id(protocol, instance.address, port, metadata),
            address=instance.address,
            port=port,
            registration_time=(
                instance.registration_time
                if registration_time_ms(instance.registration_time) > 0
                else 0.0
            ),
            service_type=(
                ServiceType.DYNAMIC if instance.service_type.ephemeral else ServiceType.STATIC
            ),
            enabled=instance.enabled,
            weight=DUBBO_DEFAULT_WEIGHT if instance.weight is None else instance.weight,
            zone=instance.zone,
            metadata=metadata,
            protocol=protocol,
        )


def _weight(value: str | None) -> int:
    if value is None or not value.isascii() or not value.strip().lstrip("+").isdigit():
        return DUBBO_DEFAULT_WEIGHT
    weight = int(value.strip())
    # Integer.parseInt fails beyond int32; Dubbo then falls back to its default.
    return weight if weight < 2**31 else DUBBO_DEFAULT_WEIGHT


def _derive_id(protocol: str, host: str, port: int | None, metadata: dict[str, str]) -> str:
    """A stable id for a Dubbo registration: what tells two providers apart."""
    parts = [f"{protocol}@{_host_for_url(host)}" + (f":{port}" if port else "")]
    for key in ("group", "version"):
        if metadata.get(key):
            parts.append(f"{key}={java_url_encode(metadata[key])}")
    if not port and metadata.get("pid"):
        # Consumers have no port; the pid tells processes on one host apart.
        parts.append(f"pid={java_url_encode(metadata['pid'])}")
    return ";".join(parts).replace("/", "%2F")


def _parse_url(text: str) -> tuple[str, str, int | None, str, dict[str, str]] | str:
    """URLStrParser.parseDecodedStr: (protocol, host, port, path, params) or a reason."""
    body, question, query = text.partition("?")
    params = _parse_params(query) if question else {}
    body = body.split("#", 1)[0]
    protocol, sep, rest = body.partition("://")
    if not sep or not protocol:
        return "URL has no protocol"
    rest, slash, path = rest.partition("/")
    if not slash:
        path = ""
    if "@" in rest:
        # Credentials are not instance data.
        rest = rest.rpartition("@")[2]
    host, port_text = rest, ""
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            return "URL has an unclosed '[' in its host"
        host, tail = rest[1:end], rest[end + 1 :]
        if tail and not tail.startswith(":"):
            return "URL has junk after its IPv6 host"
        port_text = tail[1:]
    elif ":" in rest:
        host, _, port_text = rest.rpartition(":")
    if not host:
        return "URL has no host"
    port: int | None = None
    if port_text:
        if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
            return f"URL has a bad port: {port_text!r}"
        port = int(port_text) or None
    return protocol, host, port, path, params
