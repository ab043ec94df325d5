"""The Curator format: golden bytes captured from Curator 5.4, and a tolerant reader.

The ``CURATOR_*`` byte strings below were written by Apache Curator 5.4.0
(``ServiceDiscovery.registerService`` with Debian's ``libcurator-discovery-java``) into a
real ZooKeeper and read back from the znodes with ``tests/interop/CuratorTool.java``
(``register`` then ``get``); ``tests/interop/test_curator_server.py`` re-captures them.
"""

from __future__ import annotations

import json
import logging

import pytest

from zkwarden.discovery import CuratorFormat, ServiceInstance, ServiceType, get_format
from zkwarden.discovery.formats.curator import dumps_jackson

# registerService(name=web, id=3f1c…, address=10.0.0.5, port=8080, payload=LinkedHashMap,
# registrationTimeUTC=1700000000123); JsonInstanceSerializer(Map.class) (compatible mode).
CURATOR_WEB = (
    b'{"name":"web","id":"3f1c2a9e-5b7d-4e8a-9c0f-1a2b3c4d5e6f","address":"10.0.0.5",'
    b'"port":8080,"sslPort":null,"payload":{"@class":"java.util.LinkedHashMap",'
    b'"zone":"eu-1","version":"1.4.2","note":"caf\xc3\xa9 \\uD83D\\uDE00\\n",'
    b'"limits":{"rps":250,"burst":[1,2.5,null,true]}},"registrationTimeUTC":1700000000123,'
    b'"serviceType":"DYNAMIC","uriSpec":null}'
)
WEB = ServiceInstance(
    "web",
    id="3f1c2a9e-5b7d-4e8a-9c0f-1a2b3c4d5e6f",
    address="10.0.0.5",
    port=8080,
    payload={
        "zone": "eu-1",
        "version": "1.4.2",
        "note": "caf\u00e9 \U0001f600\n",
        "limits": {"rps": 250, "burst": [1, 2.5, None, True]},
    },
    registration_time=1700000000.123,
)

# sslPort, no port, null payload, PERMANENT, uriSpec "{scheme}://{address}:{ssl-port}/api".
CURATOR_BILLING = (
    b'{"name":"billing","id":"b-1","address":"10.0.0.6","port":null,"sslPort":8443,'
    b'"payload":null,"registrationTimeUTC":1712345678901,"serviceType":"PERMANENT",'
    b'"uriSpec":{"parts":[{"value":"scheme","variable":true},{"value":"://","variable":false},'
    b'{"value":"address","variable":true},{"value":":","variable":false},'
    b'{"value":"ssl-port","variable":true},{"value":"/api","variable":false}]}}'
)
BILLING = ServiceInstance(
    "billing",
    id="b-1",
    address="10.0.0.6",
    ssl_port=8443,
    registration_time=1712345678.901,
    service_type=ServiceType.PERMANENT,
    uri_spec="{scheme}://{address}:{ssl-port}/api",
)

# JsonInstanceSerializer(Map.class, false): "enabled" written; an empty map payload.
CURATOR_DISABLED = (
    b'{"name":"web","id":"w-2","address":"10.0.0.7","port":8081,"sslPort":null,'
    b'"payload":{"@class":"java.util.LinkedHashMap"},"registrationTimeUTC":1700000000000,'
    b'"serviceType":"DYNAMIC","uriSpec":null,"enabled":false}'
)

# Spring Cloud ZooKeeper's registration (from its documentation / discovery_anchors.md).
SPRING_CLOUD = (
    b'{"name":"cloud-provider-payment","id":"6d4e5121-8f2a-4a3e-9d6c-2b7f0e1c3a5d",'
    b'"address":"host","port":8005,"sslPort":null,'
    b'"payload":{"@class":"org.springframework.cloud.zookeeper.discovery.ZookeeperInstance",'
    b'"id":"application-1","name":"cloud-provider-payment","metadata":{}},'
    b'"registrationTimeUTC":1610116500446,"serviceType":"DYNAMIC",'
    b'"uriSpec":{"parts":[{"value":"scheme","variable":true},{"value":"://","variable":false},'
    b'{"value":"address","variable":true},{"value":":","variable":false},'
    b'{"value":"port","variable":true}]}}'
)


