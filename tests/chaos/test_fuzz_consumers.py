"""Bad input for every stream consumer: no loop crashes, every message is accounted for.

For each service one broker round: hypothesis draws a list of bad messages (random
bytes, truncated JSON, ``NaN``/``Infinity`` literals, ``1e999``, wrong types, missing
fields, unknown schema versions, over-long ids, one over-size message; see
:mod:`chaos.badinput`), they are produced mixed with valid events and with
valid-but-odd ones (unknown models, unknown features, huge numbers and strings,
duplicate event ids), the real service runs in-process until it consumed them all, and
the test asserts that the dead-letter topic holds exactly the expected count per reason,
that the valid events were handled (or ignored, where the service documents it), that
dead letters + handled + ignored == produced, and that the loop ended by itself.

The services' documented handling of valid-but-odd events:
- drift: unknown model -> dead letter ``unknown_model``; unknown feature names are
  ignored, non-numbers in numeric features count as missing (the event is in its window);
  garbage on the control topics it reads outside its group is skipped (their own
  consumers dead-letter it);
- online: models it does not learn are ignored; a label that is not 0/1 -> dead letter
  ``invalid_label``; a repeated event id is joined once;
- shadow: events of models without a shadow run are ignored; a candidate that cannot be
  compared (no champion, sha256 mismatch) gets a ``reject`` verdict;
- train: a request already registered re-publishes its candidate; one that cannot be
  trained (no champion) -> dead letter ``training_failed``;
- ingest (strict: whatever it stores trains the next model): unknown model ->
  ``unknown_model``, a feature the FeatureService lacks -> ``unknown_feature``, one it
  needs absent -> ``missing_feature`` (null is how to send a missing value), a string for
  a number or a number for a category -> ``wrong_type``, a label whose features never
  came -> ``label_unmatched`` once it is older than the label wait; huge finite numbers
  and long strings are stored, repeated events are stored again (the snapshot keeps one).
  ``non_finite`` cannot arrive over JSON: the codec refuses ``NaN`` and ``1e999`` first.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from chaos.badinput import Bad, bad_message, oversize
from chaos.ledger import FaultRecorder
from chaos.topics import read_all
from chaos.workers import drift as drift_worker
from chaos.workers import shadow as shadow_worker
from streams.codec import DecodeFailure, decode, encode
from streams.contracts import (
    Event,
    FeatureEvent,
    LabelEvent,
    ModelCandidate,
    ModelPromotion,
    RetrainRequest,
    ShadowVerdict,
)
from streams.deadletter import REASON_HEADER
from streams.producer import EventProducer
from streams.settings import Settings, load_settings

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

T0 = datetime(2026, 3, 1, tzinfo=UTC)
BAD_PER_TOPIC = 40
SEED = 20261124


def _bad_list(template: Event, n: int = BAD_PER_TOPIC) -> list[Bad]:
    """``n`` bad variants of ``template``: hypothesis's examples, collected (seeded) for one
    broker round rather than one round per example; plus one over-size message."""
    out: list[Bad] = []

    @hsettings(max_examples=n, deadline=None, database=None, phases=[Phase.generate],
               suppress_health_check=list(HealthCheck))
    @seed(SEED)
    @given(bad_message(template))
    def collect(bad: Bad) -> None:
        out.append(bad)

    collect()
    return [*out, oversize(template)]


Outgoing = tuple[str, bytes, str]  # topic name, value, key


def _produce(settings: Settings, messages: list[Outgoing], seed: int) -> None:
    """Produce in a seeded shuffled order (relative order per topic kept for pairs)."""
    # the over-size message needs a client limit above the codec's (librdkafka: 1 MB)
    with EventProducer(settings, "fuzz-source",
                       extra_config={"message.max.bytes": 4_000_000}) as producer:
        for topic, value, key in messages:
            producer.send_raw(settings.topic(topic), value, key.encode(), [])


def _dead_letters(settings: Settings) -> Counter[str]:
    records = read_all(settings, "deadletter")
    return Counter(r.headers[REASON_HEADER].decode() for r in records)


def _consumed_all(service: Any, produced: int, extra: Callable[[], bool] = lambda: True,
                  ) -> Callable[[], bool]:
    return lambda: service.loop.stats.consumed >= produced and extra()


def _record(ledger: FaultRecorder, service: str, expected: Counter[str], got: Counter[str],
            handled: int, handled_expected: int, produced: int) -> None:
    """Ledger row: bad messages injected, those dead-lettered with their reason, and valid
    events the service failed to handle (lost)."""
    survived = sum(min(n, got[reason]) for reason, n in expected.items())
    ledger.fault(
        f"bad input to the {service} (fuzzed, dead-lettered by reason)",
        injected=sum(expected.values()), survived=survived,
        lost=max(0, handled_expected - handled),
        detail=(f"seed {SEED}; {produced} messages: {dict(sorted(expected.items()))} "
                f"expected, {dict(sorted(got.items()))} dead-lettered; {handled} of "
                f"{handled_expected} valid events handled; the loop ended by itself"),
    )


def _interleave(rng: random.Random, good: list[Outgoing], bad: list[Outgoing]) -> list[Outgoing]:
    """Bad messages at random places among the good ones (the good keep their order)."""
    out = list(good)
    for item in bad:
        out.insert(rng.randrange(len(out) + 1), item)
    return out


def test_oracle_matches_codec() -> None:
    """The expected reasons of :mod:`chaos.badinput` are the codec's (many examples)."""
    templates = [
        FeatureEvent(event_id="e", model="m1", entity_id="c", event_time=T0,
                     features={"x0": 1.5, "channel": "pos"}),
        LabelEvent(event_id="e", model="m1", label=1.0, event_time=T0),
        RetrainRequest(event_id="e", request_id="r", model="m", reason="manual",
                       base_version=1, window_start=T0, window_end=T0, requested_at=T0),
    ]

    @hsettings(max_examples=300, deadline=None, database=None)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        template = data.draw(st.sampled_from(templates))
        bad = data.draw(bad_message(template))
        with pytest.raises(DecodeFailure) as failure:
            decode(bad.value, type(template))
        assert failure.value.reason.value == bad.reason, bad

    check()


