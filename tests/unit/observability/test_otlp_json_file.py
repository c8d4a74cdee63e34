"""The OTLP-JSON file exporters write lines that read back with correct ids and parents."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link

from services.observability.otlp_json import (
    OtlpJsonMetricExporter,
    OtlpJsonSpanExporter,
    read_metric_names,
    read_spans,
)

REPO = Path(__file__).resolve().parents[3]


def _provider(path: Path, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OtlpJsonSpanExporter(path)))
    return provider


def test_spans_round_trip_with_parents_links_and_attributes(tmp_path: Path) -> None:
    path = tmp_path / "otel" / "traces.jsonl"
    tracer = _provider(path, "drift").get_tracer("t")
    with tracer.start_as_current_span("other") as other:
        pass
    with tracer.start_as_current_span(
        "root", links=[Link(other.get_span_context(), {"why": "test"})]
    ) as root:
        root.set_attribute("driftloop.report_id", "r-1")
        with tracer.start_as_current_span("child") as child:
            child.set_attribute("n", 3)
            child.set_attribute("ok", True)
            child.set_attribute("x", 0.5)
            child.set_attribute("names", ["a", "b"])
    lines = path.read_text().splitlines()
    assert len(lines) == 3  # simple processor: one export (line) per span
    assert all("resourceSpans" in json.loads(line) for line in lines)

    spans = {s["name"]: s for s in read_spans(path)}
    r, c, o = spans["root"], spans["child"], spans["other"]
    assert r["trace_id"] == format(root.get_span_context().trace_id, "032x")
    assert r["span_id"] == format(root.get_span_context().span_id, "016x")
    assert r["parent_span_id"] is None
    assert c["parent_span_id"] == r["span_id"] and c["trace_id"] == r["trace_id"]
    assert c["attributes"] == {"n": 3, "ok": True, "x": 0.5, "names": ["a", "b"]}
    assert r["attributes"] == {"driftloop.report_id": "r-1"}
    assert r["links"] == [
        {"trace_id": o["trace_id"], "span_id": o["span_id"], "attributes": {"why": "test"}}
    ]
    assert {s["service_name"] for s in spans.values()} == {"drift"}
    assert r["kind"] == 1 and r["start_ns"] <= c["start_ns"] <= c["end_ns"] <= r["end_ns"]


def test_torn_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    tracer = _provider(path, "x").get_tracer("t")
    with tracer.start_as_current_span("whole"):
        pass
    with path.open("a") as fh:
        fh.write('{"resourceSpans": [{"resou')
    assert [s["name"] for s in read_spans(path)] == ["whole"]


def test_metric_lines_are_written_and_ignored_by_read_spans(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    reader = PeriodicExportingMetricReader(
        OtlpJsonMetricExporter(path), export_interval_millis=3_600_000
    )
    provider = MeterProvider(resource=Resource({"service.name": "m"}), metric_readers=[reader])
    provider.get_meter("t").create_counter("driftloop.test.count").add(2, {"a": "b"})
    provider.force_flush()
    provider.shutdown()
    assert read_metric_names(path) == {"driftloop.test.count"}
    assert read_spans(path) == []
    record = json.loads(path.read_text().splitlines()[0])
    resource = record["resourceMetrics"][0]["resource"]["attributes"]
    assert {"key": "service.name", "value": {"stringValue": "m"}} in resource


_WRITER = """
import sys
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from services.observability.otlp_json import OtlpJsonSpanExporter
p = TracerProvider(resource=Resource({"service.name": sys.argv[2]}))
p.add_span_processor(SimpleSpanProcessor(OtlpJsonSpanExporter(sys.argv[1])))
t = p.get_tracer("w")
for i in range(200):
    with t.start_as_current_span("s" + str(i)) as s:
        s.set_attribute("pad", "x" * 5000)
"""


def test_concurrent_processes_append_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), f"w{i}"], env=env)
        for i in range(2)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    lines = path.read_text().splitlines()
    assert len(lines) == 400
    for line in lines:
        json.loads(line)  # no interleaved writes
    spans = read_spans(path)
    assert sorted({s["service_name"] for s in spans}) == ["w0", "w1"]
