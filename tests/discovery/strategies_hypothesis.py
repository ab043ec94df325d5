"""Hypothesis strategies for service instances (shared by the property tests)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from zkwarden.discovery import ServiceInstance, ServiceType
from zkwarden.discovery.instance import RESERVED_PAYLOAD_KEYS
from zkwarden.discovery.urispec import format_uri_spec


def _znode_char(ch: str) -> bool:
    c = ord(ch)
    return not (c <= 0x1F or 0x7F <= c <= 0x9F or 0xD800 <= c <= 0xF8FF or c >= 0xFFF0)


# Text ZooKeeper accepts in a node name (every BMP character the server allows but "/").
znode_text = st.text(
    alphabet=st.characters(max_codepoint=0xFFEF, exclude_characters="/").filter(_znode_char),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))

# Any valid Unicode (no lone surrogates), including control characters.
any_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)
nonempty_text = any_text.filter(bool)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.dictionaries(
    any_text.filter(lambda k: k not in RESERVED_PAYLOAD_KEYS), json_values, max_size=4
)
uri_specs = st.none() | st.lists(st.tuples(any_text, st.booleans()), max_size=5).map(
    format_uri_spec
)
ports = st.none() | st.integers(min_value=0, max_value=65535)
times = st.integers(min_value=0, max_value=2**42).map(lambda ms: ms / 1000)


@st.composite
def instances(draw: st.DrawFn, /, **overrides: Any) -> ServiceInstance:
    """Any valid ServiceInstance; ``overrides`` replace field strategies."""
    fields: dict[str, Any] = {
        "name": znode_text,
        "id": znode_text,
        "address": st.none() | nonempty_text,
        "port": ports,
        "ssl_port": ports,
        "payload": payloads,
        "registration_time": times,
        "service_type": st.sampled_from(ServiceType),
        "uri_spec": uri_specs,
        "enabled": st.booleans(),
        "weight": st.none() | st.integers(min_value=0, max_value=2**40),
        "zone": st.none() | nonempty_text,
        "tags": st.lists(nonempty_text, max_size=3).map(tuple),
        "metadata": st.dictionaries(nonempty_text, any_text, max_size=4),
        "protocol": st.none() | nonempty_text,
    }
    fields.update(overrides)
    values = {key: draw(strategy) for key, strategy in fields.items()}
    name = values.pop("name")
    return ServiceInstance(name, **values)