def test_nested_wrong_type_is_classified_wrong_type() -> None:
    doc = encode(FeatureEvent(event_id="e", model="m1", entity_id="c", event_time=T0,
                              features={})).replace(b'"features":{}', b'"features":"x"')
    with pytest.raises(DecodeFailure) as failure:
        decode(doc, FeatureEvent)
    assert failure.value.reason.value == "wrong_type"


# -- drift ---------------------------------------------------------------------------------

def _feature(i: int, model: str, features: dict[str, Any]) -> FeatureEvent:
    return FeatureEvent(event_id=f"ev{i}", model=model, entity_id=f"c{i % 7}",
                        event_time=T0 + timedelta(milliseconds=10 * i), features=features)


@pytest.mark.timeout(120)
def test_drift_monitor_fuzz(settings: Settings, ledger: FaultRecorder) -> None:
    from services.drift.references import StaticReferences
    from services.drift.service import DriftMonitor
    from services.observability.setup import in_memory_telemetry

    rows = drift_worker.frame(400, 5).to_dict("records")
    valid = [_feature(i, "m1", {k: (v.item() if hasattr(v, "item") else v)
                               for k, v in row.items()}) for i, row in enumerate(rows)]
    odd = [
        _feature(1000, "m1", {**valid[0].features, "unknown_feature": 3.0, "zz": "q"}),
        _feature(1001, "m1", {**valid[1].features, "x0": "s" * 20_000}),
        _feature(1002, "m1", {**valid[2].features, "x1": 1e308, "x2": -1e308}),
        _feature(1003, "m1", {**valid[3].features, "x3": 10.0 ** 30}),
        _feature(1004, "m1", {"channel": "never-seen-channel"}),  # every numeric missing
        valid[5], valid[6],  # duplicate event ids
    ]
    strangers = [_feature(2000 + i, f"unknown-{i}", {"x0": 1.0}) for i in range(5)]
    bad = _bad_list(valid[0])
    rng = random.Random(SEED)
    good = [("features", encode(e), e.entity_id) for e in [*valid, *odd]]
    messages = _interleave(rng, good, [("features", encode(e), e.entity_id) for e in strangers]
                           + [("features", b.value, "k") for b in bad])
    # garbage on the control topics it reads beside its group (requests, verdicts,
    # promotions) is skipped there: their own consumers dead-letter it, not the monitor
    promotion = ModelPromotion(event_id="p", model="m1", new_champion=2, previous_champion=1,
                               cause="manual", promoted_at=T0)
    control = [(topic, b.value, "k") for topic, template in (
        ("models.promotions", promotion), ("models.verdicts", promotion),
        ("retrain.requests", promotion)) for b in _bad_list(template, 10)]
    _produce(settings, [*control[::2], *messages, *control[1::2]], 0)

    options = {"window_events": 200, "window_seconds": 3600, "ks_method": "asymp",
               "idle_flush_seconds": 1.0}
    s = load_settings(**{**settings.model_dump(), "models": {"m1": {"drift": options}}})
    monitor = DriftMonitor(s, telemetry=in_memory_telemetry("fuzz-drift"),
                           references=StaticReferences({"m1": drift_worker.reference()}))
    handled = len(valid) + len(odd)
    stats = monitor.run(until=_consumed_all(monitor, len(messages),
                                            lambda: monitor.stats.events_reported >= handled),
                        idle_timeout_s=20)

    expected = Counter(b.reason for b in bad) + Counter({"unknown_model": len(strangers)})
    got = _dead_letters(s)
    _record(ledger, "drift monitor", expected, got, monitor.stats.events_reported, handled,
            len(messages))
    assert stats.consumed == len(messages)
    assert got == expected  # nothing from the control topics
    assert monitor.stats.events_reported == handled
    assert sum(expected.values()) + handled == len(messages)


