"""Poison inputs against five services running in one process: dead-lettered, all alive.

The services of ``driftloop run ingest drift train shadow online`` run together in one
subprocess (:mod:`chaos.workers.poison`) on the embedded broker and share one HTTP
endpoint. Every input of the issue's list is sent through the broker between two
batches of valid events, while three slow clients hold the HTTP port:

- a ``label_event/1`` with a 1,000-deep nested array in an ignored field (``too_deep``;
  it raised ``RecursionError`` and killed the process);
- ``feature_event/1`` with ``event_time`` 2300-01-01Z (crashed ingest) and
  0001-01-01T00:00:00+14:00 (crashed the drift monitor), amounts of ±1e308 on labelled
  events (poisoned the online learner), names and ids with a trailing newline or a
  control character (all ``invalid_value``, the field named in the detail);
- three clients sending one header line every 5 s (held their connections past 45 s).

Then it asserts, from what the system produced: the dead-letter topic holds, for each
input and each service that reads its topic, exactly the expected reason (the table
below is written here, not derived from the code); the process is alive (pid and
``/healthz``); the valid events sent after the poison are learned and every group
committed past every message; ``/predict`` answers a finite probability; the slow
clients were cut off at the request deadline. The process is then stopped, started
again, and the same inputs are sent once more: the same dead letters, nothing crashes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from confluent_kafka import Consumer, TopicPartition

from chaos.ledger import FaultRecorder
from chaos.topics import Record
from streams.broker import free_port
from streams.contracts import DriftReport
from streams.deadletter import DETAIL_HEADER, REASON_HEADER, SERVICE_HEADER
from streams.producer import EventProducer
from streams.settings import Settings
from streams.tail import TopicTail

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

TESTS_DIR = Path(__file__).resolve().parents[1]
MODEL = "fraud"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
DEADLINE_S = 10.0  # the endpoint's whole-request deadline (the default)
SLOW_EVERY_S = 5.0  # the slow clients' pace: under the deadline, so no single read times out
READERS = {  # which services consume each input topic (their groups)
    "features": ("ingest", "drift", "shadow", "online"),
    "labels": ("ingest", "shadow", "online"),
}
GROUPS = {name: f"driftloop-{name}" for name in ("ingest", "drift", "shadow", "online")}
N_VALID = 30  # valid labelled events per batch


def _features(spec_row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec_row.items() if k not in ("is_fraud", "card_id",
                                                            "event_timestamp")}


def _feature_doc(event_id: str, features: dict[str, Any], **over: Any) -> dict[str, Any]:
    doc = {"schema": "feature_event/1", "event_id": event_id, "model": MODEL,
           "entity_id": f"card-{event_id}", "event_time": "2026-03-01T00:00:00Z",
           "features": features}
    doc.update(over)
    return doc


def _label_doc(event_id: str, label: float, **over: Any) -> dict[str, Any]:
    doc = {"schema": "label_event/1", "event_id": event_id, "model": MODEL, "label": label,
           "event_time": "2026-03-01T00:00:01Z"}
    doc.update(over)
    return doc


def _poison(features: dict[str, Any]) -> list[tuple[str, str, bytes, str, str]]:
    """(name, topic, bytes, expected reason, expected detail prefix) per poison input."""
    enc = msgspec.json.encode
    deep = enc(_label_doc("deep", 1.0))[:-1] + b',"note":' + b"[" * 1000 + b"]" * 1000 + b"}"
    bad_name = {**features, "amount\x07": 1.0}
    return [
        ("label_event, 1,000-deep array in an ignored field", "labels", deep, "too_deep",
         "JSON nesting depth 1001"),
        ("feature_event, event_time 2300-01-01Z", "features",
         enc(_feature_doc("p-2300", features, event_time="2300-01-01T00:00:00Z")),
         "invalid_value", "event_time: 2300-01-01"),
        ("feature_event, event_time 0001-01-01T00:00:00+14:00", "features",
         enc(_feature_doc("p-0001", features, event_time="0001-01-01T00:00:00+14:00")),
         "invalid_value", "event_time: 0001-01-01"),
        ("feature_event, amount 1e308 (labelled)", "features",
         enc(_feature_doc("p-big", {**features, "amount": 1e308})),
         "invalid_value", "features.amount: 1e+308 exceeds"),
        ("feature_event, amount -1e308 (labelled)", "features",
         enc(_feature_doc("p-small", {**features, "amount": -1e308})),
         "invalid_value", "features.amount: -1e+308 exceeds"),
        ("feature_event, model 'fraud\\n'", "features",
         enc(_feature_doc("p-model", features, model="fraud\n")), "invalid_value", "model: "),
        ("feature_event, entity_id with a trailing newline", "features",
         enc(_feature_doc("p-entity", features, entity_id="card-7\n")),
         "invalid_value", "entity_id: contains a control character"),
        ("feature_event, feature name with a control character", "features",
         enc(_feature_doc("p-name", bad_name)), "invalid_value", "features.'amount\\x07'"),
        ("label_event, event_id with a carriage return", "labels",
         enc(_label_doc("p-label\r", 1.0)), "invalid_value", "event_id: contains a control"),
        ("label_event, model 'fraud\\n'", "labels",
         enc(_label_doc("p-lmodel", 0.0, model="fraud\n")), "invalid_value", "model: "),
    ]


def _valid(rows: list[dict[str, Any]], tag: str, start: datetime) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for i, row in enumerate(rows):
        at = start + timedelta(seconds=i)
        eid = f"{tag}-{i}"
        out.append(("features", msgspec.json.encode(_feature_doc(
            eid, _features(row), event_time=at.isoformat().replace("+00:00", "Z")))))
    for i, row in enumerate(rows):
        at = start + timedelta(seconds=i + 1)
        out.append(("labels", msgspec.json.encode(_label_doc(
            f"{tag}-{i}", float(row["is_fraud"]),
            event_time=at.isoformat().replace("+00:00", "Z")))))
    return out


def _send(settings: Settings, messages: list[tuple[str, bytes, list[tuple[str, bytes]]]]) -> None:
    producer = EventProducer(settings, "poison-test")
    for topic, value, headers in messages:
        producer.send_raw(settings.topic(topic), value, b"poison-test", headers)
    producer.flush()
    producer.close()


def _http(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _wait(check: Any, what: str, proc: subprocess.Popen[str], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the services' process exited ({proc.returncode})"
        with contextlib.suppress(OSError, ValueError, KeyError):
            got = check()
            if got:
                return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _slow_client(port: int, held: list[float]) -> None:
    """One header line every SLOW_EVERY_S; how long until the server closed the connection."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock, contextlib.suppress(OSError):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: poison\r\n")
        for i in range(20):  # up to 100 s if nothing cuts it off
            readable, _, _ = select.select([sock], [], [], SLOW_EVERY_S)
            if readable and not sock.recv(1024):
                break  # closed by the server
            sock.sendall(f"X-Slow-{i}: 1\r\n".encode())
    held.append(time.monotonic() - started)


