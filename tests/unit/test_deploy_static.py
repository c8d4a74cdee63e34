"""Static checks of deploy/: compose, Kubernetes manifests (against the Kubernetes JSON
schemas, offline), collector, Prometheus rules, Grafana dashboard, Dockerfile.

Nothing here starts a container; the point is that every file parses, fits its schema
and names only metrics, services and files that exist.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
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
        assert deps["bootstrap"]["condition"] == "service_completed_successfully"
    assert not {"kafka-topics", "feast-apply"} & set(compose["services"])  # in bootstrap now
    bootstrap = compose["services"]["bootstrap"]
    assert bootstrap["command"][:3] == ["bootstrap", "--model", "fraud"]
    assert bootstrap["restart"] == "no"
    assert {"kafka", "redis", "postgres", "s3"} <= set(bootstrap["depends_on"])


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
    m.record_episode("churn", "failed")
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


def _promtool() -> str:
    """promtool on PATH or beside this interpreter (``make promtool`` puts it in the venv);
    without it the test skips, or fails when ``DRIFTLOOP_REQUIRE_PROMTOOL=1`` (.ci/run)."""
    beside = Path(sys.executable).parent
    for found in (shutil.which("promtool"), shutil.which("promtool", path=beside)):
        if found:
            return found
    message = "promtool not installed (make promtool: from Debian's prometheus package)"
    if os.environ.get("DRIFTLOOP_REQUIRE_PROMTOOL") == "1":
        pytest.fail(f"{message}, and DRIFTLOOP_REQUIRE_PROMTOOL=1 requires it")
    pytest.skip(f"{message}; set DRIFTLOOP_REQUIRE_PROMTOOL=1 to make this a failure")


def test_alert_rules_pass_promtool() -> None:
    promtool = _promtool()
    prometheus = DEPLOY / "prometheus"
    for command in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        result = subprocess.run([promtool, *command], cwd=prometheus, capture_output=True,
                                text=True, timeout=60)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"promtool {' '.join(command)}:\n{output}"


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


# ---------------------------------------------------------------- names, commands, files
# Every DRIFTLOOP_* name in deploy/ and the Dockerfile must be a setting (a typo or an
# old name stops the process at start: caught here, before a deploy), never a whole
# section; every `driftloop ...` command must parse with the real command line; every
# driftloop container has a read-only root filesystem and a volume under each path its
# settings write to.

ENV_NAME = re.compile(r"\bDRIFTLOOP_[A-Z0-9_]*[A-Z0-9]\b")
LOADER_NAMES = {"DRIFTLOOP_CONFIG"}  # read by load_settings itself, not a field
IMAGE = "driftloop"
SECRET = "postgresql+psycopg://user:secret@db:5432/feast"  # stands in for secretKeyRef values


def env_name_problem(name: str) -> str | None:
    """Why ``name`` is not a variable the configuration reads, or None when it is.

    The loader's own check (``variable_path``) decides, and a whole section (which the
    loader takes as JSON) is a problem here too: deploy files set one setting per name.
    """
    from streams.settings import Settings
    from streams.settings_keys import UnknownSettingError, variable_path

    if name in LOADER_NAMES:
        return None
    try:
        path, section = variable_path(Settings, name)
    except UnknownSettingError as exc:
        return str(exc)
    return f"{name}: {'.'.join(path)} is a section, not a setting" if section else None


def env_text_problems(text: str, where: str) -> list[str]:
    """Every DRIFTLOOP_* name written in ``text`` (values, comments, prose) checked."""
    return [f"{where}: {problem}" for name in sorted(set(ENV_NAME.findall(text)))
            if (problem := env_name_problem(name))]


def cli_problem(args: list[str]) -> str | None:
    """Parse ``driftloop <args>`` with the real command line, without running it."""
    import typer.main

    from services.cli.main import app

    command: Any = typer.main.get_command(app)
    name, parent = "driftloop", None
    rest = list(args)
    try:
        while True:
            ctx = command.make_context(name, rest, parent=parent)
            if not hasattr(command, "resolve_command"):
                return None
            rest = list(getattr(ctx, "_protected_args", None) or
                        getattr(ctx, "protected_args", None) or []) + list(ctx.args)
            if not rest:
                return f"driftloop {' '.join(args)}: no command"
            name, command, rest = command.resolve_command(ctx, rest)
            parent = ctx
            if name == "run":  # its services are an argument list: check the names too
                unknown = [s for s in rest if not s.startswith("-") and s not in SERVICE_NAMES]
                if unknown:
                    return f"driftloop {' '.join(args)}: unknown service(s) {unknown}"
    except Exception as exc:  # click's UsageError family (typer bundles its own click)
        message = exc.format_message() if hasattr(exc, "format_message") else repr(exc)
        return f"driftloop {' '.join(args)}: {message}"


def readme_cli_commands(text: str) -> list[list[str]]:
    """The driftloop argument lists of the ```sh blocks: ``driftloop ...`` at the start
    of a command, after ``--`` (``kubectl exec ... --``) or after the service of
    ``docker compose ... exec SERVICE``."""
    found = []
    for block in re.findall(r"```(?:sh|bash)\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            for command in re.split(r"&&|\|\||;|\|", line.split("#", 1)[0]):
                words = shlex.split(command.replace("$(", "").replace(")", ""))
                words = [w for w in words if not re.fullmatch(r"[A-Z_]+=.*", w)] or [""]
                for i, word in enumerate(words):
                    if word != IMAGE:
                        continue
                    before = words[:i]
                    after_exec = ("exec" in before and before[-1] != "exec"
                                  and all(w.startswith("-") for w in
                                          before[before.index("exec") + 1:-1]))
                    if i == 0 or before[-1] == "--" or after_exec:
                        found.append(words[i + 1:])
    return found


