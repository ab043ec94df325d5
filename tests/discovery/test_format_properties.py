"""Property tests for every registry format.

- encode -> decode gives back the instance as the format carries it
  (``decode(name, instance_node_name(i), encode(i)) == canonical(i)``; for Curator,
  ``canonical`` is the identity, so everything survives);
- decoding arbitrary names and bytes never raises.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from zkwarden import paths
from zkwarden.discovery import (
    CuratorFormat,
    DubboFormat,
    RegistryFormat,
    RpcxFormat,
    ServiceInstance,
    ServiceType,
    get_format,
)
from zkwarden.discovery.formats import format_names
from zkwarden.errors import ConfigurationError

from .strategies_hypothesis import any_text, instances, json_values, nonempty_text, znode_text

FORMATS = [CuratorFormat(), CuratorFormat(compatible=False), RpcxFormat(), DubboFormat()]
FORMAT_IDS = ["curator", "curator-noncompat", "rpcx", "dubbo"]


def _round_trip(fmt: RegistryFormat, inst: ServiceInstance) -> None:
    try:
        canonical = fmt.canonical(inst)
        node = fmt.instance_node_name(inst)
        data = fmt.encode(inst)
    except ConfigurationError:
        assume(False)
        raise  # unreachable; keeps type checkers calm
    paths.validate(fmt.instance_path(fmt.default_base_path, inst))
    assert fmt.decode(inst.name, node, data) == canonical
    # The canonical form is a fixed point: written again, it reads back unchanged.
    assert fmt.canonical(canonical) == canonical
    again = fmt.decode(inst.name, fmt.instance_node_name(canonical), fmt.encode(canonical))
    assert again == canonical


@settings(deadline=None)
@given(inst=instances())
def test_curator_round_trip_keeps_everything(inst: ServiceInstance) -> None:
    for fmt in FORMATS[:2]:
        assert fmt.canonical(inst) is inst
        assert fmt.decode(inst.name, inst.id, fmt.encode(inst)) == inst
        # Jackson-compatible escaping is still JSON Python reads back.
        assert json.loads(fmt.encode(inst))["name"] == inst.name


_rpcx_address = st.text(
    alphabet=st.characters(
        min_codepoint=0x20, max_codepoint=0xFFEF, exclude_characters="/[]"
    ).filter(lambda ch: not (0x7F <= ord(ch) <= 0x9F or 0xD800 <= ord(ch) <= 0xF8FF)),
    min_size=1,
    max_size=12,
)


@settings(deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    inst=instances(
        address=_rpcx_address,
        port=st.integers(min_value=0, max_value=65535),
        service_type=st.sampled_from(
            [ServiceType.DYNAMIC, ServiceType.STATIC, ServiceType.PERMANENT]
        ),
        metadata=st.dictionaries(
            nonempty_text.filter(lambda k: k not in ("weight", "state", "group", "zone")),
            any_text,
            max_size=4,
        ),
        protocol=st.none() | znode_text.filter(lambda p: "@" not in p),
    )
)
def test_rpcx_round_trip(inst: ServiceInstance) -> None:
    _round_trip(RpcxFormat(), inst)


_url_safe = st.characters(exclude_categories=["Cs"], exclude_characters="/?@#&;=[]")
_dubbo_value = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="&;"), max_size=10
).filter(lambda v: v == v.strip())
_dubbo_key = (
    st.text(alphabet=_url_safe, min_size=1, max_size=10)
    .filter(lambda k: k == k.strip())
    .filter(
        lambda k: (
            k.removeprefix("default.")
            not in ("interface", "weight", "enabled", "disabled", "dynamic", "zone", "timestamp")
        )
    )
)


@settings(deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    inst=instances(
        name=znode_text.filter(lambda n: n == n.strip() and not set(n) & set("?#&;=")),
        address=st.text(alphabet=_url_safe | st.just(":"), min_size=1, max_size=12).filter(
            lambda a: a.strip()
        ),
        service_type=st.sampled_from(
            [ServiceType.DYNAMIC, ServiceType.STATIC, ServiceType.PERMANENT]
        ),
        weight=st.none() | st.integers(min_value=0, max_value=2**31 - 1),
        zone=st.none() | _dubbo_value.filter(bool),
        metadata=st.dictionaries(_dubbo_key, _dubbo_value, max_size=4),
        protocol=st.none() | st.text(alphabet=_url_safe.filter(lambda c: c != ":"), min_size=1),
    )
)
def test_dubbo_round_trip(inst: ServiceInstance) -> None:
    _round_trip(DubboFormat(), inst)
    _round_trip(DubboFormat(category="consumers"), inst)


@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
@settings(deadline=None, max_examples=300)
@given(name=any_text, node=any_text, data=st.binary(max_size=200))
def test_decode_arbitrary_input_never_raises(
    fmt: RegistryFormat, name: str, node: str, data: bytes
) -> None:
    result = fmt.decode(name, node, data)
    assert result is None or isinstance(result, ServiceInstance)


@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
@settings(deadline=None)
@given(
    node=st.sampled_from(["tcp@", "dubbo%3A%2F%2F", "x%3A%2F%2F%5B", ""]).flatmap(
        lambda prefix: any_text.map(lambda rest: prefix + rest)
    ),
    value=json_values,
)
def test_decode_plausible_input_never_raises(fmt: RegistryFormat, node: str, value: object) -> None:
    for data in (json.dumps(value).encode(), json.dumps({"payload": value}).encode()):
        result = fmt.decode("svc", node, data)
        assert result is None or isinstance(result, ServiceInstance)


@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
@settings(deadline=None)
@given(inst=instances(address=st.just("10.0.0.1"), port=st.just(80)), cut=st.integers(0, 400))
def test_decode_damaged_encodings_never_raises(
    fmt: RegistryFormat, inst: ServiceInstance, cut: int
) -> None:
    try:
        node = fmt.instance_node_name(inst)
        data = fmt.encode(inst)
    except ConfigurationError:
        return
    for damaged_node, damaged_data in (
        (node[:cut], data),
        (node, data[:cut]),
        (node, data[:cut] + b"\xff" + data[cut + 1 :]),
    ):
        result = fmt.decode(inst.name, damaged_node, damaged_data)
        assert result is None or isinstance(result, ServiceInstance)


def test_get_format() -> None:
    assert format_names() == ("curator", "dubbo", "rpcx")
    for name in format_names():
        assert get_format(name).name == name
        assert get_format(name) is not get_format(name)
    custom = DubboFormat(category="consumers")
    assert get_format(custom) is custom
    with pytest.raises(ConfigurationError, match="known formats: curator, dubbo, rpcx"):
        get_format("eureka")
    with pytest.raises(ConfigurationError):
        get_format(None)  # type: ignore[arg-type]