def _committed(settings: Settings, group: str, topic: str) -> int:
    consumer = Consumer(settings.kafka.consumer_config(f"{settings.topics.prefix}{group}"))
    try:
        parts = consumer.committed(
            [TopicPartition(settings.topic(topic), p) for p in range(3)], timeout=10)
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in parts)


def _learned(url: str) -> int:
    _, doc = _http(f"{url}/healthz")
    return int(doc["services"]["driftloop-online"]["detail"][MODEL]["learned"])


class Services:
    """The services' process: started, probed, stopped."""

    def __init__(self, args: dict[str, Any], log: Path) -> None:
        env = {**os.environ, "PYTHONPATH": f"{TESTS_DIR}{os.pathsep}{TESTS_DIR.parent}"}
        self.log = log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chaos.workers.poison", json.dumps(args)],
            stdout=self.log, stderr=subprocess.STDOUT, text=True, env=env,
        )
        self.url = f"http://127.0.0.1:{args['http_port']}"

    def healthy(self) -> dict[str, Any]:
        code, doc = _http(f"{self.url}/healthz")
        return doc if code == 200 and len(doc.get("services", {})) == 5 else {}

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        finally:
            self.log.close()


def _round(settings: Settings, services: Services, rows: list[dict[str, Any]], tag: str,
           start: datetime, poison: list[tuple[str, str, bytes, str, str]]) -> None:
    """Valid events, the poison, valid events again, each batch tagged with ``tag``."""
    before, after = rows[:N_VALID], rows[N_VALID:]
    _send(settings, [(t, v, [("round", tag.encode())]) for t, v in _valid(before, f"{tag}a",
                                                                         start)])
    _send(settings, [(topic, value, [("poison", name.encode()), ("round", tag.encode())])
                     for name, topic, value, _, _ in poison])
    labels = [(t, msgspec.json.encode(_label_doc(eid, 1.0)), [("companion", eid.encode())])
              for t, eid in (("labels", "p-big"), ("labels", "p-small"))]
    _send(settings, labels)
    _send(settings, [(t, v, [("round", tag.encode())]) for t, v in _valid(after, f"{tag}b",
                                                                        start + timedelta(
                                                                            minutes=5))])


