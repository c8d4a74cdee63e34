"""init_telemetry reads OTEL_* settings, gives each service its own resource, is idempotent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry import trace

from services.observability.otlp_json import read_metric_names, read_spans
from services.observability.setup import (
    TelemetryConfig,
    TelemetryConfigError,
    init_telemetry,
)

REPO = Path(__file__).resolve().parents[3]


def test_config_defaults_to_none_without_endpoint_and_otlp_with_one() -> None:
    assert TelemetryConfig.from_env({}).traces_exporters == ()
    config = TelemetryConfig.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert config.traces_exporters == ("otlp",) and config.metrics_exporters == ("otlp",)


def test_config_parses_lists_file_and_names() -> None:
    config = TelemetryConfig.from_env({
        "OTEL_TRACES_EXPORTER": "file, console",
        "OTEL_METRICS_EXPORTER": "otlp,prometheus",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=dev,service.name=from-attrs",
    }, file_path="/tmp/x.jsonl")
    assert config.traces_exporters == ("file", "console")
    assert config.metrics_exporters == ("otlp", "prometheus")
    assert config.file_path == "/tmp/x.jsonl"
    assert config.service_name_override == "from-attrs"
    override = TelemetryConfig.from_env({
        "OTEL_SERVICE_NAME": "svc",
        "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs",
    })
    assert override.service_name_override == "svc"
    assert TelemetryConfig.from_env({"OTEL_TRACES_EXPORTER": "none,otlp"}).traces_exporters == ()
    assert TelemetryConfig.from_env({"OTEL_SDK_DISABLED": "true"}).disabled


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_TRACES_EXPORTER": "prometheus"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/json"},
    ],
)
def test_config_rejects_what_is_not_installed(env: dict[str, str]) -> None:
    with pytest.raises(TelemetryConfigError):
        TelemetryConfig.from_env(env)


def test_services_in_one_process_get_their_own_resource(tmp_path: Path) -> None:
    path = tmp_path / "otel.jsonl"
    config = TelemetryConfig(traces_exporters=("file",), metrics_exporters=("file",),
                             file_path=str(path))
    a = init_telemetry("unit-a", settings=config, install_global=False)
    b = init_telemetry("unit-b", settings=config, install_global=False)
    try:
        assert init_telemetry("unit-a") is a  # idempotent: settings are not re-read
        assert a.tracer_provider is not b.tracer_provider
        with a.tracer.start_as_current_span("in-a"), b.tracer.start_as_current_span("in-b"):
            pass
        a.metrics.record_retrain_request("churn", "manual")
        assert a.force_flush() and b.force_flush()
    finally:
        a.shutdown()
        b.shutdown()
    services = {s["name"]: s["service_name"] for s in read_spans(path)}
    assert services == {"in-a": "unit-a", "in-b": "unit-b"}
    spans = {s["name"]: s for s in read_spans(path)}
    assert spans["in-b"]["parent_span_id"] == spans["in-a"]["span_id"]
    assert "driftloop.retrain.requests" in read_metric_names(path)
    again = init_telemetry("unit-a", settings=config, install_global=False)
    assert again is not a  # a new one after shutdown
    again.shutdown()
    assert trace.get_tracer_provider() is not a.tracer_provider  # globals left alone


def test_disabled_sdk_gives_no_op_telemetry() -> None:
    tel = init_telemetry("unit-off", settings=TelemetryConfig(disabled=True),
                         install_global=False)
    with tel.tracer.start_as_current_span("x") as span:
        assert not span.get_span_context().is_valid
    tel.metrics.record_consumed("t", "g")  # no-op instruments accept everything
    tel.shutdown()


_SERVICE = """
import sys
from services.observability.messaging import (
    extract_context, inject_headers, process_batch_span, producer_span)
from services.observability.setup import init_telemetry
tel = init_telemetry(sys.argv[1])
if sys.argv[1] == "producer":
    with tel.tracer.start_as_current_span("decide") as s:
        s.set_attribute("driftloop.report_id", "rep-1")
        with producer_span(tel.tracer, "drift.reports", "churn"):
            print(inject_headers()[0][1].decode())
else:
    ctx = extract_context([("traceparent", sys.argv[2].encode())])
    with process_batch_span(tel.tracer, "drift.reports", "g", 0, [ctx]):
        pass
tel.shutdown()
"""


def test_trace_crosses_processes_through_the_file_exporter(tmp_path: Path) -> None:
    path = tmp_path / "otel.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OTEL_TRACES_EXPORTER": "file",
        "OTEL_METRICS_EXPORTER": "none",
        "DRIFTLOOP_OBSERVABILITY__OTEL_FILE": str(path),
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test",
    }
    env.pop("OTEL_SERVICE_NAME", None)
    out = subprocess.run([sys.executable, "-c", _SERVICE, "producer"], env=env, check=True,
                         capture_output=True, text=True, timeout=60).stdout.strip()
    subprocess.run([sys.executable, "-c", _SERVICE, "consumer", out], env=env, check=True,
                   timeout=60)
    spans = {s["name"]: s for s in read_spans(path)}
    decide, send, process = spans["decide"], spans["send drift.reports"], spans[
        "process drift.reports"]
    assert decide["service_name"] == "producer" and process["service_name"] == "consumer"
    assert send["parent_span_id"] == decide["span_id"]
    assert process["trace_id"] == decide["trace_id"]
    assert process["parent_span_id"] == send["span_id"]
    assert process["links"][0]["span_id"] == send["span_id"]
    assert decide["attributes"]["driftloop.report_id"] == "rep-1"
    first = json.loads(path.read_text().splitlines()[0])
    attributes = first["resourceSpans"][0]["resource"]["attributes"]
    resource = {kv["key"]: kv["value"] for kv in attributes}
    assert resource["deployment.environment.name"] == {"stringValue": "test"}
    assert resource["service.namespace"] == {"stringValue": "driftloop"}