# -- online --------------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_online_service_fuzz(settings: Settings, ledger: FaultRecorder) -> None:
    from chaos.test_service_kills import _agrawal_events
    from chaos.workers import online as online_worker
    from services.observability.setup import in_memory_telemetry
    from services.online.service import build

    pairs = _agrawal_events(300)
    feats, labels = [f for f, _ in pairs], [y for _, y in pairs]
    odd_features = [
        FeatureEvent(event_id="odd-1", model=online_worker.MODEL, entity_id="c1", event_time=T0,
                     features={**feats[0].features, "unknown_feature": 1.0}),
        FeatureEvent(event_id="odd-2", model=online_worker.MODEL, entity_id="c2", event_time=T0,
                     features={**feats[1].features, "salary": 1e308}),
        feats[2], feats[3],  # duplicates
        FeatureEvent(event_id="u-1", model="nobody", entity_id="c", event_time=T0,
                     features={"a": 1.0}),
    ]
    odd_labels = [
        LabelEvent(event_id="odd-1", model=online_worker.MODEL, label=1.0, event_time=T0),
        LabelEvent(event_id="odd-2", model=online_worker.MODEL, label=0.0, event_time=T0),
        labels[2],  # duplicate
        LabelEvent(event_id="u-1", model="nobody", label=1.0, event_time=T0),
        LabelEvent(event_id="odd-3", model=online_worker.MODEL, label=0.5, event_time=T0),
        LabelEvent(event_id="odd-4", model=online_worker.MODEL, label=1e300, event_time=T0),
    ]
    bad_f = _bad_list(feats[0])
    bad_l = _bad_list(labels[0])
    rng = random.Random(SEED)
    good = [("features", encode(e), e.entity_id) for e in [*feats, *odd_features]]
    good += [("labels", encode(e), "k") for e in [*labels, *odd_labels]]
    messages = _interleave(rng, good, [("features", b.value, "k") for b in bad_f]
                           + [("labels", b.value, "k") for b in bad_l])
    _produce(settings, messages, 0)

    s = load_settings(**{**settings.model_dump(),
                         "models": {online_worker.MODEL: {"online": {"spec": online_worker.SPEC}}}})
    service = build(s, snapshot_every=100, snapshot_interval_s=1.0, batch_size=200,
                    telemetry=in_memory_telemetry("fuzz-online"))
    learner = service.state.learners[online_worker.MODEL]
    unique_pairs = len(pairs) + 2  # odd-1, odd-2
    stats = service.run(until=_consumed_all(service, len(messages),
                                            lambda: learner.learned >= unique_pairs),
                        idle_timeout_s=20)

    expected = (Counter(b.reason for b in [*bad_f, *bad_l])
                + Counter({"invalid_label": 2}))
    ignored = 2  # the unknown model's feature and label
    duplicates = 3
    got = _dead_letters(s)
    _record(ledger, "online service", expected, got, learner.learned, unique_pairs,
            len(messages))
    assert stats.consumed == len(messages)
    assert got == expected
    assert learner.learned == unique_pairs
    assert sum(expected.values()) + 2 * unique_pairs + duplicates + ignored == len(messages)


