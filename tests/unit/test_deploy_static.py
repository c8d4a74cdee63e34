"""Static checks of deploy/: compose, Kubernetes manifests (against the Kubernetes JSON
schemas, offline), collector, Prometheus rules, Grafana dashboard, Dockerfile.

Nothing here starts a container; the point is that every file parses, fits its schema
and names only metrics, services and files that exist.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from services.cli.services import SERVICE_NAMES

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
K8S_VERSIONS = ("1.30.0", "1.37.0")  # oldest and newest cluster versions we claim
INFRA = {"kafka", "redis", "postgres", "otel-collector", "jaeger", "prometheus", "grafana"}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# ---------------------------------------------------------------- compose

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _yaml(DEPLOY / "compose.yaml")


def test_compose_has_every_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= INFRA
    assert set(SERVICE_NAMES) <= set(services)
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert not any("zookeeper" in name for name in services)
    assert services["otel-collector"]["image"].startswith(
        "otel/opentelemetry-collector-contrib:")


def test_compose_driftloop_services_are_built_and_configured(compose: dict[str, Any]) -> None:
    for name in SERVICE_NAMES:
        service = compose["services"][name]
        assert service["command"] == ["run", name]
        build = service["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == REPO / "Dockerfile"
        env = service["environment"]
        assert env["DRIFTLOOP_FEAST__VARIANT"] == "real"
        assert env["DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
        assert "OTEL_SERVICE_NAME" not in env  # per-service default names
        assert "redis:6379" in env["DRIFTLOOP_FEAST__REDIS"]
        assert "@postgres:5432/" in env["DRIFTLOOP_FEAST__REGISTRY_URL"]
        assert env["DRIFTLOOP_HTTP__PORT"] == "8080"
        assert "8080/healthz" in " ".join(service["healthcheck"]["test"])
        deps = service["depends_on"]
        assert deps["kafka-topics"]["condition"] == "service_completed_successfully"


def test_compose_bind_mounts_exist(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes", {}))
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
            else:
                assert source in named, (name, source)


# ---------------------------------------------------------------- kubernetes

def _kustomize_files() -> list[Path]:
    kustomization = _yaml(K8S / "kustomization.yaml")
    return [K8S / name for name in kustomization["resources"]]


def _resources() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in _kustomize_files():
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def _kv() -> Any:
    """kubernetes-validate (bundles the Kubernetes JSON schemas, so it works offline)."""
    return pytest.importorskip("kubernetes_validate.utils")


def _validate(resource: dict[str, Any], version: str) -> None:
    _kv().validate(resource, version, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = {p.name for p in _kustomize_files()}
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    assert all(p.is_file() for p in _kustomize_files())


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_kubernetes_schemas(version: str) -> None:
    resources = _resources()
    assert resources
    for resource in resources:
        _validate(resource, version)


def test_validation_can_fail() -> None:
    deployment = next(r for r in _resources() if r["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}  # typo
    with pytest.raises(_kv().ValidationError):
        _validate(broken, K8S_VERSIONS[-1])
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(_kv().ValidationError):
        _validate(wrong_type, K8S_VERSIONS[-1])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
def test_kustomize_build_validates() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(K8S)], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    built = [d for d in yaml.safe_load_all(out) if d]
    assert len(built) == len(_resources())
    for resource in built:
        assert resource["kind"] == "Namespace" or resource["metadata"]["namespace"] == "driftloop"
        _validate(resource, K8S_VERSIONS[-1])


def test_one_deployment_per_service_with_probes_and_resources() -> None:
    config = next(r for r in _resources() if r["kind"] == "ConfigMap")["data"]
    port = int(config["DRIFTLOOP_HTTP__PORT"])
    assert config["DRIFTLOOP_FEAST__VARIANT"] == "cluster"
    assert config["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    deployments = {r["metadata"]["name"]: r for r in _resources() if r["kind"] == "Deployment"}
    assert set(deployments) == {f"driftloop-{name}" for name in SERVICE_NAMES}
    for name in SERVICE_NAMES:
        spec = deployments[f"driftloop-{name}"]["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["args"] == ["run", name]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["health"] == port
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind])
        env = {e["name"]: e for e in container["env"]}
        assert "OTEL_SERVICE_NAME" not in env and "OTEL_SERVICE_NAME" not in config
        assert "k8s.pod.name=$(K8S_POD_NAME)" in env["OTEL_RESOURCE_ATTRIBUTES"]["value"]
        assert spec["securityContext"]["runAsNonRoot"] is True
    ingest = deployments["driftloop-ingest"]["spec"]
    assert ingest["replicas"] == 1 and ingest["strategy"]["type"] == "Recreate"


def _feast_variant(name: str) -> dict[str, Any]:
    from services.features.feast_repo import YAML_FILES

    return _yaml(REPO / "feature_repo" / YAML_FILES[name])


def test_cluster_runs_spark_redis_and_the_registry_on_s3() -> None:
    config = next(r for r in _resources() if r["kind"] == "ConfigMap")["data"]
    feast = _feast_variant(config["DRIFTLOOP_FEAST__VARIANT"])
    assert feast["offline_store"]["type"] == "spark"
    assert feast["online_store"]["type"] == "redis"
    assert feast["registry"]["registry_type"] == "sql"
    assert config["DRIFTLOOP_REGISTRY_URI"].startswith("s3://")
    for deployment in (r for r in _resources() if r["kind"] == "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        secrets = [e["secretRef"] for e in container["envFrom"] if "secretRef" in e]
        assert {"name": "driftloop-s3", "optional": True} in secrets, deployment["metadata"]


def test_no_state_volume_is_shared_between_replicas() -> None:
    """Each pod's state dir is its own: an emptyDir, or a ReadWriteOnce claim used by one
    single-replica Deployment that never runs two pods at once. Only the offline parts
    (write-once files) sit on a ReadWriteMany volume."""
    resources = _resources()
    config = next(r for r in resources if r["kind"] == "ConfigMap")["data"]
    claims = {r["metadata"]["name"]: r for r in resources if r["kind"] == "PersistentVolumeClaim"}
    users: dict[str, list[str]] = {}
    for deployment in (r for r in resources if r["kind"] == "Deployment"):
        name, spec = deployment["metadata"]["name"], deployment["spec"]
        pod = spec["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        state = volumes[mounts[config["DRIFTLOOP_STATE_DIR"]]]
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                users.setdefault(volume["persistentVolumeClaim"]["claimName"], []).append(name)
        if "emptyDir" in state:
            continue
        claim = claims[state["persistentVolumeClaim"]["claimName"]]
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"], name
        assert spec["replicas"] == 1, name
        strategy = spec["strategy"]
        assert strategy["type"] == "Recreate" or strategy["rollingUpdate"]["maxSurge"] == 0, name
    for claim, deployments in users.items():
        modes = claims[claim]["spec"]["accessModes"]
        assert len(deployments) == 1 or modes == ["ReadWriteMany"], (claim, deployments)
    assert set(users["feature-data"]) == {f"driftloop-{n}" for n in SERVICE_NAMES}
    drift = next(r for r in resources if r["metadata"]["name"] == "driftloop-drift")
    assert drift["spec"]["replicas"] > 1  # the replicated service keeps per-pod state


def test_compose_registry_on_s3_and_one_state_volume_per_service(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert services["s3"]["image"].startswith("chrislusf/seaweedfs:")
    assert _feast_variant("real")["online_store"]["type"] == "redis"
    assert "duckdb" in _feast_variant("real")["offline_store"]["type"].lower()
    seen: dict[str, str] = {}
    for name in SERVICE_NAMES:
        env = services[name]["environment"]
        assert env["DRIFTLOOP_REGISTRY_URI"].startswith("s3://")
        assert env["AWS_ENDPOINT_URL"] == "http://s3:8333"
        state_dir = env["DRIFTLOOP_STATE_DIR"]
        (state,) = [v.split(":")[0] for v in services[name]["volumes"]
                    if v.split(":")[1] == state_dir]
        assert state not in seen, (name, seen)
        seen[state] = name


# ---------------------------------------------------------------- telemetry stack

def test_collector_pipelines_are_wired() -> None:
    config = _yaml(DEPLOY / "otel-collector.yaml")
    pipelines = config["service"]["pipelines"]
    for pipeline in pipelines.values():
        for part in ("receivers", "processors", "exporters"):
            for name in pipeline.get(part, []):
                assert name in config[part], (part, name)
    assert pipelines["traces"]["exporters"] == ["otlp/jaeger"]
    assert config["exporters"]["otlp/jaeger"]["endpoint"].startswith("jaeger:")
    assert pipelines["metrics"]["exporters"] == ["prometheus"]
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    prom_port = config["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1]
    prometheus = _yaml(DEPLOY / "prometheus.yml")
    targets = [t for job in prometheus["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]]
    assert f"otel-collector:{prom_port}" in targets
    assert prometheus["rule_files"] == ["/etc/prometheus/alerts.yml"]


@pytest.fixture(scope="module")
def exposition() -> tuple[set[str], set[str]]:
    """Metric families and label names our instruments produce in Prometheus form."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest

    from services.observability.metrics import PipelineMetrics

    registry = CollectorRegistry(auto_describe=False)
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    m = PipelineMetrics(provider.get_meter("t"))
    report = SimpleNamespace(
        model="churn", drifted=True, drifted_share=0.5,
        features=[SimpleNamespace(name="age", psi=0.3, ks_statistic=0.2)])
    m.record_drift_report(report)
    m.record_consumed("features", "drift", 10)
    m.record_dead_letter("features", "decode")
    m.record_process_duration("features", "drift", 0.01)
    m.record_freshness("churn", 2.0)
    m.record_retrain_request("churn", "covariate")
    m.record_candidate_registered("churn", "covariate", 60.0)
    m.record_training_started("churn", start_delay_seconds=1.0)
    m.record_training_finished("churn", "failed", 5.0, final_loss=0.1, error_type="OOM")
    m.record_shadow_pairs("churn")
    m.record_verdict("churn", "promote", -0.01, loss_name="log_loss")
    m.record_promotion("churn", "shadow", retrain_reason="covariate")
    watch = m.track_checkpoints("churn", "run-1")
    watch.checkpoint_written()
    text = generate_latest(registry).decode()
    watch.close()
    provider.shutdown()
    families = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    labels = set(re.findall(r"[{,]([a-z_]+)=\"", text))
    return families, labels


