"""Apache Curator's service discovery layout (``curator-x-discovery`` 5.x).

Layout: ``<base>/<name>/<id>``, one node per instance, holding the JSON that Curator's
``JsonInstanceSerializer`` writes. With the default ``compatible=True`` the bytes of an
enabled instance are exactly Curator 5.4's (checked against Curator itself in
``tests/interop``)::

    {"name":"web","id":"…","address":"10.0.0.5","port":8080,"sslPort":null,
     "payload":{"@class":"java.util.LinkedHashMap","zone":"a"},
     "registrationTimeUTC":1700000000123,"serviceType":"DYNAMIC","uriSpec":null}

Facts this module relies on (read from Curator 5.4's classes):

- ``ServiceDiscoveryBuilder.builder(cls)`` uses ``JsonInstanceSerializer(cls)``, which
  writes in "compatible" mode: no ``enabled`` field (old readers failed on unknown
  properties). Its reader ignores unknown properties and defaults a missing ``enabled`` to
  true, a missing ``serviceType`` to ``DYNAMIC`` and a missing ``registrationTimeUTC`` to 0.
- The payload is written with Jackson's ``@JsonTypeInfo(use = CLASS)``: a map payload
  becomes ``{"@class":"java.util.LinkedHashMap", …}``; nested maps carry no ``@class``.
  Curator's reader casts the payload to the payload class it was built with, so a reader
  built with ``Void.class`` fails on any non-null payload. zkwarden therefore writes
  ``"payload":null`` whenever there is nothing to put in it.
- Jackson 2.14 writes non-ASCII text as UTF-8, except characters outside the Basic
  Multilingual Plane, which it writes as escaped surrogate pairs (``\\uD83D\\uDE00``);
  control characters use ``\\b \\t \\n \\f \\r`` or ``\\u00XX`` with upper-case hex.

zkwarden's own fields (weight, zone, tags, metadata, protocol) go in the payload under
``"zkwarden"``; Java readers with a ``Map``/``Object`` payload class keep it as an ordinary
entry and everyone else ignores it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from ...errors import ConfigurationError
from ..instance import (
    PAYLOAD_KEY,
    JSONValue,
    ServiceInstance,
    ServiceType,
    _prevalidated,
    registration_time_ms,
    simple_node_name,
)
from ..urispec import format_uri_spec, parse_uri_spec
from .base import RegistryFormat

__all__ = ("CuratorFormat", "dumps_jackson")

_DEFAULT_PAYLOAD_CLASS = "java.util.LinkedHashMap"

# The properties of Curator's ServiceInstance; a JSON object with none of them is some
# other program's data (a config blob, a lock payload), not an instance.
_CURATOR_FIELDS = frozenset(
    {
        "name",
        "id",
        "address",
        "port",
        "sslPort",
        "payload",
        "registrationTimeUTC",
        "serviceType",
        "uriSpec",
        "enabled",
    }
)

# Characters Jackson escapes when writing a JSON string to UTF-8 bytes.
_JACKSON_ESCAPES = re.compile('["\\\\\x00-\x1f\ud800-\udfff\U00010000-\U0010ffff]')
_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    short = _SHORT_ESCAPES.get(ch)
    if short is not None:
        return short
    code = ord(ch)
    if code > 0xFFFF:
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04X}\\u{0xDC00 + (code & 0x3FF):04X}"
    return f"\\u{code:04X}"


def _quote(text: str) -> str:
    return '"' + _JACKSON_ESCAPES.sub(_escape, text) + '"'


def _dump(value: JSONValue, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, float):
        # Python's shortest repr; Jackson would print 1e20 as "1.0E20" - both are JSON.
        out.append(repr(value))
    elif isinstance(value, str):
        out.append(_quote(value))
    elif isinstance(value, Mapping):
        out.append("{")
        first = True
        for key, item in value.items():
            if not first:
                out.append(",")
            first = False
            out.append(_quote(key))
            out.append(":")
            _dump(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _dump(item, out)
        out.append("]")
    else:
        raise ConfigurationError(f"not a JSON value: {type(value).__name__}")


def dumps_jackson(value: JSONValue) -> str:
    """Compact JSON text escaped the way Jackson 2.14 writes it (see the module docstring).

    Raises:
        ConfigurationError: ``value`` holds something that is not JSON.
    """
    out: list[str] = []
    _dump(value, out)
    return "".join(out)


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN/Infinity by default; Jackson does not, and neither do we.
    raise ValueError(f"non-standard JSON constant {name}")


# One decoder for every node: json.loads(..., parse_constant=...) builds a new JSONDecoder
# (and scanner) per call.
_DECODE_JSON = json.JSONDecoder(parse_constant=_reject_constant).decode

# The fields of a document the fast path reads (_well_formed); any other key, e.g. a newer
# Curator's, sends the document down the general path.
_FAST_KEYS = frozenset(
    {"name", "id", "address", "port", "sslPort", "payload", "registrationTimeUTC",
     "serviceType", "uriSpec", "enabled"}
)
_SERVICE_TYPES = {t.value: t for t in ServiceType}


# The fast path on the raw text (_well_formed_text): a document exactly as Curator's
# JsonInstanceSerializer (or this format) writes it, compact, in its key order. Strings are
# printable ASCII without '"' or '\\' (no escapes, so the text is the value), names are
# simple node names (simple_node_name), ints have JSON's integer syntax; the bounds the
# pattern does not express (port <= 65535, |millis| < 2**53) are checked after the match.
_CURATOR_TEXT = re.compile(
    (
        r'\{"name":"(NAME)","id":"(NAME)","address":(?:null|"(STR+)"),'
        r'"port":(?:null|(PORT)),"sslPort":(?:null|(PORT)),'
        r'"payload":(?:null|\{(PAIR(?:,PAIR)*)?\}),'
        r'"registrationTimeUTC":(-?(?:0|[1-9][0-9]{0,15})),'
        r'"serviceType":"(DYNAMIC|STATIC|PERMANENT|DYNAMIC_SEQUENTIAL)","uriSpec":null'
        r'(?:,"enabled":(true|false))?\}'
    )
    .replace("PAIR", '"STR*":"STR*"')
    .replace("STR", r"[ !#-\[\]-~]")  # printable ASCII but '"' and '\'
    .replace("NAME", r'(?!\.\.?")[A-Za-z0-9_\-.:@]+')  # simple_node_name
    .replace("PORT", "0|[1-9][0-9]{0,4}")
).fullmatch
_MAX_MILLIS = 2**53


# The payloads the text fast path parsed, by their text. The instances of a service nearly
# always share a few payloads (the same "@class" and zone, say): parsing each distinct one
# once and copying it costs a fifth of parsing it again. Bounded: cleared when full, so
# all-distinct payloads cost one lookup more each. Read and written from any thread: a
# dict's get, set and clear are each atomic.
_PAYLOADS: dict[str, dict[str, JSONValue]] = {}
_PAYLOADS_SIZE = 256


def _flat_payload(pairs: str) -> dict[str, JSONValue] | None:
    """The payload of the entries the pattern matched, without "@class"; None if it holds
    zkwarden's extension (left to the general path)."""
    # The pattern matched '"k1":"v1","k2":"v2"...' with no '"' inside a key or value, so
    # splitting at '"' gives ['', k1, ':', v1, ',', k2, ':', v2, ''] (cheaper than a
    # findall). dict() keeps a repeated key's first position and last value, as json does.
    parts = pairs.split('"')
    payload: dict[str, JSONValue] = dict(zip(parts[1::4], parts[3::4], strict=False))
    payload.pop("@class", None)
    return None if PAYLOAD_KEY in payload else payload


