"""zkwarden's Curator format against Curator 5.4's own JsonInstanceSerializer (no server).

- what zkwarden writes is byte for byte what Curator writes for the same instance;
- Curator reads what zkwarden writes and sees the same fields (and zkwarden's extra fields as
  an ordinary payload entry);
- zkwarden reads what Curator writes.
"""

from __future__ import annotations

from typing import Any

import pytest

from zkwarden.discovery import CuratorFormat, ServiceInstance, ServiceType
from zkwarden.discovery.instance import registration_time_ms

from .curator import CuratorTool

INSTANCES = [
    ServiceInstance(
        "web",
        id="3f1c2a9e-5b7d-4e8a-9c0f-1a2b3c4d5e6f",
        address="10.0.0.5",
        port=8080,
        payload={
            "zone": "eu-1",
            "note": 'caf\u00e9 \U0001f600 \x01\t"quoted"\\',
            "nested": {"list": [1, 2.5, None, True, {"deep": "x"}], "big": 2**62},
        },
        registration_time=1700000000.123,
    ),
    ServiceInstance(
        "billing",
        id="b-1",
        address="10.0.0.6",
        ssl_port=8443,
        registration_time=1712345678.901,
        service_type=ServiceType.PERMANENT,
        uri_spec="{scheme}://{address}:{ssl-port}/api{[}v{]}",
    ),
    ServiceInstance(
        "jobs",
        id="j-7",
        address="worker-3.internal",
        port=9000,
        registration_time=1,
        service_type=ServiceType.DYNAMIC_SEQUENTIAL,
        weight=5,
        zone="eu-1b",
        tags=("batch", "gpu"),
        metadata={"owner": "data"},
        protocol="grpc",
    ),
    ServiceInstance(
        "static",
        id="s",
        address="h",
        port=1,
        registration_time=0,
        service_type=ServiceType.STATIC,
        enabled=False,
    ),
]
IDS = ["payload", "ssl-urispec-permanent", "zkwarden-fields", "disabled-static"]


def _spec(fmt: CuratorFormat, inst: ServiceInstance) -> dict[str, Any]:
    payload = fmt.to_json(inst)["payload"]
    if isinstance(payload, dict):
        payload = {k: v for k, v in payload.items() if k != "@class"}
    return {
        "name": inst.name,
        "id": inst.id,
        "address": inst.address,
        "port": inst.port,
        "sslPort": inst.ssl_port,
        "payload": payload,
        "registrationTimeUTC": registration_time_ms(inst.registration_time),
        "serviceType": inst.service_type.value,
        "uriSpec": inst.uri_spec,
        "enabled": inst.enabled,
        "compatible": fmt.compatible,
    }


@pytest.mark.parametrize("compatible", [True, False], ids=["compatible", "full"])
@pytest.mark.parametrize("inst", INSTANCES, ids=IDS)
def test_bytes_identical_to_curator(
    curator_tool: CuratorTool, inst: ServiceInstance, compatible: bool
) -> None:
    fmt = CuratorFormat(compatible=compatible)
    curator_bytes = curator_tool.serialize(_spec(fmt, inst))
    if compatible and not inst.enabled:
        # Curator's compatible mode drops enabled=false, so Curator readers would use a
        # disabled instance; zkwarden appends it (and otherwise writes the same bytes).
        assert b'"enabled"' not in curator_bytes
        assert fmt.encode(inst) == curator_bytes[:-1] + b',"enabled":false}'
        return
    assert fmt.encode(inst) == curator_bytes
    assert fmt.decode(inst.name, inst.id, curator_bytes) == inst


@pytest.mark.parametrize("inst", INSTANCES, ids=IDS)
def test_curator_reads_what_zkwarden_writes(
    curator_tool: CuratorTool, inst: ServiceInstance
) -> None:
    fmt = CuratorFormat()
    seen = curator_tool.deserialize(fmt.encode(inst))
    expected_payload = fmt.to_json(inst)["payload"]
    if isinstance(expected_payload, dict):
        expected_payload = {k: v for k, v in expected_payload.items() if k != "@class"}
    assert seen["name"] == inst.name
    assert seen["id"] == inst.id
    assert seen["address"] == inst.address
    assert seen["port"] == inst.port
    assert seen["sslPort"] == inst.ssl_port
    assert seen["payload"] == expected_payload
    assert seen["registrationTimeUTC"] == registration_time_ms(inst.registration_time)
    assert seen["serviceType"] == inst.service_type.value
    assert seen["enabled"] == inst.enabled  # disabled survives, even in compatible mode
    if inst.uri_spec is not None:
        assert seen["uri"] == inst.build_uri()
    if expected_payload is not None:
        assert seen["payloadClass"] == "java.util.LinkedHashMap"


def test_readers_with_other_payload_classes(curator_tool: CuratorTool) -> None:
    fmt = CuratorFormat()
    plain = ServiceInstance("web", id="p", address="h", port=1)
    # Nothing in the payload: null, which even a Void reader accepts.
    for payload_class in ("java.lang.Void", "java.lang.Object", "java.util.Map"):
        assert curator_tool.try_deserialize(fmt.encode(plain), payload_class) is None
    # With a payload, Map and Object readers work; a Void reader cannot (Curator casts).
    rich = plain.replace(weight=2)
    assert curator_tool.try_deserialize(fmt.encode(rich), "java.lang.Object") is None
    assert "ClassCastException" in (
        curator_tool.try_deserialize(fmt.encode(rich), "java.lang.Void") or ""
    )
    # Without @class, Curator's map reader still accepts the payload.
    bare = CuratorFormat(payload_class=None).encode(rich)
    assert curator_tool.deserialize(bare)["payload"] == {"zkwarden": {"weight": 2}}


def test_both_reject_empty_data(curator_tool: CuratorTool) -> None:
    assert curator_tool.try_deserialize(b"") is not None
    assert CuratorFormat().decode("web", "x", b"") is None
