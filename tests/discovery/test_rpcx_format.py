"""The rpcx layout: ``<base>/<service>/<network>@<host:port>`` with query-string metadata.

Golden inputs are written the way rpcx writes them: the node name is the plugin's
``ServiceAddress`` (``tcp@127.0.0.1:8972`` in rpcx's own zookeeper test), the data is the
metadata string passed to ``server.RegisterName`` (``url.Values``-encoded, keys sorted),
and the periodic metrics update adds ``calls``/``connections``.
"""

from __future__ import annotations

import logging

import pytest

from zkwarden.discovery import RpcxFormat, ServiceInstance, ServiceType, get_format
from zkwarden.discovery.formats.rpcx import encode_go_query, parse_go_query
from zkwarden.errors import ConfigurationError


@pytest.fixture
def fmt() -> RpcxFormat:
    return RpcxFormat()


def test_layout(fmt: RpcxFormat) -> None:
    inst = ServiceInstance("Arith", address="127.0.0.1", port=8972)
    assert fmt.default_base_path == "/rpcx_test"
    assert fmt.instance_node_name(inst) == "tcp@127.0.0.1:8972"
    assert fmt.instance_path("/rpcx_test", inst) == "/rpcx_test/Arith/tcp@127.0.0.1:8972"
    assert fmt.instance_node_name(inst.replace(protocol="quic")) == "quic@127.0.0.1:8972"
    assert fmt.instance_node_name(inst.replace(address="::1")) == "tcp@[::1]:8972"
    assert RpcxFormat(network="kcp").instance_node_name(inst) == "kcp@127.0.0.1:8972"
    assert get_format("rpcx").name == "rpcx"


def test_golden_registration(fmt: RpcxFormat) -> None:
    inst = fmt.decode("Arith", "tcp@127.0.0.1:8972", b"group=test&tps=100&weight=10")
    assert inst == ServiceInstance(
        "Arith",
        id="tcp@127.0.0.1:8972",
        address="127.0.0.1",
        port=8972,
        registration_time=0,
        weight=10,
        tags=("test",),
        metadata={"tps": "100"},
        protocol="tcp",
    )


@pytest.mark.parametrize(
    ("node", "data", "check"),
    [
        # Empty metadata (server.RegisterName(name, rcvr, "")).
        ("tcp@10.0.0.1:8972", b"", {"metadata": {}, "weight": None, "enabled": True}),
        # Metrics added by the plugin's UpdateInterval loop.
        (
            "tcp@10.0.0.1:8972",
            b"calls=12.50&connections=3.00&tps=100",
            {"metadata": {"calls": "12.50", "connections": "3.00", "tps": "100"}},
        ),
        # state=inactive disables; several groups are all tags.
        (
            "quic@10.0.0.1:1234",
            b"group=a&group=b&state=inactive",
            {"enabled": False, "tags": ("a", "b"), "protocol": "quic"},
        ),
        # No "@": tcp (rpcx's splitNetworkAndAddress).
        ("10.0.0.1:8972", b"", {"protocol": "tcp", "address": "10.0.0.1", "port": 8972}),
        # IPv6 as net.JoinHostPort writes it.
        ("tcp@[fe80::1]:8972", b"", {"address": "fe80::1", "port": 8972}),
        # Escapes and "+" as space; the first value of a repeated key.
        ("tcp@h:1", b"note=a+b%26c&k=1&k=2", {"metadata": {"note": "a b&c", "k": "1"}}),
        # Unusable weight: rpcx's default (None here, 1 for selection).
        ("tcp@h:1", b"weight=ten", {"weight": None}),
        ("tcp@h:1", b"weight=-5", {"weight": None}),
        # "+" is a space in a query string; Atoi(" 7") fails, Atoi("+7") does not.
        ("tcp@h:1", b"weight=+7", {"weight": None}),
        ("tcp@h:1", b"weight=%2B7", {"weight": 7}),
        # A ";" makes Go's ParseQuery fail, and rpcx then applies no state/group/weight.
        (
            "tcp@h:1",
            b"state=inactive&group=g&weight=3&bad=a;b",
            {"enabled": True, "tags": (), "weight": None},
        ),
        # zkwarden's zone convention.
        ("tcp@h:1", b"zone=eu-1", {"zone": "eu-1", "metadata": {}}),
        # A bare host (no port).
        ("tcp@somehost", b"", {"address": "somehost", "port": None}),
    ],
)
def test_decode(fmt: RpcxFormat, node: str, data: bytes, check: dict[str, object]) -> None:
    inst = fmt.decode("Arith", node, data)
    assert inst is not None
    assert inst.id == node
    assert inst.service_type is ServiceType.DYNAMIC
    for field, expected in check.items():
        assert getattr(inst, field) == expected, field


