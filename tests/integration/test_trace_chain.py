"""One trace for the causal chain, over the real broker, Feast, registry and torch.

The drift monitor's "retrain decision" → ``send retrain.requests`` → the worker's
"training run" (child of that send, through the message headers) → "register
candidate" → ``send models.candidates`` → the shadow service's "shadow promotion"
(child of the candidate's send, through the context kept in the shadow book) → ``send
models.verdicts`` and ``send models.promotions``: one trace id, each hop the child of
the one before, and every produced message's ``traceparent`` names its send span.

(a) runs every service in this process with in-memory telemetry; (b) runs drift,
train and shadow as separate ``driftloop run`` processes exporting to one OTLP-JSON
file, and checks the same relations from the file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.trace import SpanKind

from services.observability.otlp_json import read_spans
from streams.codec import decode
from streams.contracts import ModelCandidate, ModelPromotion, RetrainRequest, ShadowVerdict
from streams.settings import Settings

sys.path.insert(0, str(Path(__file__).parent / "workers"))
from chain_loop import (
    MODEL,
    N_FIRST,
    N_SHADOW,
    Loop,
    World,
    header,
    live_frame,
    prepare,
    produce,
    read_topic,
    run_to_promotion,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::RuntimeWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning")]

CHAIN_TOPICS = ("retrain.requests", "models.candidates", "models.verdicts", "models.promotions")


def _traceparent(message: Any) -> tuple[str, str]:
    """(trace id, span id) of a message's ``traceparent`` header."""
    value = header(message, "traceparent")
    assert value is not None, f"{message.topic()} message without traceparent"
    _, trace_id, span_id, _ = value.split("-")
    return trace_id, span_id


def _messages(settings: Settings) -> dict[str, list[Any]]:
    """The chain's messages on the broker, by topic name."""
    out = {name: read_topic(settings, name, 1) for name in CHAIN_TOPICS}
    out["models.verdicts"] = [m for m in out["models.verdicts"]
                              if decode(m.value(), ShadowVerdict).decision == "promote"]
    out["models.promotions"] = [m for m in out["models.promotions"]
                                if decode(m.value(), ModelPromotion).cause == "shadow"]
    for name, found in out.items():
        assert len(found) == 1, f"{name}: {len(found)} messages"
    return out


def _assert_chain(spans: list[dict[str, Any]], settings: Settings,
                  messages: dict[str, list[Any]]) -> str:
    """Check the chain over flat span dicts (``read_spans`` shape); returns the trace id."""
    by_id = {s["span_id"]: s for s in spans}

    def only(name: str, **attrs: Any) -> dict[str, Any]:
        found = [s for s in spans if s["name"] == name
                 and all(s["attributes"].get(k) == v for k, v in attrs.items())]
        assert len(found) == 1, f"{name} {attrs}: {len(found)} spans"
        return found[0]

    def parent(span: dict[str, Any]) -> dict[str, Any]:
        assert span["parent_span_id"] in by_id, f"{span['name']}: parent not exported"
        return by_id[span["parent_span_id"]]

    def send(topic: str, child_of: dict[str, Any]) -> dict[str, Any]:
        found = [s for s in spans if s["name"] == f"send {settings.topic(topic)}"
                 and s["parent_span_id"] == child_of["span_id"]]
        assert len(found) == 1, f"send {topic} under {child_of['name']}: {len(found)}"
        assert found[0]["kind"] == SpanKind.PRODUCER.value + 1  # OTLP enum: 4 = producer
        return found[0]

    decision = only("retrain decision")
    trace_id = decision["trace_id"]
    assert decision["service_name"] == "driftloop-drift"
    evaluation = parent(decision)
    assert evaluation["name"] == "drift window evaluation"
    report_id = evaluation["attributes"]["driftloop.report_id"]
    request = decode(messages["retrain.requests"][0].value(), RetrainRequest)
    assert report_id in request.drift_report_ids
    assert decision["attributes"]["driftloop.request_id"] == request.request_id

    send_request = send("retrain.requests", decision)
    run = only("training run", **{"driftloop.request_id": request.request_id})
    assert run["service_name"] == "driftloop-train"
    assert run["kind"] == SpanKind.CONSUMER.value + 1  # 5 = consumer
    assert run["parent_span_id"] == send_request["span_id"], "training run not under request"
    register = only("register candidate")
    assert register["parent_span_id"] == run["span_id"]
    send_candidate = send("models.candidates", register)

    promotion = only("shadow promotion")
    assert promotion["service_name"] == "driftloop-shadow"
    assert promotion["parent_span_id"] == send_candidate["span_id"], (
        "shadow promotion is not a child of the candidate message's context")
    send_verdict = send("models.verdicts", promotion)
    send_promotion = send("models.promotions", promotion)

    chain = [evaluation, decision, send_request, run, register, send_candidate, promotion,
             send_verdict, send_promotion]
    assert {s["trace_id"] for s in chain} == {trace_id}
    # each message carries the context of the span that sent it
    for topic, sent in (("retrain.requests", send_request), ("models.candidates", send_candidate),
                        ("models.verdicts", send_verdict),
                        ("models.promotions", send_promotion)):
        assert _traceparent(messages[topic][0]) == (trace_id, sent["span_id"]), topic
    candidate = decode(messages["models.candidates"][0].value(), ModelCandidate)
    assert candidate.request_id == request.request_id
    assert decode(messages["models.promotions"][0].value(),
                  ModelPromotion).new_champion == candidate.version
    return trace_id