def _dockerfile_env() -> dict[str, str]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.*)$", text, re.M):
        env.update(pair.split("=", 1) for pair in shlex.split(line))
    return env


def _workdir() -> PurePosixPath:
    return PurePosixPath(re.findall(r"^WORKDIR (\S+)$", (REPO / "Dockerfile").read_text(),
                                    re.M)[-1])


def _settings_from(env: dict[str, str]) -> Any:
    """The settings a container with environment ``env`` loads (validation included)."""
    import os
    from unittest import mock

    from streams.settings import load_settings

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOOP_", "OTEL_"))}
    with mock.patch.dict(os.environ, {**clean, **env}, clear=True):
        return load_settings()


def write_paths(env: dict[str, str]) -> dict[str, PurePosixPath]:
    """Where a driftloop process with environment ``env`` writes, by its settings."""
    settings = _settings_from(env)
    paths = {"state_dir": PurePosixPath(settings.state_dir),
             "feast repo data": PurePosixPath(settings.feast.repo) / "data"}
    if "://" not in settings.registry_uri:
        paths["registry_uri"] = PurePosixPath(settings.registry_uri)
    if "file" in settings.observability.otel.get("OTEL_TRACES_EXPORTER", ""):
        paths["observability.otel_file"] = PurePosixPath(settings.observability.otel_file)
    return {what: path if path.is_absolute() else _workdir() / path
            for what, path in paths.items()}


def _uncovered(paths: dict[str, PurePosixPath], mounts: set[str]) -> list[str]:
    return [f"{what} {path} is not on a volume" for what, path in paths.items()
            if not any(path.is_relative_to(m) for m in mounts)]


def container_problems(
    where: str, args: list[str], env: dict[str, str], read_only: bool, mounts: set[str]
) -> list[str]:
    """Names, command and files of one driftloop container (compose service or pod)."""
    problems = [f"{where}: {p}" for name in env if name.startswith("DRIFTLOOP_")
                if (p := env_name_problem(name))]
    if (problem := cli_problem(args)) is not None:
        problems.append(f"{where}: {problem}")
    if not read_only:
        problems.append(f"{where}: root filesystem is not read-only")
    if "/tmp" not in mounts:
        problems.append(f"{where}: no writable /tmp")
    if problems:
        return problems
    try:
        paths = write_paths({**_dockerfile_env(), **env})
    except Exception as exc:  # invalid values: what the process would say at start
        return [f"{where}: settings do not load: {str(exc).splitlines()[0]}"]
    if "--wait" in args:  # only reads the registry
        return []
    return [f"{where}: {p}" for p in _uncovered(paths, mounts)]


def compose_problems(compose: dict[str, Any]) -> list[str]:
    problems = []
    for name, service in compose["services"].items():
        if not str(service.get("image", "")).startswith(IMAGE) or "entrypoint" in service:
            continue
        mounts = {v.split(":")[1] for v in service.get("volumes", [])
                  if not v.endswith(":ro")} | set(service.get("tmpfs", []))
        environment = service.get("environment") or {}
        if isinstance(environment, list):  # the KEY=VALUE form
            environment = dict(item.split("=", 1) for item in environment)
        env = {k: str(v) for k, v in environment.items()}
        problems += container_problems(f"compose {name}", list(service.get("command", [])),
                                       env, service.get("read_only") is True, mounts)
    return problems