def _well_formed_text(text: str) -> ServiceInstance | None:
    """The instance of a document in Curator's exact compact form, or None.

    The same instance :func:`_well_formed` gives for the parsed document (so the same the
    general path gives), without building the JSON objects first: one regular expression
    validates and splits the text, about 4x cheaper than ``json`` and the checks. Any
    other text, valid or not, returns None and is parsed as JSON.
    """
    match = _CURATOR_TEXT(text)
    if match is None:
        return None
    name, node_id, address, port, ssl_port, pairs, millis, kind, enabled = match.groups()
    port_value = None if port is None else int(port)
    ssl_port_value = None if ssl_port is None else int(ssl_port)
    millis_value = int(millis)
    if (
        (port_value is not None and port_value > 65535)
        or (ssl_port_value is not None and ssl_port_value > 65535)
        or not -_MAX_MILLIS < millis_value < _MAX_MILLIS
    ):
        return None
    payload: dict[str, JSONValue] = {}
    if pairs is not None:
        known = _PAYLOADS.get(pairs)
        if known is None:
            known = _flat_payload(pairs)
            if known is None:
                return None
            if len(_PAYLOADS) >= _PAYLOADS_SIZE:
                _PAYLOADS.clear()
            _PAYLOADS[pairs] = known
        payload = known.copy()  # every instance owns its payload; the memo's stays private
    return _prevalidated(
        name, node_id, address, port_value, ssl_port_value, payload,
        # For |millis| < 2**53, millis / 1000 is the double nearest the millisecond value,
        # which ServiceInstance's round(..., 3) leaves unchanged (checked in
        # tests/discovery/test_decode_fast_text.py): no need to pay for the round.
        millis_value / 1000, _SERVICE_TYPES[kind], enabled != "false",
    )