def _unknown_names(text: str, families: set[str], labels: set[str]) -> set[str]:
    unknown = set()
    for token in set(re.findall(r"\b(driftloop_[a-z_]+)", text)):
        base = re.sub(r"_(bucket|count|sum)$", "", token)
        if token not in families and base not in families and token not in labels:
            unknown.add(token)
    return unknown


def test_alert_rules_are_well_formed_and_name_real_metrics(
    exposition: tuple[set[str], set[str]],
) -> None:
    path = DEPLOY / "prometheus" / "alerts.yml"
    rules = [r for g in _yaml(path)["groups"] for r in g["rules"]]
    sre = (REPO / "docs" / "SRE.md").read_text()
    assert len(rules) >= 10
    for rule in rules:
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["runbook"] == f"docs/SRE.md#{rule['alert'].lower()}"
        assert f"### {rule['alert']}\n" in sre, rule["alert"]
    severities = {r["alert"]: r["labels"]["severity"] for r in rules}
    assert severities["DriftloopCheckpointStale"] == "page"
    assert severities["DriftloopTrainingFailing"] == "page"
    assert severities["DriftloopDriftDetected"] == "ticket"
    assert _unknown_names(path.read_text(), *exposition) == set()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_alert_rules_pass_promtool() -> None:
    prometheus = DEPLOY / "prometheus"
    subprocess.run(["promtool", "check", "rules", "alerts.yml"], cwd=prometheus, check=True,
                   timeout=60)
    subprocess.run(["promtool", "test", "rules", "alerts_test.yml"], cwd=prometheus,
                   check=True, timeout=60)