def _pods(resources: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{r['kind']} {r['metadata']['name']}", r["spec"]["template"]["spec"])
            for r in resources if r["kind"] in ("Deployment", "StatefulSet", "Job")]


def k8s_problems(resources: list[dict[str, Any]]) -> list[str]:
    maps = {r["metadata"]["name"]: r.get("data", {}) for r in resources
            if r["kind"] == "ConfigMap"}
    problems = []
    for pod_name, pod in _pods(resources):
        for container in pod.get("initContainers", []) + pod["containers"]:
            if not container["image"].startswith(IMAGE) or "command" in container:
                continue
            env: dict[str, str] = {}
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    env.update(maps[source["configMapRef"]["name"]])
            for item in container.get("env", []):
                env[item["name"]] = item.get("value", SECRET)
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])
                      if not m.get("readOnly")}
            read_only = container.get("securityContext", {}).get("readOnlyRootFilesystem")
            problems += container_problems(f"{pod_name}/{container['name']}",
                                           container.get("args", []), env,
                                           read_only is True, mounts)
    return problems


def test_env_names_in_deploy_and_the_dockerfile_are_settings() -> None:
    files = [p for p in DEPLOY.rglob("*") if p.is_file()] + [REPO / "Dockerfile"]
    problems = [p for path in files
                for p in env_text_problems(path.read_text(), str(path.relative_to(REPO)))]
    assert problems == []
    names = {n for path in files for n in ENV_NAME.findall(path.read_text())}
    assert {"DRIFTLOOP_FEAST__REPO", "DRIFTLOOP_STATE_DIR", "DRIFTLOOP_HTTP__PORT",
            "DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS"} <= names


def test_every_driftloop_container_parses_its_command_and_writes_only_to_volumes(
    compose: dict[str, Any],
) -> None:
    assert compose_problems(compose) == []
    assert k8s_problems(_resources()) == []
    checked = [n for n, s in compose["services"].items() if s.get("image", "").startswith(IMAGE)]
    assert set(checked) == {*SERVICE_NAMES, "bootstrap"}


def test_readme_driftloop_commands_parse() -> None:
    commands = readme_cli_commands((DEPLOY / "README.md").read_text())
    assert [p for c in commands if (p := cli_problem(c))] == []
    subcommands = {c[0] for c in commands if c}
    assert {"bootstrap", "report", "data", "models"} <= subcommands


