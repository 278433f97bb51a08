"""The Kubernetes deployment, checked offline.

`kubectl kustomize` (the kubernetes-client package) renders the base and each overlay; every
rendered object validates against the Kubernetes 1.32 schemas bundled in kubernetes-validate
(strict: unknown fields are errors); every container command parses in the costline CLI, every
COSTLINE_* variable is a setting, and the wiring (Secrets, ConfigMaps, PDBs, Services, the worker
autoscaler against the partition count) holds together.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_deploy_compose import (
    BUNDLED_RATECARD,
    DEPLOY,
    resolve_command,
    server_component,
    unknown_settings,
)

K8S = DEPLOY / "k8s"
TARGETS = ("base", "overlays/dev", "overlays/prod")
KUBERNETES_VERSION = "1.32.0"
KUBECTL_HINT = "install kubectl 1.27 or later (Debian's kubernetes-client 1.20 is too old)"
VALIDATE_HINT = "install kubernetes-validate (.venv/bin/pip install kubernetes-validate)"
COMPONENTS = ("worker", "api", "collector", "dashboard")


@cache
def _kubectl() -> str | None:
    """kubectl with kustomize v5 (the `labels` and `replicas` fields), or None."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    answer = subprocess.run(
        [kubectl, "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    try:
        kustomize = json.loads(answer.stdout).get("kustomizeVersion", "v0")
    except json.JSONDecodeError:
        return None
    return kubectl if int(kustomize.lstrip("v").split(".")[0]) >= 5 else None


@cache
def render(target: str) -> tuple[dict[str, Any], ...]:
    kubectl = _kubectl()
    if kubectl is None:
        pytest.skip(f"kubectl with kustomize v5 is not installed; {KUBECTL_HINT}")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / target)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {target} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(target: str, kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in render(target) if doc["kind"] == kind}