def test_dashboard_covers_the_metrics(exposition: tuple[set[str], set[str]]) -> None:
    families, labels = exposition
    raw = (DEPLOY / "grafana" / "dashboards" / "driftloop.json").read_text()
    dashboard = json.loads(raw)
    assert dashboard["uid"] and dashboard["panels"]
    assert _unknown_names(raw, families, labels) == set()
    used = {re.sub(r"_(bucket|count|sum)$", "", t)
            for t in re.findall(r"\b(driftloop_[a-z_]+)", raw)}
    missing = {f for f in families if f.startswith("driftloop_")} - used
    assert missing == set(), "metrics without a panel"
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
    provisioning = _yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml")
    assert provisioning["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


# ---------------------------------------------------------------- image

def test_dockerfile_pins_python_and_cpu_torch() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", dockerfile, re.M)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    torch_pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith("torch=="))
    assert f"ARG TORCH_VERSION={torch_pin.split('==')[1]}" in dockerfile
    assert "--index-url" in dockerfile and "whl/cpu" in dockerfile
    assert "USER 10001" in dockerfile
    ignore = (REPO / ".dockerignore").read_text().split()
    for needed in ("!pyproject.toml", "!streams/", "!services/", "!feature_repo/"):
        assert needed in ignore
    for line in re.findall(r"^COPY .*$", dockerfile, re.M):
        if "--from=" in line:
            continue
        sources = [w for w in line.split()[1:-1] if not w.startswith("--")]
        for source in sources:
            if source not in ("README.md", "constraints.txt"):  # root files, always there
                assert (REPO / source).exists(), source


def test_network_policy_covers_every_pod_and_its_http_port() -> None:
    """The HTTP port serves POST /predict without authentication: a policy must guard it."""
    resources = _resources()
    policy = next(r for r in resources if r["kind"] == "NetworkPolicy")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    for deployment in (r for r in resources if r["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]
        assert selector.items() <= pod["metadata"]["labels"].items(), deployment["metadata"]
        ports = {p["containerPort"] for c in pod["spec"]["containers"] for p in c["ports"]}
        assert ports <= allowed, deployment["metadata"]["name"]