def _fast_port(value: object) -> bool:
    return value is None or (type(value) is int and 0 <= value <= 65535)


def _well_formed(obj: dict[str, Any]) -> ServiceInstance | None:
    """The instance of a document as Curator (or this format) writes it, or None.

    The fast path for the common case: every field present has the plain type Jackson
    writes (ints, non-empty ASCII strings, a flat payload of ASCII strings, no uriSpec or
    zkwarden extension), so the tolerant readers and ServiceInstance's general checks
    have nothing to coerce or reject, and the instance is built directly. Any other
    document, valid or not, returns None and goes through :meth:`CuratorFormat._from_json`,
    which decodes it to the same instance or rejects it.
    """
    if not _FAST_KEYS.issuperset(obj):
        return None
    name, node_id, address = obj.get("name"), obj.get("id"), obj.get("address")
    port, ssl_port = obj.get("port"), obj.get("sslPort")
    millis, enabled = obj.get("registrationTimeUTC"), obj.get("enabled", True)
    kind = obj.get("serviceType", "DYNAMIC")
    service_type = _SERVICE_TYPES.get(kind) if type(kind) is str else None
    if (
        not simple_node_name(name)
        or not simple_node_name(node_id)
        or not (address is None or (type(address) is str and address and address.isascii()))
        or not _fast_port(port)
        or not _fast_port(ssl_port)
        # Below 2**53 ms (285,000 years) the division is exact enough and never overflows.
        or type(millis) is not int
        or not -(2**53) < millis < 2**53
        or service_type is None
        or type(enabled) is not bool
        or obj.get("uriSpec") is not None
    ):
        return None
    raw = obj.get("payload")
    payload: dict[str, JSONValue] = {}
    if raw is not None:
        if type(raw) is not dict:
            return None
        for key, value in raw.items():
            if not (type(value) is str and key.isascii() and value.isascii()):
                return None
            if key != "@class":
                payload[key] = value
        if PAYLOAD_KEY in payload:
            return None
    return _prevalidated(
        name, node_id, address, port, ssl_port, payload,  # type: ignore[arg-type]
        round(float(millis / 1000), 3), service_type, enabled,
    )


