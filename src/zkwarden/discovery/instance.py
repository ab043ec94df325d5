"""``ServiceInstance``: one registered endpoint of a named service.

The fields follow Apache Curator's ``ServiceInstance`` (name, id, address, port, sslPort,
payload, registrationTimeUTC, serviceType, uriSpec, enabled) so the Curator layout maps
one to one, plus first-class fields every discovery client needs and Curator lacks:
``weight``, ``zone``, ``tags``, ``metadata`` and ``protocol``. The Curator format stores
those inside the payload under :data:`PAYLOAD_KEY`, where Java readers ignore them.

Instances are immutable values. Equality compares every field; hashing uses only
``(name, id)`` (the identity of a registration), so an instance whose payload changed still
lands in the same set slot and dict bucket.
"""

from __future__ import annotations

import copy
import enum
import math
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field, fields, replace
from typing import Any

from .. import paths
from ..errors import ConfigurationError, InvalidPathError
from ..types import CreateMode
from .urispec import build_uri, format_uri_spec, parse_uri_spec

__all__ = (
    "ServiceType",
    "ServiceInstance",
    "PAYLOAD_KEY",
    "RESERVED_PAYLOAD_KEYS",
    "JSONValue",
    "registration_time_ms",
)

#: The payload key under which the Curator format stores zkwarden's own fields.
PAYLOAD_KEY = "zkwarden"

#: Payload keys a user payload may not use: ours, and Jackson's type-id property that the
#: Curator reader strips.
RESERVED_PAYLOAD_KEYS = frozenset({PAYLOAD_KEY, "@class"})

#: What a payload may hold: JSON values (tuples are accepted as arrays).
JSONValue = Any

# Deeply nested payloads would make encoding recurse without bound; JSON from other
# writers is never this deep in practice.
_MAX_PAYLOAD_DEPTH = 64


class ServiceType(enum.Enum):
    """How an instance's node lives, with Curator's names and create modes."""

    #: Ephemeral: goes away with the registering session (Curator: EPHEMERAL).
    DYNAMIC = "DYNAMIC"
    #: Persistent; Curator's REST server deletes it once ``registrationTimeUTC`` is stale.
    STATIC = "STATIC"
    #: Persistent and never cleaned up automatically.
    PERMANENT = "PERMANENT"
    #: Ephemeral with a sequence suffix on the node name (Curator: EPHEMERAL_SEQUENTIAL).
    DYNAMIC_SEQUENTIAL = "DYNAMIC_SEQUENTIAL"

    @property
    def ephemeral(self) -> bool:
        """True when the node is tied to the registering session."""
        return self in (ServiceType.DYNAMIC, ServiceType.DYNAMIC_SEQUENTIAL)

    @property
    def sequential(self) -> bool:
        """True when ZooKeeper appends a sequence number to the node name."""
        return self is ServiceType.DYNAMIC_SEQUENTIAL

    @property
    def create_mode(self) -> CreateMode:
        """The ZooKeeper create mode Curator uses for this type."""
        if self is ServiceType.DYNAMIC:
            return CreateMode.EPHEMERAL
        if self is ServiceType.DYNAMIC_SEQUENTIAL:
            return CreateMode.EPHEMERAL_SEQUENTIAL
        return CreateMode.PERSISTENT


def _new_id() -> str:
    return str(uuid.uuid4())


def _now() -> float:
    return time.time()


def _has_lone_surrogate(text: str) -> bool:
    # Python strings may hold lone surrogates (e.g. from surrogateescape); they cannot be
    # written as UTF-8, which every registry format and ZooKeeper itself need.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_text(what: str, value: object, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"{what} must be a str, not {type(value).__name__}")
    if not allow_empty and not value:
        raise ConfigurationError(f"{what} must not be empty")
    # ASCII (nearly every value) cannot hold a surrogate: skip the encode.
    if not value.isascii() and _has_lone_surrogate(value):
        raise ConfigurationError(f"{what} is not valid Unicode (lone surrogate): {value!r}")
    return value


def _check_node_name(what: str, value: object) -> str:
    text = _check_text(what, value)
    if "/" in text:
        raise ConfigurationError(f"{what} must not contain '/': {text!r}")
    try:
        paths.validate("/" + text)
    except InvalidPathError as exc:
        # The name and id are znode names in the Curator layout.
        raise ConfigurationError(f"{what} is not a valid znode name: {text!r}") from exc
    return text