# -- shadow --------------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_shadow_service_fuzz(settings: Settings, ledger: FaultRecorder) -> None:
    from services.observability.setup import in_memory_telemetry
    from services.registry.store import ModelRegistry
    from services.shadow.service import ShadowService

    model = shadow_worker.MODEL
    registry = ModelRegistry(settings.registry_uri)
    v1, _ = shadow_worker.register_toy(registry, 0.3, None)
    v2, sha2 = shadow_worker.register_toy(registry, 1.0, v1)
    v3, _ = shadow_worker.register_toy(registry, 2.0, v1)
    registry.set_alias(model, "champion", v1, expected=None)

    def candidate(version: int, sha: str, name: str = model) -> ModelCandidate:
        return ModelCandidate(event_id=f"cand-{name}-{version}", model=name, version=version,
                              parent_version=v1, request_id=f"req-{version}",
                              registry_uri=registry.uri(model, version), sha256=sha)

    feats = [FeatureEvent(event_id=f"ev{i}", model=model, entity_id="e",
                          event_time=T0 + timedelta(seconds=i),
                          features={"x": random.Random(i).gauss(0, 1)}) for i in range(150)]
    labels = [LabelEvent(event_id=f"ev{i}", model=model, label=float(i % 2),
                         event_time=T0 + timedelta(seconds=i)) for i in range(150)]
    odd = [
        FeatureEvent(event_id="odd-1", model=model, entity_id="e", event_time=T0,
                     features={"x": "not a number"}),
        FeatureEvent(event_id="odd-2", model=model, entity_id="e", event_time=T0,
                     features={"x": 1e308, "unknown_feature": 2.0}),
        FeatureEvent(event_id="odd-3", model=model, entity_id="e", event_time=T0, features={}),
        FeatureEvent(event_id="odd-4", model="nobody", entity_id="e", event_time=T0,
                     features={"x": 1.0}),
        feats[0],  # duplicate
    ]
    odd_labels = [LabelEvent(event_id="odd-1", model=model, label=1e300, event_time=T0),
                  LabelEvent(event_id="odd-2", model=model, label=-3.0, event_time=T0),
                  labels[0]]
    odd_candidates = [candidate(v3, "0" * 64),  # sha256 mismatch: must be refused
                      candidate(1, "1" * 64, name="nobody")]  # a model without champion
    bad = {t: _bad_list(e) for t, e in
           (("features", feats[0]), ("labels", labels[0]), ("models.candidates",
                                                           candidate(v2, sha2)))}
    rng = random.Random(SEED)
    good = [("models.candidates", encode(candidate(v2, sha2)), model)]
    for f, y in zip(feats, labels, strict=True):
        good += [("features", encode(f), "e"), ("labels", encode(y), "e")]
    good += [("features", encode(e), "e") for e in odd]
    good += [("labels", encode(e), "e") for e in odd_labels]
    good += [("models.candidates", encode(c), model) for c in odd_candidates]
    messages = _interleave(rng, good, [(t, b.value, "k") for t, bs in bad.items() for b in bs])
    _produce(settings, messages, 0)

    service = ShadowService(settings, telemetry=in_memory_telemetry("fuzz-shadow"))
    stats = service.run(until=_consumed_all(service, len(messages)), idle_timeout_s=20)
    verdicts = [r.event for r in read_all(settings, "models.verdicts", ShadowVerdict)]

    expected = Counter(b.reason for bs in bad.values() for b in bs)
    got = _dead_letters(settings)
    _record(ledger, "shadow service", expected, got, stats.handled, len(good), len(messages))
    assert stats.consumed == len(messages)
    assert got == expected
    assert {(v.model, v.candidate, v.decision) for v in verdicts} >= {
        (model, v3, "reject"), ("nobody", 1, "reject")}
    assert registry.get_alias(model, "champion") in (v1, v2)
    assert sum(expected.values()) + len(good) == len(messages)


