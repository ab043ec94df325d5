"""The Dubbo layout: ``/dubbo/<interface>/providers/<URL.encode(provider URL)>``.

The golden node names are provider/consumer URLs as Dubbo 2.7/3 writes them (parameters
sorted, values raw), encoded with ``java.net.URLEncoder.encode(url, "UTF-8")`` run on a
JVM.
"""

from __future__ import annotations

import logging

import pytest

from zkwarden.discovery import DubboFormat, ServiceInstance, ServiceType, get_format
from zkwarden.discovery.formats.dubbo import java_url_decode, java_url_encode
from zkwarden.errors import ConfigurationError

DUBBO_PROVIDER = (
    "dubbo%3A%2F%2F192.168.1.10%3A20880%2Forg.apache.dubbo.demo.DemoService%3Fanyhost%3Dtrue"
    "%26application%3Ddemo-provider%26deprecated%3Dfalse%26dubbo%3D2.0.2%26dynamic%3Dtrue"
    "%26generic%3Dfalse%26interface%3Dorg.apache.dubbo.demo.DemoService%26methods%3DsayHello"
    "%2CsayHelloAsync%26pid%3D12345%26release%3D2.7.23%26service.name%3DServiceBean%3A%2Forg"
    ".apache.dubbo.demo.DemoService%26side%3Dprovider%26timestamp%3D1700000000123"
)
DEMO_METADATA = {
    "anyhost": "true",
    "application": "demo-provider",
    "deprecated": "false",
    "dubbo": "2.0.2",
    "generic": "false",
    "methods": "sayHello,sayHelloAsync",
    "pid": "12345",
    "release": "2.7.23",
    "service.name": "ServiceBean:/org.apache.dubbo.demo.DemoService",
    "side": "provider",
}
TRIPLE_PROVIDER = (
    "tri%3A%2F%2F%5Bfe80%3A%3A1%5D%3A50051%2Fcom.foo.Greeter%3Fapplication%3Dapp+one"
    "%26disabled%3Dtrue%26group%3Dg1%26interface%3Dcom.foo.Greeter%26side%3Dprovider"
    "%26version%3D1.0.0%26weight%3D200%26dynamic%3Dfalse"
)
CONSUMER = (
    "consumer%3A%2F%2F10.0.0.9%2Fcom.foo.DemoService%3Fapplication%3Dweb%26category"
    "%3Dconsumers%26check%3Dfalse%26interface%3Dcom.foo.DemoService%26pid%3D4242%26side"
    "%3Dconsumer%26timestamp%3D1700000000999"
)


@pytest.fixture
def fmt() -> DubboFormat:
    return DubboFormat()


def test_layout(fmt: DubboFormat) -> None:
    assert fmt.default_base_path == "/dubbo"
    assert (
        fmt.service_path("/dubbo", "com.foo.DemoService") == "/dubbo/com.foo.DemoService/providers"
    )
    assert DubboFormat(category="consumers").service_path("/dubbo", "a b") == "/dubbo/a+b/consumers"
    assert fmt.service_name("com.foo.DemoService") == "com.foo.DemoService"
    assert fmt.service_name("a+b%2Fc") == "a b/c"
    for not_a_service in ("config", "metadata", "mapping"):
        assert fmt.service_name(not_a_service) is None
    assert get_format("dubbo").name == "dubbo"


def test_golden_provider(fmt: DubboFormat) -> None:
    inst = fmt.decode("org.apache.dubbo.demo.DemoService", DUBBO_PROVIDER, b"192.168.1.10")
    assert inst == ServiceInstance(
        "org.apache.dubbo.demo.DemoService",
        id="dubbo@192.168.1.10:20880",
        address="192.168.1.10",
        port=20880,
        registration_time=1700000000.123,
        service_type=ServiceType.DYNAMIC,
        weight=100,  # Dubbo's default
        metadata=DEMO_METADATA,
        protocol="dubbo",
    )


def test_golden_encode(fmt: DubboFormat) -> None:
    inst = ServiceInstance(
        "org.apache.dubbo.demo.DemoService",
        address="192.168.1.10",
        port=20880,
        registration_time=1700000000.123,
        metadata=DEMO_METADATA,
    )
    # What Dubbo writes, less "dynamic=true" (zkwarden writes dynamic only when false).
    assert fmt.instance_node_name(inst) == DUBBO_PROVIDER.replace("%26dynamic%3Dtrue", "")
    assert fmt.encode(inst) == b"192.168.1.10"
    assert fmt.instance_path("/dubbo", inst).startswith(
        "/dubbo/org.apache.dubbo.demo.DemoService/providers/dubbo%3A%2F%2F"
    )


def test_golden_triple_ipv6_disabled_static(fmt: DubboFormat) -> None:
    inst = fmt.decode("com.foo.Greeter", TRIPLE_PROVIDER, b"")
    assert inst is not None
    assert (inst.protocol, inst.address, inst.port) == ("tri", "fe80::1", 50051)
    assert inst.enabled is False
    assert inst.weight == 200
    assert inst.service_type is ServiceType.STATIC
    assert inst.metadata == {
        "application": "app one",
        "group": "g1",
        "side": "provider",
        "version": "1.0.0",
    }
    assert inst.id == "tri@[fe80::1]:50051;group=g1;version=1.0.0"
    assert inst.registration_time == 0.0