def _check_port(what: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{what} must be an int or None, not {type(value).__name__}")
    if not 0 <= value <= 65535:
        raise ConfigurationError(f"{what} must be in 0..65535, not {value}")
    return value


def _freeze_json(value: object, where: str, depth: int) -> JSONValue:
    """A private deep copy of a JSON value, checking that it is one."""
    if depth > _MAX_PAYLOAD_DEPTH:
        raise ConfigurationError(f"payload nested deeper than {_MAX_PAYLOAD_DEPTH} at {where}")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigurationError(f"payload value at {where} is not a finite number: {value}")
        return value
    if isinstance(value, str):
        return _check_text(f"payload string at {where}", value, allow_empty=True)
    if isinstance(value, Mapping):
        out: dict[str, JSONValue] = {}
        for key, item in value.items():
            # Fast path for the common flat str → ASCII str entry (decoding thousands of
            # instances spends its time here); anything else takes the checked path.
            if type(key) is str and key.isascii():
                if type(item) is str and item.isascii():
                    out[key] = item
                    continue
            else:
                _check_text(f"payload key at {where}", key, allow_empty=True)
            out[key] = _freeze_json(item, f"{where}.{key}", depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_freeze_json(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise ConfigurationError(f"payload value at {where} is not JSON: {type(value).__name__}")


@dataclass(frozen=True, slots=True, eq=True)
class ServiceInstance:
    """One endpoint of service ``name``.

    Only ``name`` is positional; every other field is a keyword. ``id`` defaults to a
    random UUID and ``registration_time`` to now; ``registration_time`` is kept to the
    millisecond, the precision every registry format stores. ``payload`` and ``metadata``
    are copied at construction; treat them as read-only and use :meth:`replace` for
    changes. ``weight`` ``None`` means "not stated": strategies use 1, and the Dubbo format
    reports Dubbo's default (100) for it.

    Raises:
        ConfigurationError: from the constructor, for any invalid field: an empty name or
            id or one with ``/``, a port outside 0..65535, a negative weight, a payload that
            is not JSON or uses a reserved key (``zkwarden``, ``@class``), a malformed
            ``uri_spec``, non-string tags or metadata.
    """

    name: str
    _: KW_ONLY
    id: str = field(default_factory=_new_id)
    address: str | None = None
    port: int | None = None
    ssl_port: int | None = None
    payload: dict[str, JSONValue] = field(default_factory=dict)
    registration_time: float = field(default_factory=_now)
    service_type: ServiceType = ServiceType.DYNAMIC
    uri_spec: str | None = None
    enabled: bool = True
    weight: int | None = None
    zone: str | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    protocol: str | None = None

    def __post_init__(self) -> None:
        _check_node_name("service name", self.name)
        _check_node_name("instance id", self.id)
        if self.address is not None:
            _check_text("address", self.address)
        _check_port("port", self.port)
        _check_port("ssl_port", self.ssl_port)

        if not isinstance(self.payload, Mapping):
            raise ConfigurationError(f"payload must be a dict, not {type(self.payload).__name__}")
        reserved = RESERVED_PAYLOAD_KEYS.intersection(self.payload)
        if reserved:
            raise ConfigurationError(
                f"payload key(s) {sorted(reserved)} are reserved; use the instance fields"
            )
        object.__setattr__(self, "payload", _freeze_json(self.payload, "payload", 0))

        when = self.registration_time
        if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
            raise ConfigurationError(f"registration_time must be a finite number, not {when!r}")
        # Millisecond precision: what Curator (registrationTimeUTC), Dubbo (timestamp) and
        # the snapshot store, so an instance survives an encode/decode unchanged.
        object.__setattr__(self, "registration_time", round(float(when), 3))

        if not isinstance(self.service_type, ServiceType):
            raise ConfigurationError(
                f"service_type must be a ServiceType, not {self.service_type!r}"
            )
        if self.uri_spec is not None:
            _check_text("uri_spec", self.uri_spec, allow_empty=True)
            # Stored normalised ("{ port }" -> "{port}") so that it survives a trip through
            # Curator's list-of-parts form unchanged.
            object.__setattr__(self, "uri_spec", format_uri_spec(parse_uri_spec(self.uri_spec)))
        if not isinstance(self.enabled, bool):
            raise ConfigurationError(f"enabled must be a bool, not {self.enabled!r}")

        if self.weight is not None:
            if isinstance(self.weight, bool) or not isinstance(self.weight, int):
                raise ConfigurationError(f"weight must be an int or None, not {self.weight!r}")
            if self.weight < 0:
                raise ConfigurationError(f"weight must be >= 0, not {self.weight}")
        if self.zone is not None:
            _check_text("zone", self.zone)
        if self.protocol is not None:
            _check_text("protocol", self.protocol)

        if isinstance(self.tags, str) or not isinstance(self.tags, Iterable):
            raise ConfigurationError(f"tags must be a sequence of str, not {self.tags!r}")
        tags = tuple(self.tags)
        for tag in tags:
            _check_text("tag", tag)
        object.__setattr__(self, "tags", tags)

        if not isinstance(self.metadata, Mapping):
            raise ConfigurationError(
                f"metadata must be a dict[str, str], not {type(self.metadata).__name__}"
            )
        metadata: dict[str, str] = {}
        for key, value in self.metadata.items():
            _check_text("metadata key", key)
            _check_text(f"metadata value for {key!r}", value, allow_empty=True)
            metadata[key] = value
        object.__setattr__(self, "metadata", metadata)

    def __hash__(self) -> int:
        # Identity of a registration; payload and metadata are dicts and would make the
        # generated hash fail. Equal instances have equal (name, id), so this is consistent.
        return hash((self.name, self.id))

    @property
    def key(self) -> tuple[str, str]:
        """``(name, id)``: what identifies this registration across updates."""
        return (self.name, self.id)

    @property
    def ephemeral(self) -> bool:
        """True when the node goes away with the registering session."""
        return self.service_type.ephemeral

    def replace(self, **changes: Any) -> ServiceInstance:
        """A copy with ``changes`` applied (``id`` and ``registration_time`` are kept).

        Raises:
            ConfigurationError: a changed field is invalid, or not a field at all.
        """
        unknown = set(changes).difference(_FIELD_NAMES)
        if unknown:
            raise ConfigurationError(f"ServiceInstance has no field(s) {sorted(unknown)}")
        return replace(self, **changes)

    def build_uri(self, values: Mapping[str, object] | None = None) -> str:
        """Build a URI from :attr:`uri_spec`, filling variables as Curator does.

        ``scheme`` is ``https`` when ``ssl_port`` is set, else ``http``; ``name``, ``id``,
        ``address``, ``port``, ``ssl-port``, ``registration-time-utc``, ``service-type``
        come from the instance; ``values`` adds or overrides variables.

        Raises:
            ConfigurationError: the instance has no ``uri_spec``.
        """
        if self.uri_spec is None:
            raise ConfigurationError(f"instance {self.name}/{self.id} has no uri_spec")
        filled: dict[str, object] = {
            "[": "{",
            "]": "}",
            "scheme": "https" if self.ssl_port is not None else "http",
            "name": self.name,
            "id": self.id,
            "address": self.address if self.address is not None else "",
            "port": self.port if self.port is not None else "",
            "ssl-port": self.ssl_port if self.ssl_port is not None else "",
            "registration-time-utc": registration_time_ms(self.registration_time),
            "service-type": self.service_type.value.lower(),
        }
        if values:
            filled.update(values)
        return build_uri(self.uri_spec, filled)

    def copy_payload(self) -> dict[str, JSONValue]:
        """A deep copy of the payload the caller may change freely."""
        return copy.deepcopy(self.payload)


_FIELD_NAMES = frozenset(f.name for f in fields(ServiceInstance))

# A znode name that surely passes _check_node_name: ASCII letters, digits and "_-.:@",
# neither "." nor ".." (checked by the caller). Anything else takes the full check.
_SIMPLE_NAME = re.compile(r"[A-Za-z0-9_\-.:@]+").fullmatch


def simple_node_name(value: object) -> bool:
    """True when ``value`` is a name :class:`ServiceInstance` accepts as is (fast check)."""
    return (
        type(value) is str and _SIMPLE_NAME(value) is not None and value != "." and value != ".."
    )


# The slot descriptors' setters: calling them directly fills a frozen instance about 3x
# faster than object.__setattr__ by name (0.86 against 2.5 µs for the 15 fields), which
# looks each name up again on every call. Listed by name: a new field must be added here
# (tests/discovery/test_decode_fast_text.py checks that every field is set).
_new = object.__new__
(_set_name, _set_id, _set_address, _set_port, _set_ssl_port, _set_payload,
 _set_registration_time, _set_service_type, _set_uri_spec, _set_enabled, _set_weight,
 _set_zone, _set_tags, _set_metadata, _set_protocol) = (
    getattr(ServiceInstance, field_name).__set__ for field_name in (
        "name", "id", "address", "port", "ssl_port", "payload", "registration_time",
        "service_type", "uri_spec", "enabled", "weight", "zone", "tags", "metadata",
        "protocol",
    )
)


def _prevalidated(
    name: str, id: str, address: str | None, port: int | None, ssl_port: int | None,
    payload: dict[str, JSONValue], registration_time: float, service_type: ServiceType,
    enabled: bool,
) -> ServiceInstance:
    """A ServiceInstance built without ``__post_init__``, for a decoder's fast path.

    The caller guarantees what ``__post_init__`` would check and normalise: ``name`` and
    ``id`` pass :func:`simple_node_name`, ``address`` is None or a non-empty ASCII str,
    ports are ints in 0..65535 or None, ``payload`` is a new flat dict of ASCII str keys and
    values without reserved keys (so freezing it would copy it unchanged),
    ``registration_time`` is finite and already rounded to the millisecond. The other
    fields take their defaults. Decoding 10,000 instances spends a third less time without
    the general checks.
    """
    inst: ServiceInstance = _new(ServiceInstance)
    _set_name(inst, name)
    _set_id(inst, id)
    _set_address(inst, address)
    _set_port(inst, port)
    _set_ssl_port(inst, ssl_port)
    _set_payload(inst, payload)
    _set_registration_time(inst, registration_time)
    _set_service_type(inst, service_type)
    _set_uri_spec(inst, None)
    _set_enabled(inst, enabled)
    _set_weight(inst, None)
    _set_zone(inst, None)
    _set_tags(inst, ())
    _set_metadata(inst, {})
    _set_protocol(inst, None)
    return inst


def registration_time_ms(seconds: float) -> int:
    """Seconds since the epoch to whole milliseconds (Curator's ``registrationTimeUTC``)."""
    return round(seconds * 1000)