def test_bootstrap_job_runs_first_and_every_service_waits_for_it() -> None:
    resources = _resources()
    (job,) = [r for r in resources if r["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == ["bootstrap", "--model", "fraud"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    for deployment in (r for r in resources if r["kind"] == "Deployment"):
        (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
        assert init["args"][:4] == ["bootstrap", "--model", "fraud", "--wait"], deployment


# ---------------------------------------------------------------- the checks can fail

SYNTHETIC_COMPOSE = """
services:
  good:
    image: driftloop:dev
    command: ["bootstrap", "--model", "fraud", "--generate", "10"]
    read_only: true
    tmpfs: [/tmp]
    environment:
      DRIFTLOOP_STATE_DIR: /var/lib/driftloop/state
      DRIFTLOOP_REGISTRY_URI: s3://bucket/registry
      DRIFTLOOP_MODELS__FRAUD__DRIFT__WINDOW_EVENTS: "500"
    volumes:
      - state:/var/lib/driftloop/state
      - data:/app/feature_repo/data
  typo:
    image: driftloop:dev
    command: ["retrian", "--model", "fraud"]
    environment:
      DRIFTLOOP_KAFKA__BOOTSTRAP_SERVER: kafka:9092
      DRIFTLOOP_FEAST_REPO: /app/feature_repo
      DRIFTLOOP_STATE: /state
  unsafe:
    image: driftloop:dev
    command: ["run", "drfit"]
    environment:
      DRIFTLOOP_STATE_DIR: /var/lib/driftloop/state
  unmounted:
    image: driftloop:dev
    command: ["run", "drift"]
    read_only: true
    tmpfs: [/tmp]
    environment:
      DRIFTLOOP_REGISTRY_URI: /var/lib/driftloop/registry
      DRIFTLOOP_TOPICS__PARTITIONS: "six"
    volumes:
      - data:/app/feature_repo/data
  registry:
    image: driftloop:dev
    command: ["run", "drift"]
    read_only: true
    tmpfs: [/tmp]
    environment:
      DRIFTLOOP_REGISTRY_URI: /var/lib/driftloop/registry
    volumes:
      - data:/app/feature_repo/data
      - state:/var/lib/driftloop/state
      - registry:/var/lib/driftloop/registry:ro
"""


def test_the_checks_fail_on_fake_names_commands_and_writable_roots() -> None:
    problems = compose_problems(yaml.safe_load(SYNTHETIC_COMPOSE))
    assert not [p for p in problems if p.startswith("compose good:")]
    expected = {
        "typo": ["unknown setting 'kafka.bootstrap_server'",
                 "DRIFTLOOP_FEAST_REPO (did you mean DRIFTLOOP_FEAST__REPO?)",
                 "unknown setting 'state'", "No such command 'retrian'",
                 "not read-only", "no writable /tmp"],
        "unsafe": ["unknown service(s) ['drfit']", "not read-only", "no writable /tmp"],
        "unmounted": ["settings do not load: "],
        "registry": ["registry_uri /var/lib/driftloop/registry is not on a volume"],
    }
    for service, fragments in expected.items():
        mine = [p for p in problems if p.startswith(f"compose {service}:")]
        for fragment in fragments:
            assert any(fragment in p for p in mine), (service, fragment, mine)
    assert len(problems) == sum(len(f) for f in expected.values())


def test_env_names_are_checked_down_to_the_leaf() -> None:
    assert env_name_problem("DRIFTLOOP_KAFKA__SASL_PASSWORD") is None
    assert env_name_problem("DRIFTLOOP_MODELS__FRAUD__TRAINING__MAX_STEPS") is None
    assert env_name_problem("DRIFTLOOP_MODELS__FRAUD__WINDOW") == (
        "unknown setting 'models.fraud.window' in environment variable "
        "DRIFTLOOP_MODELS__FRAUD__WINDOW (did you mean DRIFTLOOP_MODELS__FRAUD__ROLLBACK__WINDOW?)")
    assert "unknown setting 'state_dir.x'" in str(env_name_problem("DRIFTLOOP_STATE_DIR__X"))
    assert "is a section" in str(env_name_problem("DRIFTLOOP_KAFKA"))
    assert "(did you mean DRIFTLOOP_HTTP__PORT?)" in str(env_name_problem("DRIFTLOOP_HEALTH_PORT"))
    assert "(did you mean DRIFTLOOP_FAULTS__CRASH_AFTER_ALIAS_MOVE?)" in str(
        env_name_problem("DRIFTLOOP_TEST_CRASH_AFTER_ALIAS"))
    assert env_text_problems("set DRIFTLOOP_* or DRIFTLOOP_FEAST__VARIANT", "x") == []


def test_readme_commands_are_found_where_a_user_types_them() -> None:
    text = ("```sh\ndriftloop report --model fraud --out r.html\n"
            "kubectl -n driftloop exec deploy/driftloop-drift -- driftloop run drift\n"
            "docker compose -f deploy/compose.yaml exec -T drift driftloop retrian\n"
            "kubectl create namespace driftloop\n```\n")
    commands = readme_cli_commands(text)
    assert commands == [["report", "--model", "fraud", "--out", "r.html"], ["run", "drift"],
                        ["retrian"]]
    assert [cli_problem(c) is None for c in commands] == [True, True, False]
    assert "No such option: --bogus" in str(cli_problem(["run", "drift", "--bogus"]))


def test_the_kubernetes_checks_fail_on_a_broken_pod() -> None:
    resources = copy.deepcopy(_resources())
    job = next(r for r in resources if r["kind"] == "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    container["securityContext"]["readOnlyRootFilesystem"] = False
    container["volumeMounts"] = [m for m in container["volumeMounts"]
                                 if m["mountPath"] != "/var/lib/driftloop/state"]
    container["env"].append({"name": "DRIFTLOOP_FEAST__VARIANTS", "value": "cluster"})
    init = next(r for r in resources if r["kind"] == "Deployment")["spec"]["template"]["spec"]
    init["initContainers"][0]["args"] = ["bootstrap", "--wait"]  # --model left out
    problems = k8s_problems(resources)
    assert len(problems) == 3, problems
    assert any("unknown setting 'feast.variants'" in p for p in problems)
    assert any("not read-only" in p for p in problems)
    assert any("Missing option '--model'" in p for p in problems)
    container["env"].pop()
    container["securityContext"]["readOnlyRootFilesystem"] = True
    assert [p for p in k8s_problems(resources) if "Job" in p] == [
        "Job driftloop-bootstrap/bootstrap: state_dir /var/lib/driftloop/state is not on a volume"]