@pytest.fixture
def fmt() -> CuratorFormat:
    return CuratorFormat()


def test_layout(fmt: CuratorFormat) -> None:
    assert fmt.default_base_path == "/services"
    assert fmt.service_path("/services", "web") == "/services/web"
    assert fmt.instance_node_name(WEB) == WEB.id
    assert fmt.instance_path("/a/b", WEB) == f"/a/b/web/{WEB.id}"
    assert fmt.ephemeral(WEB) and not fmt.ephemeral(BILLING)
    assert fmt.sequential(WEB.replace(service_type=ServiceType.DYNAMIC_SEQUENTIAL))
    assert fmt.service_name("web") == "web"
    assert get_format("curator").name == "curator"


@pytest.mark.parametrize(("golden", "instance"), [(CURATOR_WEB, WEB), (CURATOR_BILLING, BILLING)])
def test_encode_is_byte_identical_to_curator(
    fmt: CuratorFormat, golden: bytes, instance: ServiceInstance
) -> None:
    assert fmt.encode(instance) == golden


@pytest.mark.parametrize(("golden", "instance"), [(CURATOR_WEB, WEB), (CURATOR_BILLING, BILLING)])
def test_decode_curator_bytes(fmt: CuratorFormat, golden: bytes, instance: ServiceInstance) -> None:
    assert fmt.decode(instance.name, instance.id, golden) == instance


def test_decode_non_compatible_mode_disabled(fmt: CuratorFormat) -> None:
    inst = fmt.decode("web", "w-2", CURATOR_DISABLED)
    assert inst is not None
    assert inst.enabled is False
    assert inst.payload == {}
    assert (inst.address, inst.port, inst.registration_time) == ("10.0.0.7", 8081, 1700000000.0)
    # Written back, a disabled instance always says so, even in compatible mode.
    assert json.loads(fmt.encode(inst))["enabled"] is False
    assert json.loads(CuratorFormat(compatible=False).encode(WEB))["enabled"] is True
    assert "enabled" not in json.loads(fmt.encode(WEB))


def test_decode_spring_cloud_payload(fmt: CuratorFormat) -> None:
    inst = fmt.decode("cloud-provider-payment", "x", SPRING_CLOUD)
    assert inst is not None
    assert inst.payload == {"id": "application-1", "name": "cloud-provider-payment", "metadata": {}}
    assert inst.uri_spec == "{scheme}://{address}:{port}"
    assert inst.build_uri() == "http://host:8005"
    assert inst.registration_time == 1610116500.446


def test_zkwarden_fields_live_in_a_namespaced_payload_key(fmt: CuratorFormat) -> None:
    inst = WEB.replace(
        weight=5, zone="eu-1a", tags=("blue", "canary"), metadata={"v": "2"}, protocol="grpc"
    )
    obj = json.loads(fmt.encode(inst))
    assert obj["payload"]["@class"] == "java.util.LinkedHashMap"
    assert obj["payload"]["zkwarden"] == {
        "weight": 5,
        "zone": "eu-1a",
        "tags": ["blue", "canary"],
        "metadata": {"v": "2"},
        "protocol": "grpc",
    }
    assert fmt.decode("web", inst.id, fmt.encode(inst)) == inst
    # Only our fields: the payload is still written (Java readers see a map with one key).
    bare = ServiceInstance("web", id="x", weight=0, registration_time=0)
    assert json.loads(fmt.encode(bare))["payload"] == {
        "@class": "java.util.LinkedHashMap",
        "zkwarden": {"weight": 0},
    }
    # Nothing at all: null, which every Curator reader (even Void.class) accepts.
    assert json.loads(fmt.encode(ServiceInstance("web", id="x")))["payload"] is None


def test_payload_class_option() -> None:
    spring = CuratorFormat(payload_class="org.example.Details")
    obj = json.loads(spring.encode(WEB))
    assert next(iter(obj["payload"].items())) == ("@class", "org.example.Details")
    assert "@class" not in json.loads(CuratorFormat(payload_class=None).encode(WEB))["payload"]