# -- train ---------------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_training_worker_fuzz(settings: Settings, ledger: FaultRecorder) -> None:
    from services.observability.setup import in_memory_telemetry
    from services.registry.store import ModelRegistry
    from services.training.worker import TrainingWorker

    registry = ModelRegistry(settings.registry_uri)
    v1, _ = shadow_worker.register_toy(registry, 0.3, None)  # lineage request id req-w0.3
    registry.set_alias(shadow_worker.MODEL, "champion", v1, expected=None)

    def request(i: int, model: str, request_id: str) -> RetrainRequest:
        return RetrainRequest(event_id=f"e{i}", request_id=request_id, model=model,
                              reason="manual", base_version=None, window_start=T0,
                              window_end=T0, requested_at=T0)

    repeats = [request(i, shadow_worker.MODEL, "req-w0.3") for i in range(3)]
    untrainable = [request(10 + i, f"nobody-{i}", f"r{i}") for i in range(2)]
    bad = _bad_list(repeats[0])
    rng = random.Random(SEED)
    good = [("retrain.requests", encode(r), r.model) for r in [*repeats, *untrainable]]
    messages = _interleave(rng, good, [("retrain.requests", b.value, "k") for b in bad])
    _produce(settings, messages, 0)

    worker = TrainingWorker(settings, telemetry=in_memory_telemetry("fuzz-train"))
    started = time.monotonic()
    stats = worker.run(until=_consumed_all(worker, len(messages)), idle_timeout_s=20)
    candidates = read_all(settings, "models.candidates", ModelCandidate)

    expected = Counter(b.reason for b in bad) + Counter({"training_failed": len(untrainable)})
    got = _dead_letters(settings)
    _record(ledger, "training worker", expected, got, worker.stats.duplicates, len(repeats),
            len(messages))
    assert stats.consumed == len(messages), f"{time.monotonic() - started:.0f} s"
    assert got == expected
    assert worker.stats.duplicates == len(repeats)
    assert worker.stats.trained == 0 and worker.stats.failed == len(untrainable)
    assert len(candidates) == len(repeats)
    assert registry.list_versions(shadow_worker.MODEL) == [v1]
    assert sum(expected.values()) + len(repeats) == len(messages)


# -- ingest --------------------------------------------------------------------------------