@pytest.mark.parametrize(
    ("node", "data"),
    [
        ("tcp@", b""),
        ("@h:1", b""),
        ("tcp@h:notaport", b""),
        ("tcp@h:99999", b""),
        ("tcp@[::1", b""),
        ("tcp@[::1]x", b""),
        ("tcp@h:1", b"\xff\xfe"),
    ],
)
def test_garbage_gives_none(
    fmt: RpcxFormat, node: str, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="zkwarden.discovery"):
        assert fmt.decode("Arith", node, data) is None
    assert caplog.records


def test_encode_like_go_url_values(fmt: RpcxFormat) -> None:
    inst = ServiceInstance(
        "Arith",
        address="10.0.0.5",
        port=8972,
        weight=10,
        enabled=False,
        tags=("blue", "green"),
        zone="z 1",
        metadata={"tps": "100", "note": "a&b=c/é~"},
    )
    assert fmt.encode(inst) == (
        b"group=blue&group=green&note=a%26b%3Dc%2F%C3%A9~&state=inactive&tps=100&weight=10&zone=z+1"
    )
    assert fmt.decode("Arith", fmt.instance_node_name(inst), fmt.encode(inst)) == fmt.canonical(
        inst
    )


def test_canonical_drops_what_rpcx_cannot_carry(fmt: RpcxFormat) -> None:
    inst = ServiceInstance(
        "Arith",
        id="mine",
        address="10.0.0.5",
        port=8972,
        ssl_port=1,
        payload={"a": 1},
        uri_spec="{scheme}://{address}",
        service_type=ServiceType.PERMANENT,
    )
    canon = fmt.canonical(inst)
    assert canon.id == "tcp@10.0.0.5:8972"
    assert (canon.ssl_port, canon.payload, canon.uri_spec, canon.registration_time) == (
        None,
        {},
        None,
        0.0,
    )
    assert canon.protocol == "tcp"
    # The node's lifetime comes from the instance being registered, not from the data.
    assert fmt.ephemeral(inst) is False


@pytest.mark.parametrize(
    "inst",
    [
        ServiceInstance("Arith", address="h"),
        ServiceInstance("Arith", port=1),
        ServiceInstance("Arith", address="[h]", port=1),
        ServiceInstance("Arith", address="h", port=1, metadata={"weight": "3"}),
        ServiceInstance("Arith", address="h", port=1, metadata={"state": "active"}),
        ServiceInstance("Arith", address="h", port=1, protocol="a@b"),
        ServiceInstance("Arith", address="h/x", port=1),
        ServiceInstance("Arith", address="h", port=1, service_type=ServiceType.DYNAMIC_SEQUENTIAL),
    ],
)
def test_unrepresentable_instances_raise(fmt: RpcxFormat, inst: ServiceInstance) -> None:
    with pytest.raises(ConfigurationError):
        fmt.instance_path("/rpcx_test", inst)


def test_go_query_helpers() -> None:
    values, ok = parse_go_query("a=1&&b&=x&c=%zz&d=%41")
    assert not ok
    assert values == {"a": ["1"], "b": [""], "": ["x"], "d": ["A"]}
    assert encode_go_query({"b": ["2", "1"], "a": [" "]}) == "a=+&b=2&b=1"


def test_bad_network_option() -> None:
    with pytest.raises(ConfigurationError):
        RpcxFormat(network="a@b")
