"""The Kubernetes example validates against the Kubernetes schemas (kubernetes-validate,
strict: unknown fields are errors), and wires the sidecar the way deploy/ says: pod IP
from the downward API, credentials from the Secret, config from the ConfigMap, readiness
on /v1/health (exec probes: the API stays on loopback), the app outlasting the agent's unregistration."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from zkwarden.agent import parse_config
from zkwarden.agent._toml import parse_duration

from ._support import MANIFESTS, configmap_agent_toml, documents

# The oldest Kubernetes the example is meant for (the preStop `sleep` action is 1.30+),
# and the newest schemas the validator ships.
VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]


def _by_kind() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in MANIFESTS:
        for doc in documents(path):
            found[doc["kind"]] = doc
    return found


def test_the_example_has_a_deployment_a_configmap_and_a_secret() -> None:
    assert sorted(_by_kind()) == ["ConfigMap", "Deployment", "Secret"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_strictly(path: Path, version: str) -> None:
    for doc in documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["spec"]["template"]["spec"]["containers"][1].update(readinesProbe={}),
        lambda d: d["spec"]["template"]["spec"]["containers"][1]["securityContext"].update(
            runAsUser="10001"),
        lambda d: d["spec"].pop("selector"),
    ],
    ids=["typo", "wrong-type", "missing-required"],
)
def test_the_validator_rejects_a_broken_copy(breakage: Any) -> None:
    # Proves the validation above can fail: the same document, broken, is refused.
    broken = copy.deepcopy(_by_kind()["Deployment"])
    breakage(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def _containers() -> dict[str, dict[str, Any]]:
    pod = _by_kind()["Deployment"]["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["containers"]}


def test_sidecar_wiring() -> None:
    kinds = _by_kind()
    agent = _containers()["zkwarden-agent"]
    env = {e["name"]: e["valueFrom"] for e in agent["env"]}
    assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    secret = env["ZK_AUTH"]["secretKeyRef"]
    assert secret["name"] == kinds["Secret"]["metadata"]["name"]
    assert secret["key"] in kinds["Secret"]["stringData"]
    probe = agent["readinessProbe"]["exec"]["command"]
    assert probe[:2] == ["python", "-c"] and "127.0.0.1:8731/v1/health" in probe[2]
    assert agent["livenessProbe"]["exec"]["command"] == probe
    assert agent["args"] == ["-c", "/etc/zkwarden/agent.toml"]
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    volumes = {v["name"]: v for v in kinds["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    config_volume = next(n for n, v in volumes.items() if "configMap" in v)
    assert volumes[config_volume]["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"]
    assert mounts[config_volume] == "/etc/zkwarden"
    sc = agent["securityContext"]
    assert sc["runAsUser"] != 0 and sc["allowPrivilegeEscalation"] is False


def test_configmap_agent_toml_registers_the_pod_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    import tomllib

    monkeypatch.setenv("POD_IP", "10.4.5.6")
    monkeypatch.setenv("POD_NAME", "web-7d9c-abcde")
    monkeypatch.setenv("ZK_AUTH", "agent:s3cret")
    cfg = parse_config(tomllib.loads(configmap_agent_toml()), source="configmap")
    (svc,) = cfg.services
    assert (svc.address, svc.id, svc.port) == ("10.4.5.6", "web-7d9c-abcde", 8080)
    assert cfg.zookeeper.auth == (("digest", "agent:s3cret"),)
    # The API stays on loopback: the probes run inside the container.
    assert (cfg.agent.listen_host, cfg.agent.listen_port) == ("127.0.0.1", 8731)


def test_the_app_outlasts_the_agents_unregistration() -> None:
    import tomllib

    pod = _by_kind()["Deployment"]["spec"]["template"]["spec"]
    shutdown = parse_duration(tomllib.loads(configmap_agent_toml())["agent"]["shutdown_timeout"])
    app = _containers()["app"]
    wait = app["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert "lifecycle" not in _containers()["zkwarden-agent"]  # SIGTERM at once
    # The app's preStop outlasts a typical unregistration; the grace period covers the
    # agent's whole bounded shutdown and the app's preStop plus its own stop.
    assert wait >= 5
    assert pod["terminationGracePeriodSeconds"] > max(wait, shutdown) + 5


def test_configmap_without_the_environment_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tomllib

    from zkwarden.errors import ConfigurationError

    for var in ("POD_IP", "POD_NAME", "ZK_AUTH"):
        monkeypatch.delenv(var, raising=False)

    with pytest.raises(ConfigurationError, match=r"\$\{(ZK_AUTH|POD_NAME|POD_IP)\}"):
        parse_config(tomllib.loads(configmap_agent_toml()), source="configmap")


def readiness_command() -> list[str]:
    """The sidecar's readiness probe command (exec)."""
    return [str(a) for a in _containers()["zkwarden-agent"]["readinessProbe"]["exec"]["command"]]
