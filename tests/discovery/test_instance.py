"""ServiceInstance: defaults, validation, immutability, URI building."""

from __future__ import annotations

import uuid

import pytest

from zkwarden.discovery import ServiceInstance, ServiceType
from zkwarden.discovery.urispec import build_uri, format_uri_spec, parse_uri_spec
from zkwarden.errors import ConfigurationError
from zkwarden.types import CreateMode


def test_defaults() -> None:
    inst = ServiceInstance("web", address="10.0.0.5", port=8080, payload={"zone": "a"})
    assert uuid.UUID(inst.id).version == 4
    assert inst.service_type is ServiceType.DYNAMIC
    assert inst.enabled is True
    assert inst.weight is None
    assert inst.tags == ()
    assert inst.metadata == {}
    assert inst.ssl_port is None and inst.uri_spec is None and inst.protocol is None
    assert inst.registration_time > 1.6e9
    assert ServiceInstance("web").id != ServiceInstance("web").id


def test_only_name_is_positional() -> None:
    with pytest.raises(TypeError):
        ServiceInstance("web", "some-id")  # type: ignore[call-arg]


def test_registration_time_kept_to_the_millisecond() -> None:
    inst = ServiceInstance("web", registration_time=1700000000.1234567)
    assert inst.registration_time == 1700000000.123
    assert ServiceInstance("web", registration_time=5).registration_time == 5.0


@pytest.mark.parametrize(
    ("service_type", "ephemeral", "sequential", "mode"),
    [
        (ServiceType.DYNAMIC, True, False, CreateMode.EPHEMERAL),
        (ServiceType.DYNAMIC_SEQUENTIAL, True, True, CreateMode.EPHEMERAL_SEQUENTIAL),
        (ServiceType.STATIC, False, False, CreateMode.PERSISTENT),
        (ServiceType.PERMANENT, False, False, CreateMode.PERSISTENT),
    ],
)
def test_service_types_map_to_curator_create_modes(
    service_type: ServiceType, ephemeral: bool, sequential: bool, mode: CreateMode
) -> None:
    assert service_type.ephemeral is ephemeral
    assert service_type.sequential is sequential
    assert service_type.create_mode is mode
    assert ServiceInstance("s", service_type=service_type).ephemeral is ephemeral
    assert service_type.value == service_type.name  # Curator's JSON spelling


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": ""},
        {"name": "a/b"},
        {"name": ".."},
        {"name": "bad\x01"},
        {"name": 5},
        {"id": ""},
        {"id": "x/y"},
        {"id": "."},
        {"port": -1},
        {"port": 65536},
        {"port": True},
        {"port": "80"},
        {"ssl_port": 70000},
        {"weight": -1},
        {"weight": True},
        {"weight": 1.5},
        {"payload": {"zkwarden": {}}},
        {"payload": {"@class": "x"}},
        {"payload": {"f": float("nan")}},
        {"payload": {"s": {1, 2}}},
        {"payload": {1: "a"}},
        {"payload": ["not", "a", "dict"]},
        {"uri_spec": "{scheme"},
        {"uri_spec": "a}b"},
        {"uri_spec": "{a{b}}"},
        {"enabled": "yes"},
        {"zone": ""},
        {"tags": "abc"},
        {"tags": ["ok", ""]},
        {"tags": [1]},
        {"metadata": {"": "x"}},
        {"metadata": {"k": 1}},
        {"metadata": ["k"]},
        {"address": ""},
        {"address": "\udcff"},
        {"protocol": ""},
        {"registration_time": float("inf")},
        {"registration_time": "now"},
        {"service_type": "DYNAMIC"},
    ],
)
def test_invalid_fields_raise_configuration_error(kwargs: dict[str, object]) -> None:
    args = {"name": "web", **kwargs}
    name = args.pop("name")
    with pytest.raises(ConfigurationError):
        ServiceInstance(name, **args)  # type: ignore[arg-type]


def test_payload_is_a_private_deep_copy() -> None:
    payload = {"nested": {"list": [1, 2]}, "tuple": (1, 2)}
    inst = ServiceInstance("web", payload=payload)
    payload["nested"]["list"].append(3)  # type: ignore[index]
    assert inst.payload == {"nested": {"list": [1, 2]}, "tuple": [1, 2]}
    copy = inst.copy_payload()
    copy["nested"]["list"].append(9)
    assert inst.payload["nested"]["list"] == [1, 2]


def test_frozen_and_hash_by_identity() -> None:
    inst = ServiceInstance("web", id="a", payload={"v": 1})
    with pytest.raises(AttributeError):
        inst.port = 1  # type: ignore[misc]
    changed = inst.replace(payload={"v": 2})
    assert changed != inst
    assert hash(changed) == hash(inst)
    assert changed.key == inst.key == ("web", "a")
    assert {inst, changed} == {inst, changed}  # hashable despite the dict fields


def test_replace_keeps_id_and_time_and_validates() -> None:
    inst = ServiceInstance("web", address="h", port=1)
    moved = inst.replace(port=2, tags=["x"])
    assert (moved.id, moved.registration_time, moved.port, moved.tags) == (
        inst.id,
        inst.registration_time,
        2,
        ("x",),
    )
    with pytest.raises(ConfigurationError):
        inst.replace(port=-5)
    with pytest.raises(ConfigurationError):
        inst.replace(nonsense=1)


def test_build_uri_like_curator() -> None:
    inst = ServiceInstance(
        "web",
        id="i1",
        address="10.0.0.5",
        port=8080,
        registration_time=1.5,
        service_type=ServiceType.DYNAMIC_SEQUENTIAL,
        uri_spec="{scheme}://{address}:{port}/{name}/{id}?t={registration-time-utc}&s={service-type}",
    )
    assert inst.build_uri() == "http://10.0.0.5:8080/web/i1?t=1500&s=dynamic_sequential"
    secure = inst.replace(ssl_port=8443, uri_spec="{scheme}://{address}:{ssl-port}{[}x{]}")
    assert secure.build_uri() == "https://10.0.0.5:8443{x}"
    # Missing values and unknown variables add nothing; values override and add.
    odd = inst.replace(port=None, uri_spec="{scheme}://{address}:{port}{unknown}/{extra}")
    assert odd.build_uri() == "http://10.0.0.5:/"
    assert odd.build_uri({"extra": 7, "scheme": "grpc"}) == "grpc://10.0.0.5:/7"
    with pytest.raises(ConfigurationError):
        ServiceInstance("web").build_uri()


def test_uri_spec_is_normalised() -> None:
    inst = ServiceInstance("web", uri_spec="{ scheme }://{address}{}:{port}")
    assert inst.uri_spec == "{scheme}://{address}:{port}"


@pytest.mark.parametrize(
    ("template", "parts"),
    [
        ("{scheme}://foo.com:{port}", [("scheme", True), ("://foo.com:", False), ("port", True)]),
        ("plain", [("plain", False)]),
        ("", []),
        ("{a}{b}", [("a", True), ("b", True)]),
        ("x{ a }y", [("x", False), ("a", True), ("y", False)]),
        ("{}", []),
        ("{[}", [("[", True)]),
    ],
)
def test_uri_spec_parts(template: str, parts: list[tuple[str, bool]]) -> None:
    assert parse_uri_spec(template) == parts


def test_uri_spec_literal_braces_round_trip_through_parts() -> None:
    template = format_uri_spec([("a{b}c", False), ("port", True)])
    assert template == "a{[}b{]}c{port}"
    assert build_uri(template, {"[": "{", "]": "}", "port": 1}) == "a{b}c1"
    assert build_uri("{flag}", {"flag": True}) == "true"