def costline_containers(target: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for doc in render(target):
        if doc["kind"] in ("Deployment", "Job"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                if container["image"].split(":")[0].endswith("costline"):
                    found.append((doc["metadata"]["name"], container))
    return found


def config_env(target: str) -> dict[str, str]:
    (env,) = [
        cm["data"] for name, cm in objects(target, "ConfigMap").items() if name.startswith("costline-env")
    ]
    return dict(env)


@pytest.mark.parametrize("target", TARGETS)
def test_kustomize_renders_and_every_object_validates_against_the_kubernetes_schemas(target: str) -> None:
    validate = pytest.importorskip("kubernetes_validate", reason=VALIDATE_HINT)
    documents = render(target)
    kinds = {doc["kind"] for doc in documents}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "Job"} <= kinds
    for doc in documents:
        validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_catches_a_wrong_field() -> None:
    validate = pytest.importorskip("kubernetes_validate", reason=VALIDATE_HINT)
    deployment = yaml.safe_load(yaml.safe_dump(objects("base", "Deployment")["costline-api"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["probes"] = {}
    with pytest.raises(validate.ValidationError):
        validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_runs_a_costline_command_with_its_settings(target: str) -> None:
    containers = costline_containers(target)
    assert {name for name, _ in containers} == {
        "costline-init",
        *(f"costline-{component}" for component in COMPONENTS),
    }
    names = set(config_env(target))
    for name, container in containers:
        path, _ = resolve_command(container["args"])
        expected = name.removeprefix("costline-")
        assert (server_component(container["args"]) or path[0]) == expected, name
        names.update(variable["name"] for variable in container.get("env", []))
        assert [source["configMapRef"]["name"] for source in container["envFrom"]] == [
            n for n in objects(target, "ConfigMap") if n.startswith("costline-env")
        ], name
    assert unknown_settings(names) == set()


@pytest.mark.parametrize("target", TARGETS)
def test_components_have_probes_resources_disruption_budgets_and_services(target: str) -> None:
    deployments = objects(target, "Deployment")
    budgets = objects(target, "PodDisruptionBudget")
    services = objects(target, "Service")
    for component in COMPONENTS:
        deployment = deployments[f"costline-{component}"]
        pod = deployment["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        assert container["resources"]["requests"]["cpu"], component
        assert container["resources"]["requests"]["memory"], component
        assert container["resources"]["limits"]["memory"], component
        assert "livenessProbe" in container, component
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        labels = pod["metadata"]["labels"]
        (budget,) = [
            b for b in budgets.values() if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert budget["spec"]["maxUnavailable"] == 1, component
        probe = container["livenessProbe"]
        if "exec" in probe:
            assert probe["exec"]["command"] == ["costline", "healthcheck", component]
        else:
            port = probe["httpGet"]["port"]
            assert port in {p["name"] for p in container["ports"]}, component
        if component != "worker":  # the worker serves nothing to others
            (service,) = [s for s in services.values() if s["spec"]["selector"].items() <= labels.items()]
            assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}
    api_service = services["costline-api"]["spec"]["ports"][0]["port"]
    assert config_env(target)["COSTLINE_API_URL"] == f"http://costline-api:{api_service}"


@pytest.mark.parametrize("target", TARGETS)
def test_mounted_config_is_where_the_settings_point(target: str) -> None:
    env = config_env(target)
    for name, container in costline_containers(target):
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        if name in ("costline-worker",):
            assert str(Path(env["COSTLINE_RATECARD_PATH"]).parent) in mounts
            assert str(Path(env["COSTLINE_BUDGETS_PATH"]).parent) in mounts
        if name == "costline-api":
            assert str(Path(env["COSTLINE_API_TOKENS_PATH"]).parent) in mounts
    configmaps = objects(target, "ConfigMap")
    (ratecard,) = [cm for name, cm in configmaps.items() if name.startswith("costline-ratecard")]
    assert ratecard["data"]["ratecard.yaml"] == BUNDLED_RATECARD.read_text(encoding="utf-8"), (
        "deploy/k8s/base/config/ratecard.yaml ships the bundled card: copy pipeline/ratecard/default.yaml"
    )
    (budgets,) = [cm for name, cm in configmaps.items() if name.startswith("costline-budgets")]
    from costline.pipeline.budgets.config import budgets_from_text

    assert budgets_from_text(budgets["data"]["budgets.yaml"], "budgets.yaml").budgets


@pytest.mark.parametrize("target", ["base", "overlays/prod"])
def test_secrets_are_referenced_never_committed(target: str) -> None:
    assert objects(target, "Secret") == {}
    referenced = set()
    for _, container in costline_containers(target):
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                referenced.add((ref["name"], ref["key"], ref.get("optional", False)))
    assert ("costline-secrets", "clickhouse-dsn", False) in referenced
    assert {key for name, key, optional in referenced if optional} == {
        "slack-webhook-url",
        "alert-webhook-url",
        "user-hash-salt",
        "api-token",
    }
    (api,) = [
        d for d in render(target) if d["metadata"]["name"] == "costline-api" and d["kind"] == "Deployment"
    ]
    volumes = {v["name"]: v for v in api["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tokens"]["secret"]["secretName"] == "costline-api-tokens"


def test_dev_generates_obviously_dev_only_secrets_that_work_together(tmp_path: Path) -> None:
    from costline.dashboard.api.auth import TokenStore

    secrets = objects("overlays/dev", "Secret")
    (main,) = [s for name, s in secrets.items() if name.startswith("costline-secrets-")]
    (tokens,) = [s for name, s in secrets.items() if name.startswith("costline-api-tokens-")]

    def value(secret: dict[str, Any], key: str) -> str:
        return base64.b64decode(secret["data"][key]).decode()

    token = value(main, "api-token")
    assert "dev-only" in token
    assert "dev-only" in value(main, "clickhouse-dsn")
    assert value(main, "clickhouse-password") in value(main, "clickhouse-dsn")
    tokens_file = value(tokens, "api_tokens.yaml")
    assert hashlib.sha256(token.encode()).hexdigest() in tokens_file
    tokens_path = tmp_path / "api_tokens.yaml"
    tokens_path.write_text(tokens_file, encoding="utf-8")
    store = TokenStore.from_file(tokens_path)
    principal = store.authenticate(token)
    assert principal is not None
    assert principal.role == "admin"
    # the dev overlay brings its own single-node Kafka (KRaft) and ClickHouse
    statefulsets = objects("overlays/dev", "StatefulSet")
    assert statefulsets["kafka"]["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
        "apache/kafka:"
    )
    kafka_env = {
        e["name"]: e.get("value")
        for e in statefulsets["kafka"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert config_env("overlays/dev")["COSTLINE_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert "clickhouse:8123" in value(main, "clickhouse-dsn")


def test_prod_scales_workers_up_to_the_partition_count() -> None:
    partitions = int(config_env("overlays/prod")["COSTLINE_KAFKA_PARTITIONS"])
    (hpa,) = objects("overlays/prod", "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "costline-worker"
    assert hpa["spec"]["maxReplicas"] == partitions
    assert 1 < hpa["spec"]["minReplicas"] <= partitions
    assert "replicas" not in objects("overlays/prod", "Deployment")["costline-worker"]["spec"]
    (init,) = objects("overlays/prod", "Job").values()
    assert init["spec"]["template"]["spec"]["containers"][0]["args"][-2:] == ["--replication-factor", "3"]
    base_workers = objects("base", "Deployment")["costline-worker"]["spec"]["replicas"]
    assert base_workers <= int(config_env("base")["COSTLINE_KAFKA_PARTITIONS"])