class CuratorFormat(RegistryFormat):
    """Curator's ``<base>/<name>/<id>`` layout with ``JsonInstanceSerializer`` JSON.

    ``compatible=True`` (the default, like Curator's) leaves out ``"enabled"`` for enabled
    instances, so the bytes match what Curator writes; a disabled instance always writes
    ``"enabled":false`` so that Curator 5 readers skip it (readers older than Curator 4
    reject unknown fields). ``compatible=False`` always writes ``"enabled"``, like
    ``JsonInstanceSerializer(cls, false)``. ``payload_class`` is the Java class named in the
    payload's ``@class`` (``None`` leaves ``@class`` out; Curator's map readers accept that).
    """

    name: ClassVar[str] = "curator"
    default_base_path: ClassVar[str] = "/services"

    def __init__(
        self, *, compatible: bool = True, payload_class: str | None = _DEFAULT_PAYLOAD_CLASS
    ) -> None:
        super().__init__()
        self.compatible = compatible
        self.payload_class = payload_class

    def __repr__(self) -> str:
        return (
            f"CuratorFormat(compatible={self.compatible!r}, payload_class={self.payload_class!r})"
        )

    def instance_node_name(self, instance: ServiceInstance) -> str:
        """The instance id (Curator names instance nodes by id)."""
        return instance.id

    # --- encoding -----------------------------------------------------------------------

    def to_json(self, instance: ServiceInstance) -> dict[str, JSONValue]:
        """The JSON object Curator's serializer writes for ``instance``, in its key order.

        Never raises.
        """
        extension: dict[str, JSONValue] = {}
        if instance.weight is not None:
            extension["weight"] = instance.weight
        if instance.zone is not None:
            extension["zone"] = instance.zone
        if instance.tags:
            extension["tags"] = list(instance.tags)
        if instance.metadata:
            extension["metadata"] = dict(instance.metadata)
        if instance.protocol is not None:
            extension["protocol"] = instance.protocol

        payload: dict[str, JSONValue] | None = None
        if instance.payload or extension:
            payload = {}
            if self.payload_class is not None:
                payload["@class"] = self.payload_class
            payload.update(instance.payload)
            if extension:
                payload[PAYLOAD_KEY] = extension

        uri_spec: dict[str, JSONValue] | None = None
        if instance.uri_spec is not None:
            uri_spec = {
                "parts": [
                    {"value": value, "variable": variable}
                    for value, variable in parse_uri_spec(instance.uri_spec)
                ]
            }

        # Key order is the field order of Curator's (Old)ServiceInstance, which Jackson
        # keeps; matching it makes the bytes identical to Curator's.
        obj: dict[str, JSONValue] = {
            "name": instance.name,
            "id": instance.id,
            "address": instance.address,
            "port": instance.port,
            "sslPort": instance.ssl_port,
            "payload": payload,
            "registrationTimeUTC": registration_time_ms(instance.registration_time),
            "serviceType": instance.service_type.value,
            "uriSpec": uri_spec,
        }
        if not self.compatible or not instance.enabled:
            obj["enabled"] = instance.enabled
        return obj

    def encode(self, instance: ServiceInstance) -> bytes:
        """The node bytes for ``instance``: Curator's JSON, UTF-8. Never raises."""
        return dumps_jackson(self.to_json(instance)).encode("utf-8")

    # --- decoding -----------------------------------------------------------------------

    def decode(self, name: str, node_name: str, data: bytes) -> ServiceInstance | None:
        """Read a Curator instance node (see :meth:`RegistryFormat.decode`). Never raises."""
        if not data:
            # CURATOR-574: an empty node (e.g. created by hand) must not break readers.
            self._reject(name, node_name, b"", "empty node")
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._reject(name, node_name, data, f"not JSON: {exc}")
            return None
        fast = _well_formed_text(text)
        if fast is not None:
            return fast
        try:
            obj = _DECODE_JSON(text)
        except (ValueError, RecursionError) as exc:
            self._reject(name, node_name, data, f"not JSON: {exc}")
            return None
        if type(obj) is dict:
            fast = _well_formed(obj)
            if fast is not None:
                return fast
        result = self._from_json(name, node_name, obj)
        if isinstance(result, str):
            self._reject(name, node_name, data, result)
            return None
        return result

    def from_json(self, name: str, node_name: str, obj: object) -> ServiceInstance | None:
        """Like :meth:`decode`, from an already parsed JSON value. Never raises."""
        result = self._from_json(name, node_name, obj)
        if isinstance(result, str):
            self._reject(name, node_name, repr(obj)[:4096].encode("utf-8", "replace"), result)
            return None
        return result

    def _from_json(self, name: str, node_name: str, obj: object) -> ServiceInstance | str:
        """The instance, or the reason it cannot be read."""
        if not isinstance(obj, dict):
            return f"JSON is a {type(obj).__name__}, not an object"
        if not _CURATOR_FIELDS.intersection(obj):
            return "JSON object has none of Curator's ServiceInstance fields"

        # Jackson leaves absent strings as null (Curator's defaults are ""); fall back to
        # what the layout says, the directory and node names.
        instance_name = obj.get("name")
        if not isinstance(instance_name, str) or not instance_name:
            instance_name = name
        instance_id = obj.get("id")
        if not isinstance(instance_id, str) or not instance_id:
            instance_id = node_name

        address = obj.get("address")
        if not isinstance(address, str) or not address:
            address = None

        payload, extension = _split_payload(obj.get("payload"))
        service_type = _service_type(obj.get("serviceType"))
        uri_spec = _uri_spec(obj.get("uriSpec"))

        try:
            return ServiceInstance(
                instance_name,
                id=instance_id,
                address=address,
                port=_port(obj.get("port")),
                ssl_port=_port(obj.get("sslPort")),
                payload=payload,
                registration_time=_millis(obj.get("registrationTimeUTC")) / 1000,
                service_type=service_type,
                uri_spec=uri_spec,
                enabled=_bool(obj.get("enabled"), default=True),
                weight=_weight(extension.get("weight")),
                zone=_text(extension.get("zone")),
                tags=_tags(extension.get("tags")),
                metadata=_metadata(extension.get("metadata")),
                protocol=_text(extension.get("protocol")),
            )
        except ConfigurationError as exc:
            return str(exc)