def _flat(service: str, span: Any) -> dict[str, Any]:
    """An SDK ``ReadableSpan`` in the ``read_spans`` shape (hex ids, OTLP kind enum)."""
    return {
        "trace_id": f"{span.context.trace_id:032x}",
        "span_id": f"{span.context.span_id:016x}",
        "parent_span_id": None if span.parent is None else f"{span.parent.span_id:016x}",
        "name": span.name,
        "kind": span.kind.value + 1,
        "attributes": dict(span.attributes or {}),
        "service_name": f"driftloop-{service}",
    }


@pytest.mark.soak  # make soak; make test keeps the chain across processes (as deployed)
def test_chain_is_one_trace_in_one_process(settings: Settings, tmp_path: Path) -> None:
    world = prepare(settings, tmp_path)
    loop = Loop(world)
    loop.build()
    try:
        run_to_promotion(loop)
    finally:
        loop.stop()
    spans = [_flat(service, span) for service, span in loop.spans()]
    trace_id = _assert_chain(spans, world.settings, _messages(world.settings))
    # the drift report's own message carries the same trace (report id -> trace)
    reports = read_topic(world.settings, "drift.reports", 3)
    evaluation = next(s for s in spans if s["name"] == "retrain decision")
    report_id = next(s for s in spans if s["span_id"] == evaluation["parent_span_id"])[
        "attributes"]["driftloop.report_id"]
    report = next(m for m in reports if header(m, "event_id") == report_id)
    assert _traceparent(report)[0] == trace_id
    assert world.registry.get_alias(MODEL, "champion") == world.champion + 1


# ------------------------------------------------------------- across processes


def _service(name: str, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    out = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "services.cli.main", "run", name],
                            env=env, stdout=out, stderr=subprocess.STDOUT)


def _stop(procs: dict[str, subprocess.Popen[bytes]], logs: Path) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for name, proc in procs.items():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{name} did not stop on SIGTERM:\n"
                                 + (logs / f"{name}.log").read_text()[-3000:]) from None


def _world_env(world: World, tmp_path: Path) -> dict[str, str]:
    s = world.settings
    config = tmp_path / "driftloop.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"bootstrap_servers": s.kafka.bootstrap_servers},
        "topics": {"prefix": s.topics.prefix},
        "state_dir": str(s.state_dir), "registry_uri": s.registry_uri,
        "feast": {"repo": str(world.repo), "project": world.project},
        "models": s.model_dump(mode="json", exclude_none=True)["models"],
    }))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DRIFTLOOP_", "OTEL_"))}
    env.update({
        "DRIFTLOOP_CONFIG": str(config),
        "OTEL_TRACES_EXPORTER": "file", "OTEL_METRICS_EXPORTER": "none",
        "DRIFTLOOP_OBSERVABILITY__OTEL_FILE": str(tmp_path / "otel.jsonl"),
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "PYTHONWARNINGS": "ignore",
    })
    return env


def test_chain_is_one_trace_across_processes(settings: Settings, tmp_path: Path) -> None:
    from services.features.history import write_history

    world = prepare(settings, tmp_path)
    s = world.settings
    first = live_frame(0, N_FIRST)
    # the first stretch is already in the store (ingest is covered by the in-process test)
    write_history(world.store(), first, mode="append")
    produce(s, first, labels=False)
    env = _world_env(world, tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = {name: _service(name, env, logs) for name in ("drift", "train", "shadow")}
    book = s.state_dir / "shadow" / "book.json"

    def running(what: str) -> None:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode} waiting for {what}:"
                                     f"\n{(logs / f'{name}.log').read_text()[-3000:]}")

    def in_shadow() -> bool:
        running("the candidate in shadow")
        if not book.exists():
            return False
        runs = json.loads(book.read_text())["runs"]
        return any(run["model"] == MODEL and run["traceparent"] for run in runs)

    try:
        wait_for(in_shadow, 120, "the candidate in the shadow book")
        produce(s, live_frame(N_FIRST, N_SHADOW))

        def promoted() -> bool:
            running("the promotion")
            return world.registry.get_alias(MODEL, "champion") == world.champion + 1

        wait_for(promoted, 60, "the promotion")
        time.sleep(1.0)  # the promotion's events are flushed right after the alias moves
    finally:
        _stop(procs, logs)
    spans = read_spans(tmp_path / "otel.jsonl")
    assert {s["service_name"] for s in spans} >= {
        "driftloop-drift", "driftloop-train", "driftloop-shadow"}
    _assert_chain(spans, s, _messages(s))