@pytest.mark.timeout(180)
def test_ingest_service_fuzz(settings: Settings, tmp_path: Any, ledger: FaultRecorder) -> None:
    import uuid

    import pyarrow.parquet as pq

    from services.features.feast_repo import apply_repo, copy_repo, load_layout, open_repo
    from services.features.generate import Generator, GeneratorConfig
    from services.features.ingest_service import IngestService
    from services.features.snapshot import build_training_frame
    from services.observability.setup import in_memory_telemetry

    store = open_repo("embedded", repo_path=copy_repo(tmp_path / "repo"),
                       project=f"t_{uuid.uuid4().hex[:12]}")
    apply_repo(store)
    pairs = list(Generator(GeneratorConfig(seed=SEED, n_cards=50, label_delay_s=1.0))
                 .live(T0, 200))
    feats, labels = [f for f, _ in pairs], [y for _, y in pairs]

    def odd(n: int, model: str = "fraud", **changes: Any) -> FeatureEvent:
        base = feats[n]
        features = {k: v for k, v in {**base.features, **changes}.items() if v is not KeyError}
        return FeatureEvent(event_id=f"odd-{n}", model=model, entity_id=base.entity_id,
                            event_time=base.event_time, features=features)

    refused = [  # (event, reason)
        (odd(1, surprise=1.0), "unknown_feature"),
        (odd(2, amount=KeyError), "missing_feature"),
        (odd(3, amount="s" * 20_000), "wrong_type"),
        (odd(4, channel=3.0), "wrong_type"),
        (odd(5, model="nobody"), "unknown_model"),
    ]
    stored = [odd(6, amount=1e308), odd(7, channel="c" * 10_000), odd(8, amount=None),
              feats[9], feats[10]]  # the last two: repeated event ids
    refused_labels = [
        (LabelEvent(event_id="odd-5", model="nobody", label=1.0, event_time=T0), "unknown_model"),
        (LabelEvent(event_id="never-sent", model="fraud", label=1.0,
                    event_time=T0 - timedelta(days=1)), "label_unmatched"),
    ]
    stored_labels = [LabelEvent(event_id="odd-6", model="fraud", label=1.0, event_time=T0),
                     labels[11]]  # a label of a stored odd event; a repeated label
    bad_f, bad_l = _bad_list(feats[0]), _bad_list(labels[0])
    rng = random.Random(SEED)
    good = [("features", encode(e), e.entity_id) for e in [*feats, *stored]]
    good += [("labels", encode(e), e.event_id) for e in [*labels, *stored_labels]]
    wrong = [("features", encode(e), e.entity_id) for e, _ in refused]
    wrong += [("labels", encode(e), e.event_id) for e, _ in refused_labels]
    messages = _interleave(rng, good, wrong + [("features", b.value, "k") for b in bad_f]
                           + [("labels", b.value, "k") for b in bad_l])
    _produce(settings, messages, 0)

    service = IngestService(settings, store=store, models=["fraud"], flush_rows=100_000,
                            flush_interval_s=0.3, telemetry=in_memory_telemetry("fuzz-ingest"))
    settled = lambda: service.buffer.rows == 0 and service.buffer.pending_labels == 0  # noqa: E731
    stats = service.run(until=_consumed_all(service, len(messages), settled), idle_timeout_s=30)

    expected = (Counter(b.reason for b in [*bad_f, *bad_l])
                + Counter(reason for _, reason in [*refused, *refused_labels]))
    got = _dead_letters(settings)
    layout = load_layout(store, "fraud")
    on_disk = {view.name: pq.read_table(view.path).num_rows for view in (*layout.views,
                                                                          layout.labels)}
    frame, labelled = build_training_frame(store, layout, T0 - timedelta(days=2),
                                           T0 + timedelta(days=1))
    handled_expected = len(feats) + len(stored) + len(labels) + len(stored_labels)
    handled = on_disk["fraud_transaction"] + on_disk["fraud_labels"]
    _record(ledger, "ingest service", expected, got, handled, handled_expected, len(messages))
    assert stats.consumed == len(messages)
    assert got == expected
    assert on_disk == {"fraud_transaction": len(feats) + len(stored),
                       "fraud_card": len(feats) + len(stored),
                       "fraud_labels": len(labels) + len(stored_labels)}
    assert labelled == len(labels) + 1 and len(frame) == labelled  # + odd-6, repeats once
    row = frame.set_index("event_id").loc["odd-6"]
    assert row["amount"] == 1e308 and row["is_fraud"] == 1.0
    assert sum(expected.values()) + handled_expected == len(messages)