def _read(settings: Settings, topic: str, event_type: type | None = None,
          quiet_s: float = 1.0) -> list[Record]:
    """Every message of ``topic``, by assigned partitions (no group join to wait for);
    raw without ``event_type``, and with one, every message must decode."""
    out: list[Record] = []
    with TopicTail(settings, {settings.topic(topic): event_type}, name="reader") as tail:
        last = time.monotonic()
        # Quiet counts from the first message (the first fetch may take seconds); an empty
        # topic is empty after 10 s.
        while time.monotonic() - last < (quiet_s if out else 10.0):
            for r in tail.poll(timeout=0.2):
                last = time.monotonic()
                out.append(Record(r.partition, r.offset, r.value, dict(r.headers), r.event))
    assert not tail.undecodable, f"{tail.undecodable} undecodable messages on {topic}"
    return out


def _letters(settings: Settings) -> list[Record]:
    return _read(settings, "deadletter")


@pytest.mark.timeout(240)
def test_poison_inputs_are_dead_lettered_and_every_service_lives(
    settings: Settings, tmp_path: Path, ledger: FaultRecorder
) -> None:
    import services.features.feast_repo as feast_repo
    from services.training.synthetic import synthetic_frame

    repo = feast_repo.copy_repo(tmp_path / "repo")
    project = f"p_{uuid.uuid4().hex[:10]}"
    store = feast_repo.open_repo("embedded", repo_path=repo, project=project)
    feast_repo.apply_repo(store)
    spec = feast_repo.load_layout(store, MODEL).spec
    frame = synthetic_frame(4 * N_VALID, spec, seed=7)
    rows = frame.to_dict("records")
    poison = _poison(_features(rows[0]))
    port = free_port()
    args = {"bootstrap": settings.kafka.bootstrap_servers, "prefix": settings.topics.prefix,
            "state_dir": str(tmp_path / "state"), "registry": str(tmp_path / "registry"),
            "repo": str(repo), "project": project, "http_port": port,
            "deadline_s": DEADLINE_S}
    log = tmp_path / "services.log"

    expected: dict[tuple[str, str, str], str] = {}  # (round, input, service) -> reason
    prefixes = {name: prefix for name, _, _, _, prefix in poison}
    for tag in ("r1", "r2"):
        for name, topic, _, reason, _ in poison:
            for service in READERS[topic]:
                expected[(tag, name, service)] = reason

    first = Services(args, log)
    try:
        _wait(first.healthy, "the five services' /healthz", first.proc, timeout=90)
        held: list[float] = []
        slow = [threading.Thread(target=_slow_client, args=(port, held)) for _ in range(3)]
        for client in slow:
            client.start()
        _round(settings, first, rows[:2 * N_VALID], "r1", T0, poison)
        _wait(lambda: _learned(first.url) >= 2 * N_VALID, "the valid events learned",
              first.proc)
        for client in slow:
            client.join(60)
        assert first.proc.poll() is None
        health_1 = first.healthy()
        alive_1 = first.proc.poll() is None and bool(health_1) and health_1["status"] == "ok"
        assert alive_1, health_1
        code, answer = _http(f"{first.url}/predict",
                             {"model": MODEL, "features": _features(rows[-1])})
        assert code == 200, answer
        proba = answer["online"]["proba"]
        assert math.isfinite(proba) and 0.0 < proba < 1.0
        # Slow clients: cut off at the whole-request deadline, not after 20 lines (100 s).
        assert len(held) == 3, held
        assert min(held) >= DEADLINE_S - 0.5 and max(held) <= DEADLINE_S + 2.0, held
    finally:
        code_1 = first.stop()
    assert code_1 == 0, log.read_text()[-3000:]

    second = Services(args, log)
    try:
        _wait(second.healthy, "the five services' /healthz after the restart", second.proc,
              timeout=90)
        _round(settings, second, rows[2 * N_VALID:], "r2", T0 + timedelta(hours=1), poison)
        _wait(lambda: _learned(second.url) >= 4 * N_VALID, "the valid events learned again",
              second.proc)
        n_features = len(_read(settings, "features"))
        n_labels = len(_read(settings, "labels"))
        for service in READERS["features"]:
            _wait(lambda s=service: _committed(settings, GROUPS[s], "features") == n_features,
                  f"{service} committed past every feature event", second.proc)
        for service in READERS["labels"]:
            _wait(lambda s=service: _committed(settings, GROUPS[s], "labels") == n_labels,
                  f"{service} committed past every label", second.proc)
        def collect() -> tuple[dict[Any, set[str]], dict[Any, str], list[Any]] | None:
            found: dict[tuple[str, str, str], set[str]] = {}
            texts: dict[tuple[str, str, str], str] = {}
            others: list[tuple[str, str]] = []
            for record in _letters(settings):
                h = record.headers
                service, reason = h[SERVICE_HEADER].decode(), h[REASON_HEADER].decode()
                if "poison" in h:
                    key = (h["round"].decode(), h["poison"].decode(), service)
                    found.setdefault(key, set()).add(reason)
                    texts[key] = h[DETAIL_HEADER].decode()
                elif "companion" in h:
                    # The label of a dead-lettered feature event: its features never come.
                    assert (service, reason) == ("ingest", "label_unmatched"), (service, reason)
                else:
                    others.append((service, reason))
            return (found, texts, others) if set(found) >= set(expected) else None

        found, details, strays = _wait(collect, "every poison input dead-lettered", second.proc)
        # At-least-once: a redelivered message may be dead-lettered again, never otherwise.
        observed = {key: "/".join(sorted(reasons)) for key, reasons in found.items()}
        assert strays == []  # no valid event was dead-lettered
        health_2 = second.healthy()
        alive = second.proc.poll() is None and bool(health_2) and health_2["status"] == "ok"
        # The drift monitor reported windows of the valid events sent after the poison.
        last_sent = T0 + timedelta(hours=1, minutes=5, seconds=N_VALID - 1)
        reports = _wait(lambda: [r for r in _read(settings, "drift.reports", DriftReport)
                                 if r.event.window.end_time >= last_sent],
                        "a drift report after the poison", second.proc)
        assert all(f.invalid == 0 for r in reports for f in r.event.features)
    finally:
        code_2 = second.stop()

    for (tag, name, service), reason in sorted(expected.items()):
        got = observed.get((tag, name, service), "none")
        label = name if tag == "r1" else f"{name}, again after a restart"
        ledger.poison(label, service=service, expected=reason, observed=got,
                      alive=alive_1 if tag == "r1" else alive)
    ledger.poison(f"3 clients sending a header line every {SLOW_EVERY_S:.0f} s", service="http",
                  expected=f"cut off at the {DEADLINE_S:.0f} s request deadline",
                  observed=f"held {min(held):.1f}-{max(held):.1f} s", alive=alive_1)
    assert observed == expected
    for key, detail in details.items():
        assert detail.startswith(prefixes[key[1]]), (key, detail)
    assert alive, health_2
    assert code_2 == 0, log.read_text()[-3000:]