@pytest.mark.parametrize(
    ("data", "check"),
    [
        # @class stripped, unknown fields ignored, enabled missing -> True.
        (
            b'{"name":"web","id":"i","address":"h","port":1,"payload":{"@class":"com.x.D",'
            b'"a":1},"future":{"x":1},"registrationTimeUTC":5,"serviceType":"STATIC"}',
            {"payload": {"a": 1}, "enabled": True, "service_type": ServiceType.STATIC},
        ),
        # null payload and port; missing time and type get Curator's defaults.
        (
            b'{"name":"web","id":"i","address":null,"port":null,"payload":null}',
            {"payload": {}, "port": None, "address": None, "registration_time": 0.0},
        ),
        # Jackson's coercions: numeric strings, "false".
        (
            b'{"name":"web","id":"i","port":"8080","enabled":"false","registrationTimeUTC":"7"}',
            {"port": 8080, "enabled": False, "registration_time": 0.007},
        ),
        # Unknown service type (a newer Curator?) reads as DYNAMIC.
        (b'{"name":"web","id":"i","serviceType":"TTL"}', {"service_type": ServiceType.DYNAMIC}),
        # Missing name/id: the directory and node names.
        (b'{"address":"h"}', {"name": "svc", "id": "node-1"}),
        # Scalar payload in Jackson's wrapper-array form, and a bare one.
        (b'{"payload":["java.lang.String","hi"]}', {"payload": {"value": "hi"}}),
        (b'{"payload":42}', {"payload": {"value": 42}}),
        # Out-of-range port is dropped, not fatal; a bad zkwarden extension is ignored.
        (
            b'{"port":70000,"payload":{"zkwarden":{"weight":-3,"tags":"x","metadata":{"a":1}}}}',
            {"port": None, "weight": None, "tags": (), "metadata": {}, "payload": {}},
        ),
        # uriSpec parts with literal braces.
        (
            b'{"uriSpec":{"parts":[{"value":"a{b","variable":false},{"value":"port","variable":true}]}}',
            {"uri_spec": "a{[}b{port}"},
        ),
    ],
)
def test_tolerant_reader(fmt: CuratorFormat, data: bytes, check: dict[str, object]) -> None:
    inst = fmt.decode("svc", "node-1", data)
    assert inst is not None
    for field, expected in check.items():
        assert getattr(inst, field) == expected, field


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   ",
        b"not json",
        b"\xff\xfe",
        b"[1,2]",
        b'"string"',
        b"null",
        b'{"id":"a/b"}',
        b'{"name":"bad/name"}',
        b'{"hello":"world"}',
        b"{}",
        b'{"payload":{"x":NaN}}',
        b"[" * 100000,
        b'{"payload":' + b'{"a":' * 200 + b"1" + b"}" * 201,
        b'{"port":' + b"9" * 5000 + b"}",
    ],
)
def test_garbage_gives_none_and_a_warning(
    fmt: CuratorFormat, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="zkwarden.discovery"):
        assert fmt.decode("svc", "node-1", data) is None
    records = [r for r in caplog.records if r.name == "zkwarden.discovery"]
    assert records and records[0].levelno == logging.WARNING


def test_the_same_bad_node_warns_once(fmt: CuratorFormat, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="zkwarden.discovery"):
        for _ in range(5):
            assert fmt.decode("svc", "n", b"garbage") is None
        assert fmt.decode("svc", "other", b"garbage") is None
    levels = [r.levelno for r in caplog.records if r.name == "zkwarden.discovery"]
    assert levels.count(logging.WARNING) == 2
    assert levels.count(logging.DEBUG) == 4


def test_jackson_string_escaping() -> None:
    assert dumps_jackson('\x00\x1f\x7f\b\t\n\f\r"\\/é\u2028😀') == (
        '"\\u0000\\u001F\x7f\\b\\t\\n\\f\\r\\"\\\\/é\u2028\\uD83D\\uDE00"'
    )
    assert dumps_jackson({"a": [1, 2.5, None, True, False, {}]}) == (
        '{"a":[1,2.5,null,true,false,{}]}'
    )