# --- tolerant field readers (Jackson's coercions where they matter) -----------------------


def _port(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        # Jackson coerces "8080" to an Integer.
        try:
            value = int(value.strip())
        except ValueError:
            return None
    if isinstance(value, int) and 0 <= value <= 65535:
        return value
    return None


def _millis(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) < 2**63:
        return int(value)
    return 0


def _bool(value: object, *, default: bool) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return default


def _service_type(value: object) -> ServiceType:
    if isinstance(value, str):
        try:
            return ServiceType(value)
        except ValueError:
            pass
    # Missing: Curator's default. Unknown (a newer Curator?): the instance is still a live
    # endpoint, and the type only matters to whoever registered it.
    return ServiceType.DYNAMIC


def _uri_spec(value: object) -> str | None:
    if not isinstance(value, dict):
        return None
    parts = value.get("parts")
    if not isinstance(parts, list):
        return None
    out: list[tuple[str, bool]] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        text = part.get("value")
        if not isinstance(text, str):
            continue
        out.append((text, _bool(part.get("variable"), default=False)))
    return format_uri_spec(out)


def _split_payload(value: object) -> tuple[dict[str, JSONValue], dict[str, Any]]:
    """(user payload without Jackson's type id, zkwarden extension)."""
    if value is None:
        return {}, {}
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and "." in value[0]
    ):
        # Jackson's WRAPPER_ARRAY form for scalar payloads: ["java.lang.String", "x"].
        value = value[1]
    if not isinstance(value, dict):
        # A scalar payload (String, Integer...) has no key to live under; keep it visible.
        return {"value": value}, {}
    payload = {k: v for k, v in value.items() if k != "@class" and k != PAYLOAD_KEY}
    extension = value.get(PAYLOAD_KEY)
    return payload, extension if isinstance(extension, dict) else {}


def _weight(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _tags(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(tag for tag in value if isinstance(tag, str) and tag)


def _metadata(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and k and isinstance(v, str)}