def test_golden_consumer() -> None:
    inst = DubboFormat(category="consumers").decode("com.foo.DemoService", CONSUMER, b"")
    assert inst is not None
    assert (inst.protocol, inst.address, inst.port) == ("consumer", "10.0.0.9", None)
    assert inst.metadata["side"] == "consumer"
    assert inst.id == "consumer@10.0.0.9;pid=4242"


@pytest.mark.parametrize(
    ("query", "check"),
    [
        # disabled wins over enabled; Boolean.parseBoolean semantics.
        ("enabled=true&disabled=true", {"enabled": False}),
        ("disabled=false&enabled=false", {"enabled": True}),
        ("enabled=yes", {"enabled": False}),
        ("enabled=", {"enabled": True}),
        ("dynamic=FALSE", {"service_type": ServiceType.STATIC}),
        ("weight=abc", {"weight": 100}),
        ("default.weight=7", {"weight": 7}),
        ("weight=5&default.weight=7", {"weight": 5}),
        ("a=1;b=2", {"metadata": {"a": "1", "b": "2", "side": "provider"}}),
        ("==x=y&flag", {"metadata": {"x": "y", "flag": "", "side": "provider"}}),
        ("zone=eu-1", {"zone": "eu-1"}),
        ("timestamp=notanumber", {"registration_time": 0.0}),
    ],
)
def test_parameter_semantics(fmt: DubboFormat, query: str, check: dict[str, object]) -> None:
    url = f"dubbo://10.0.0.1:20880/com.foo.S?interface=com.foo.S&side=provider&{query}"
    inst = fmt.decode("com.foo.S", java_url_encode(url), b"")
    assert inst is not None
    for field, expected in check.items():
        assert getattr(inst, field) == expected, field


def test_interface_falls_back_to_path_then_directory(fmt: DubboFormat) -> None:
    by_path = fmt.decode("dir", java_url_encode("dubbo://h:1/com.Path?side=provider"), b"")
    assert by_path is not None and by_path.name == "com.Path"
    by_dir = fmt.decode("dir", java_url_encode("dubbo://h:1?side=provider"), b"")
    assert by_dir is not None and by_dir.name == "dir"


@pytest.mark.parametrize(
    "node",
    [
        "not-a-url",
        "dubbo://plain-not-encoded",
        "dubbo%3A%2F%2Fh%3Axx%2Fs",
        "dubbo%3A%2F%2Fh%3A1%2Fs%ZZ",
        "dubbo%3A%2F%2Fh%3A1%2Fs%2",
        "%3A%2F%2Fh%3A1%2Fs",
        "dubbo%3A%2F%2F%2Fs",
        "dubbo%3A%2F%2F%5Bfe80%3A%3A1%2Fs",
    ],
)
def test_garbage_gives_none(fmt: DubboFormat, node: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="zkwarden.discovery"):
        assert fmt.decode("s", node, b"") is None
    assert caplog.records


def test_round_trip_and_canonical(fmt: DubboFormat) -> None:
    inst = ServiceInstance(
        "com.foo.Greeter",
        id="ignored",
        address="::1",
        port=50051,
        ssl_port=9,
        payload={"x": 1},
        weight=None,
        enabled=False,
        zone="z1",
        tags=("t",),
        service_type=ServiceType.PERMANENT,
        metadata={"application": "a b", "version": "2", "note": "x=y"},
        protocol="tri",
        registration_time=1700000000.5,
    )
    canon = fmt.canonical(inst)
    assert canon.id == "tri@[::1]:50051;version=2"
    assert canon.weight == 100 and canon.service_type is ServiceType.STATIC
    assert (canon.ssl_port, canon.payload, canon.tags) == (None, {}, ())
    assert canon.metadata == {
        "application": "a b",
        "version": "2",
        "note": "x=y",
        "side": "provider",
    }
    assert fmt.decode(inst.name, fmt.instance_node_name(inst), fmt.encode(inst)) == canon
    assert fmt.ephemeral(inst) is False and fmt.sequential(inst) is False


@pytest.mark.parametrize(
    "changes",
    [
        {"address": None},
        {"address": "a/b"},
        {"address": "user@host"},
        {"metadata": {"weight": "1"}},
        {"metadata": {"default.enabled": "1"}},
        {"metadata": {"k": "a&b"}},
        {"metadata": {"k": " padded "}},
        {"metadata": {"a=b": "c"}},
        {"name": "com.foo?x"},
        {"protocol": "dub:bo"},
        {"weight": 2**31},
        {"service_type": ServiceType.DYNAMIC_SEQUENTIAL},
    ],
)
def test_unrepresentable_instances_raise(fmt: DubboFormat, changes: dict[str, object]) -> None:
    inst = ServiceInstance("com.foo.S", address="10.0.0.1", port=1).replace(**changes)
    with pytest.raises(ConfigurationError):
        fmt.instance_node_name(inst)
    with pytest.raises(ConfigurationError):
        fmt.encode(inst)


def test_java_url_codec() -> None:
    # Checked against java.net.URLEncoder on a JVM.
    assert java_url_encode("a~b*c.d-e_f é+") == "a%7Eb*c.d-e_f+%C3%A9%2B"
    assert java_url_decode("a%7Eb*c.d-e_f+%C3%A9%2B") == "a~b*c.d-e_f é+"
    assert java_url_decode("%E2%82") == "\ufffd"  # malformed UTF-8 is replaced, not fatal
    assert java_url_decode("%") is None and java_url_decode("%4") is None


def test_bad_options() -> None:
    with pytest.raises(ConfigurationError):
        DubboFormat(category="a/b")
    with pytest.raises(ConfigurationError):
        DubboFormat(protocol="x://")
