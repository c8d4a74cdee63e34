"""Bad input for every stream consumer: no loop crashes, every dead letter is expected.

For each service one broker round: hypothesis draws bad messages (random bytes, truncated
JSON, ``NaN``/``Infinity`` literals, ``1e999``, wrong types, missing fields, unknown schema
versions, over-long ids; see :mod:`chaos.badinput`), the poison set is added (deep
nesting, repeated keys, out-of-range and odd-timezone event times, +-1e308 and values
around the magnitude limit in every numeric field, control characters and trailing
newlines in ids, names and categories, events of exactly and one byte over the size
limit: :func:`chaos.badinput.poison`), and the inputs the coverage-guided codec fuzzer
kept (``chaos.fuzz.codec_target``) follow; all are produced mixed with valid events and
valid-but-odd ones, each with a ``fuzz.n`` header. The real service runs in-process until
it consumed them all. The test then reads the source topics back (where each message
landed) and the dead-letter topic, and compares, offset by offset, the dead letters
(source topic, partition, offset -> reason) with the table of expected reasons decided in
this file and in :mod:`chaos.badinput`, independently of the code under test: no valid
event dead-lettered, no bad one missed or given another reason, none twice, and the
detail of each range violation starting with its field path. A corpus input's outcome is
not known in advance: it is dead-lettered with a known reason or handled, never with
``handler_error`` (a handler that raised). Then the service's outputs are checked
against the valid events sent.

The services' documented handling of valid-but-odd events:
- drift: unknown model -> dead letter ``unknown_model``; unknown feature names are
  ignored, non-numbers in numeric features count as missing (the event is in its window);
  garbage on the control topics it reads outside its group is skipped (their own
  consumers dead-letter it);
- online: models it does not learn are ignored; a label that is not 0/1 -> dead letter
  ``invalid_value`` (detail ``label: ...``); a repeated event id is joined once;
- shadow: events of models without a shadow run are ignored; a candidate that cannot be
  compared (no champion, sha256 mismatch) gets a ``reject`` verdict; a label that does not
  fit the champion's task, once the model is in shadow -> dead letter ``invalid_value``
  (counted ``invalid_labels``);
- train: a request already registered re-publishes its candidate; one that cannot be
  trained (no champion) -> dead letter ``training_failed``;
- ingest (strict: whatever it stores trains the next model): unknown model ->
  ``unknown_model``, a feature the FeatureService lacks -> ``unknown_feature``, one it
  needs absent -> ``missing_feature`` (null is how to send a missing value), a string for
  a number or a number for a category -> ``wrong_type``, a label whose features never
  came -> ``label_unmatched`` once it is older than the label wait; huge finite numbers
  and long strings are stored, repeated events are stored again (the snapshot keeps one).
  ``non_finite`` cannot arrive over JSON: the codec refuses ``NaN`` and ``1e999`` first.

At the edge, before any service: values beyond the configured magnitude (``1e308``), event
times outside the configured range or without a timezone, and control characters are
``invalid_value`` for every service, so a ``label`` of ``1e300`` is ``invalid_value``
and ``amount = 1e308`` is never stored.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from chaos.badinput import Bad, bad_message, limits_of, oversize, poison
from chaos.ledger import FaultRecorder
from chaos.topics import read_all
from chaos.workers import drift as drift_worker
from chaos.workers import shadow as shadow_worker
from streams.codec import DecodeFailure, DecodeReason, decode, encode
from streams.contracts import (
    Event,
    FeatureEvent,
    LabelEvent,
    ModelCandidate,
    ModelPromotion,
    RetrainRequest,
    ShadowVerdict,
)
from streams.deadletter import (
    DETAIL_HEADER,
    REASON_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
    SOURCE_TOPIC_HEADER,
)
from streams.producer import EventProducer
from streams.settings import Settings, ValidationSettings, load_settings
from streams.validation import validate

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

T0 = datetime(2026, 3, 1, tzinfo=UTC)
BAD_PER_TOPIC = 40
CORPUS_PER_TOPIC = 40  # inputs of the coverage-guided fuzzer's corpus, per input topic
SEED = 20261124
ANY = "*"
"""Expected reason of a corpus input: not known in advance (dead letter or handled)."""
KNOWN_REASONS = {r.value for r in DecodeReason} | {
    "unknown_model", "training_failed", "unknown_feature",
    "missing_feature", "wrong_type", "label_unmatched", "invalid_time"}
"""Reasons a corpus input may be dead-lettered with. Not ``handler_error``: an input that
makes a handler raise is a bug this fuzzer exists to find, not a known outcome."""
FUZZ_HEADER = "fuzz.n"


@dataclass(frozen=True, slots=True)
class Out:
    """One message to produce: where, what, and the dead-letter reason it must get
    (``None``: none; :data:`ANY`: unknown) with the field path its detail starts with."""

    topic: str
    value: bytes
    key: str
    reason: str | None = None
    path: str | None = None


def _valid(topic: str, events: list[Any], key: Callable[[Any], str]) -> list[Out]:
    return [Out(topic, encode(e), key(e)) for e in events]


def _bad(topic: str, bads: list[Bad]) -> list[Out]:
    return [Out(topic, b.value, "k", b.reason, b.path) for b in bads]


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


def _poison(topic: str, template: Event, settings: Settings, **kw: Any) -> list[Out]:
    return _bad(topic, poison(template, limits_of(settings), **kw))


def _corpus(topic: str, corpus: list[bytes]) -> list[Out]:
    return [Out(topic, value, "k", ANY) for value in corpus[:CORPUS_PER_TOPIC]]


def _produce(settings: Settings, messages: list[Out]) -> None:
    """Produce in order, each with its index in a ``fuzz.n`` header."""
    # the over-size message needs a client limit above the codec's (librdkafka: 1 MB)
    with EventProducer(settings, "fuzz-source",
                       extra_config={"message.max.bytes": 4_000_000}) as producer:
        for n, out in enumerate(messages):
            producer.send_raw(settings.topic(out.topic), out.value, out.key.encode(),
                              [(FUZZ_HEADER, str(n).encode())])


Position = tuple[str, int, int]  # full topic name, partition, offset


@dataclass(frozen=True, slots=True)
class Outcome:
    """The dead-letter topic against the expected table, offset by offset."""

    expected: dict[Position, str]
    got: dict[Position, str]
    twice: list[Position]
    corpus: dict[Position, str | None]
    wrong_path: list[tuple[Position, str, str]]

    @property
    def unknown_corpus_reasons(self) -> dict[Position, str]:
        return {p: r for p, r in self.corpus.items() if r is not None and r not in KNOWN_REASONS}


def _outcome(settings: Settings, messages: list[Out]) -> Outcome:
    """Where each message landed (read back from its topic by its ``fuzz.n`` header), and
    the dead letters by source position."""
    where: dict[int, Position] = {}
    for topic in sorted({m.topic for m in messages}):
        for r in read_all(settings, topic):
            if FUZZ_HEADER in r.headers:
                where[int(r.headers[FUZZ_HEADER])] = (settings.topic(topic), r.partition,
                                                      r.offset)
    assert len(where) == len(messages), f"{len(messages) - len(where)} messages not stored"
    dead = read_all(settings, "deadletter")
    positions = [(r.headers[SOURCE_TOPIC_HEADER].decode(),
                  int(r.headers[SOURCE_PARTITION_HEADER]), int(r.headers[SOURCE_OFFSET_HEADER]))
                 for r in dead]
    got = {p: r.headers[REASON_HEADER].decode() for p, r in zip(positions, dead, strict=True)}
    detail = {p: r.headers[DETAIL_HEADER].decode(errors="replace")
              for p, r in zip(positions, dead, strict=True)}
    twice = [p for p, n in Counter(positions).items() if n > 1]
    expected = {where[n]: m.reason for n, m in enumerate(messages)
                if m.reason is not None and m.reason != ANY}
    corpus = {where[n]: got.get(where[n]) for n, m in enumerate(messages) if m.reason == ANY}
    wrong_path = [(where[n], m.path, detail.get(where[n], "")) for n, m in enumerate(messages)
                  if m.path and not detail.get(where[n], "").startswith(m.path)]
    known = {p: r for p, r in got.items() if p not in corpus}
    return Outcome(expected, known, twice, corpus, wrong_path)


def _assert_table(outcome: Outcome) -> None:
    missing = {p: r for p, r in outcome.expected.items() if outcome.got.get(p) != r}
    extra = {p: r for p, r in outcome.got.items() if p not in outcome.expected}
    assert not missing, f"expected dead letters missing or with another reason: {missing}"
    assert not extra, f"dead letters of valid events: {extra}"
    assert outcome.got == outcome.expected
    assert not outcome.twice, f"dead-lettered twice: {outcome.twice}"
    assert not outcome.unknown_corpus_reasons, (
        f"corpus inputs dead-lettered with an unknown reason (handler_error: a handler "
        f"raised on them): {outcome.unknown_corpus_reasons}")
    assert not outcome.wrong_path, f"details without their field path: {outcome.wrong_path}"


def _consumed_all(service: Any, produced: int, extra: Callable[[], bool] = lambda: True,
                  ) -> Callable[[], bool]:
    return lambda: service.loop.stats.consumed >= produced and extra()


def _record(ledger: FaultRecorder, service: str, outcome: Outcome, handled: int,
            handled_expected: int, produced: int) -> None:
    """Ledger row: bad messages injected, those dead-lettered at their offset with their
    reason, and valid events the service failed to handle (lost)."""
    survived = sum(1 for p, r in outcome.expected.items() if outcome.got.get(p) == r)
    reasons = Counter(outcome.expected.values())
    corpus_dead = sum(1 for r in outcome.corpus.values() if r is not None)
    ledger.fault(
        f"bad input to the {service} (fuzzed and poison, dead-lettered by offset and reason)",
        injected=len(outcome.expected), survived=survived,
        lost=max(0, handled_expected - handled),
        detail=(f"seed {SEED}; {produced} messages: {dict(sorted(reasons.items()))} expected "
                f"at their offsets, {survived} matched, {len(outcome.got) - survived} "
                f"unexpected; {len(outcome.corpus)} coverage-guided corpus inputs "
                f"({corpus_dead} dead-lettered, the rest handled); {handled} of "
                f"{handled_expected} valid events handled; the loop ended by itself"),
    )


def _interleave(rng: random.Random, good: list[Out], bad: list[Out]) -> list[Out]:
    """Bad messages at random places among the good ones (the good keep their order)."""
    out = list(good)
    for item in bad:
        out.insert(rng.randrange(len(out) + 1), item)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The inputs the coverage-guided codec fuzzer kept (a short fixed-seed run)."""
    from chaos.fuzz.runner import run_codec_fuzzer

    result = run_codec_fuzzer(tmp_path_factory.mktemp("corpus"), runs=20_000, seed=SEED)
    assert result.ok, result.output[-3000:]
    return result.corpus()


# -- the oracles against the edge (decode + validation), without a broker -----------------

TEMPLATES = [
    FeatureEvent(event_id="e", model="m1", entity_id="c", event_time=T0,
                 features={"x0": 1.5, "channel": "pos"}),
    LabelEvent(event_id="e", model="m1", label=1.0, event_time=T0),
    RetrainRequest(event_id="e", request_id="r", model="m", reason="manual",
                   base_version=1, window_start=T0, window_end=T0, requested_at=T0),
]


def _edge(value: bytes, event_type: type[Event], limits: ValidationSettings) -> str | None:
    """The reason the edge gives ``value`` (None: accepted)."""
    try:
        validate(decode(value, event_type), limits)
    except DecodeFailure as failure:
        return failure.reason.value
    return None


def test_oracle_matches_codec() -> None:
    """The expected reasons of :func:`chaos.badinput.bad_message` are the edge's."""
    limits = ValidationSettings()

    @hsettings(max_examples=300, deadline=None, database=None)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        template = data.draw(st.sampled_from(TEMPLATES))
        bad = data.draw(bad_message(template))
        assert _edge(bad.value, type(template), limits) == bad.reason, bad

    check()


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: type(t).__name__)
def test_poison_oracle_matches_the_edge(template: Event) -> None:
    """Every poison variant gets the reason (and field path) decided in chaos.badinput."""
    settings = load_settings()
    limits = settings.validation
    wrong = []
    for bad in poison(template, limits_of(settings)):
        try:
            validate(decode(bad.value, type(template)), limits)
            got, detail = None, ""
        except DecodeFailure as failure:
            got, detail = failure.reason.value, failure.detail
        if got != bad.reason or (bad.path and not detail.startswith(bad.path)):
            wrong.append((bad.kind, bad.reason, got, detail[:80]))
    assert not wrong, wrong


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


@pytest.mark.timeout(180)
def test_drift_monitor_fuzz(settings: Settings, ledger: FaultRecorder,
                            corpus: list[bytes]) -> None:
    from services.drift.references import StaticReferences
    from services.drift.service import DriftMonitor
    from services.observability.setup import in_memory_telemetry

    rows = drift_worker.frame(400, 5).to_dict("records")
    valid = [_feature(i, "m1", {k: (v.item() if hasattr(v, "item") else v)
                               for k, v in row.items()}) for i, row in enumerate(rows)]
    odd = [
        _feature(1000, "m1", {**valid[0].features, "unknown_feature": 3.0, "zz": "q"}),
        _feature(1001, "m1", {**valid[1].features, "x0": "s" * 20_000}),
        _feature(1002, "m1", {**valid[2].features, "x1": 1e11, "x2": -1e11}),
        _feature(1004, "m1", {"channel": "never-seen-channel"}),  # every numeric missing
        valid[5], valid[6],  # duplicate event ids
    ]
    strangers = [_feature(2000 + i, f"unknown-{i}", {"x0": 1.0}) for i in range(5)]
    poisoned = _poison("features", valid[0], settings, boundaries=False)
    handled = len(valid) + len(odd) + sum(1 for p in poisoned if p.reason is None)
    rng = random.Random(SEED)
    good = _valid("features", [*valid, *odd], lambda e: e.entity_id)
    messages = _interleave(rng, good, [Out("features", encode(e), e.entity_id, "unknown_model")
                                       for e in strangers]
                           + _bad("features", _bad_list(valid[0])) + poisoned
                           + _corpus("features", corpus))
    # garbage on the control topics it reads beside its group (requests, verdicts,
    # promotions) is skipped there: their own consumers dead-letter it, not the monitor
    promotion = ModelPromotion(event_id="p", model="m1", new_champion=2, previous_champion=1,
                               cause="manual", promoted_at=T0)
    control = [Out(topic, b.value, "k") for topic, template in (
        ("models.promotions", promotion), ("models.verdicts", promotion),
        ("retrain.requests", promotion)) for b in _bad_list(template, 10)]
    messages = [*control[::2], *messages, *control[1::2]]
    _produce(settings, messages)

    options = {"window_events": 200, "window_seconds": 3600, "ks_method": "asymp",
               "idle_flush_seconds": 1.0}
    s = load_settings(**{**settings.model_dump(), "models": {"m1": {"drift": options}}})
    monitor = DriftMonitor(s, telemetry=in_memory_telemetry("fuzz-drift"),
                           references=StaticReferences({"m1": drift_worker.reference()}))
    corpus_sent = sum(1 for m in messages if m.reason == ANY)
    source = len(messages) - len(control)

    def settled() -> bool:
        return monitor.stats.events_reported >= handled

    stats = monitor.run(until=_consumed_all(monitor, source, settled), idle_timeout_s=20)
    outcome = _outcome(s, messages)
    corpus_handled = sum(1 for r in outcome.corpus.values() if r is None)
    _record(ledger, "drift monitor", outcome, monitor.stats.events_reported,
            handled + corpus_handled, len(messages))
    assert stats.consumed == source
    _assert_table(outcome)
    assert len(outcome.corpus) == corpus_sent
    # every valid event (and each corpus input that decoded) lies in a reported window
    assert monitor.stats.events_reported == handled + corpus_handled


# -- online --------------------------------------------------------------------------------

@pytest.mark.timeout(180)
def test_online_service_fuzz(settings: Settings, ledger: FaultRecorder,
                             corpus: list[bytes]) -> None:
    from chaos.test_service_kills import _agrawal_events
    from chaos.workers import online as online_worker
    from services.observability.setup import in_memory_telemetry
    from services.online.service import build

    pairs = _agrawal_events(300)
    feats, labels = [f for f, _ in pairs], [y for _, y in pairs]
    magnitude = settings.validation.max_abs_value
    numeric = [n for n in online_worker.NAMES if n not in online_worker.CATEGORICAL]
    at_limit = [  # valid, at the edge's magnitude: learned, and must not poison the learner
        (FeatureEvent(event_id=f"lim-{n}-{sign}", model=online_worker.MODEL,
                      entity_id="c9", event_time=T0,
                      features={**feats[4].features, n: sign * magnitude}),
         LabelEvent(event_id=f"lim-{n}-{sign}", model=online_worker.MODEL,
                    label=float(sign > 0), event_time=T0))
        for n in numeric for sign in (1, -1)]
    odd_features = [
        FeatureEvent(event_id="odd-1", model=online_worker.MODEL, entity_id="c1", event_time=T0,
                     features={**feats[0].features, "unknown_feature": 1.0}),
        FeatureEvent(event_id="odd-2", model=online_worker.MODEL, entity_id="c2", event_time=T0,
                     features={**feats[1].features, "salary": 1e11}),
        feats[2], feats[3],  # duplicates
        FeatureEvent(event_id="u-1", model="nobody", entity_id="c", event_time=T0,
                     features={"a": 1.0}),
        *(f for f, _ in at_limit),
    ]
    odd_labels = [
        LabelEvent(event_id="odd-1", model=online_worker.MODEL, label=1.0, event_time=T0),
        LabelEvent(event_id="odd-2", model=online_worker.MODEL, label=0.0, event_time=T0),
        labels[2],  # duplicate
        LabelEvent(event_id="u-1", model="nobody", label=1.0, event_time=T0),
        *(y for _, y in at_limit),
    ]
    refused_labels = [
        Out("labels", encode(LabelEvent(event_id="odd-3", model=online_worker.MODEL, label=0.5,
                                        event_time=T0)), "k", "invalid_value", "label"),
        Out("labels", encode(LabelEvent(event_id="odd-4", model=online_worker.MODEL,
                                        label=1e300, event_time=T0)), "k", "invalid_value",
            "label"),
    ]
    # +-1e308 in every numeric feature of a labelled pair: refused at the edge, both halves
    huge = [(f"huge-{n}-{sign}", n, sign) for n in numeric for sign in (1, -1)]
    huge_out = []
    for event_id, n, sign in huge:
        f = FeatureEvent(event_id=event_id, model=online_worker.MODEL, entity_id="c8",
                         event_time=T0, features={**feats[5].features, n: 0.0})
        huge_out.append(Out("features", encode(f).replace(
            f'"{n}":0.0'.encode(), f'"{n}":{"1e308" if sign > 0 else "-1e308"}'.encode()), "k",
            "invalid_value", f"features.{n}"))
        huge_out.append(Out("labels", encode(LabelEvent(
            event_id=event_id, model=online_worker.MODEL, label=1.0, event_time=T0)), "k"))
    rng = random.Random(SEED)
    good = _valid("features", [*feats, *odd_features], lambda e: e.entity_id)
    good += _valid("labels", [*labels, *odd_labels], lambda e: "k")
    messages = _interleave(rng, good, [*refused_labels, *huge_out,
                                       *_bad("features", _bad_list(feats[0])),
                                       *_bad("labels", _bad_list(labels[0])),
                                       *_poison("features", feats[0], settings),
                                       *_poison("labels", labels[0], settings),
                                       *_corpus("features", corpus), *_corpus("labels", corpus)])
    _produce(settings, messages)

    s = load_settings(**{**settings.model_dump(),
                         "models": {online_worker.MODEL: {"online": {"spec": online_worker.SPEC}}}})
    service = build(s, snapshot_every=100, snapshot_interval_s=1.0, batch_size=200,
                    telemetry=in_memory_telemetry("fuzz-online"))
    learner = service.state.learners[online_worker.MODEL]
    # pairs: the 300, odd-1, odd-2, the values at the magnitude; the +-1e308 ones never join
    unique_pairs = len(pairs) + 2 + len(at_limit)
    stats = service.run(until=_consumed_all(service, len(messages),
                                            lambda: learner.learned >= unique_pairs),
                        idle_timeout_s=20)

    outcome = _outcome(s, messages)
    _record(ledger, "online service", outcome, learner.learned, unique_pairs, len(messages))
    assert stats.consumed == len(messages)
    _assert_table(outcome)
    assert learner.learned == unique_pairs
    probabilities = [learner.predict_proba(f.features) for f in feats[:100]]
    assert all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in probabilities), probabilities[:5]
    assert len({round(p, 6) for p in probabilities}) > 1, "the learner answers a constant"


# -- shadow --------------------------------------------------------------------------------

@pytest.mark.timeout(180)
def test_shadow_service_fuzz(settings: Settings, ledger: FaultRecorder,
                             corpus: list[bytes]) -> None:
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
                     features={"x": 1e11, "unknown_feature": 2.0}),
        FeatureEvent(event_id="odd-3", model=model, entity_id="e", event_time=T0, features={}),
        FeatureEvent(event_id="odd-4", model="nobody", entity_id="e", event_time=T0,
                     features={"x": 1.0}),
        feats[0],  # duplicate
    ]
    odd_labels = [labels[0]]  # a duplicate
    # not a binary label: dead-lettered if the run has started when it is read, else ignored
    # with the model's other events (candidates and labels are two topics: no order)
    not_binary = LabelEvent(event_id="odd-2", model=model, label=-3.0, event_time=T0)
    odd_candidates = [candidate(v3, "0" * 64),  # sha256 mismatch: must be refused
                      candidate(1, "1" * 64, name="nobody")]  # a model without champion
    rng = random.Random(SEED)
    good = [Out("models.candidates", encode(candidate(v2, sha2)), model)]
    for f, y in zip(feats, labels, strict=True):
        good += [Out("features", encode(f), "e"), Out("labels", encode(y), "e")]
    good += _valid("features", odd, lambda e: "e")
    good += _valid("labels", odd_labels, lambda e: "e")
    good.append(Out("labels", encode(not_binary), "e", ANY))
    good += _valid("models.candidates", odd_candidates, lambda e: model)
    bad = [*_bad("features", _bad_list(feats[0])), *_bad("labels", _bad_list(labels[0])),
           *_bad("models.candidates", _bad_list(candidate(v2, sha2))),
           *_poison("features", feats[0], settings), *_poison("labels", labels[0], settings),
           *_poison("models.candidates", candidate(v2, sha2), settings),
           Out("labels", encode(LabelEvent(event_id="odd-1", model=model, label=1e300,
                                           event_time=T0)), "e", "invalid_value", "label"),
           *_corpus("features", corpus), *_corpus("labels", corpus),
           *_corpus("models.candidates", corpus)]
    messages = _interleave(rng, good, bad)
    _produce(settings, messages)

    service = ShadowService(settings, telemetry=in_memory_telemetry("fuzz-shadow"))
    stats = service.run(until=_consumed_all(service, len(messages)), idle_timeout_s=20)
    verdicts = [r.event for r in read_all(settings, "models.verdicts", ShadowVerdict)]

    outcome = _outcome(settings, messages)
    # the events the handler must get, counted from what was produced: those valid by
    # construction, and the corpus inputs (and the not-binary label) the edge accepts
    types = {"features": FeatureEvent, "labels": LabelEvent, "models.candidates": ModelCandidate}
    to_handle = sum(1 for m in messages if m.reason is None or (
        m.reason == ANY and _edge(m.value, types[m.topic], settings.validation) is None))
    _record(ledger, "shadow service", outcome, stats.handled, to_handle, len(messages))
    assert stats.consumed == len(messages)
    _assert_table(outcome)
    assert stats.handled == to_handle, f"{to_handle} valid events sent, {stats.handled} handled"
    n = next(i for i, m in enumerate(messages) if m.value == encode(not_binary))
    [at] = [(settings.topic("labels"), r.partition, r.offset) for r in read_all(settings, "labels")
            if FUZZ_HEADER in r.headers and int(r.headers[FUZZ_HEADER]) == n]
    assert outcome.corpus[at] in (None, "invalid_value")
    assert service.pairing(model).counters.invalid_labels == int(outcome.corpus[at] is not None)
    assert {(v.model, v.candidate, v.decision) for v in verdicts} >= {
        (model, v3, "reject"), ("nobody", 1, "reject")}
    # 150 pairs whose labels ignore x: no candidate can win (min_pairs is not reached)
    assert all(v.decision == "reject" for v in verdicts), verdicts
    assert registry.get_alias(model, "champion") == v1


# -- train ---------------------------------------------------------------------------------

@pytest.mark.timeout(180)
def test_training_worker_fuzz(settings: Settings, ledger: FaultRecorder,
                              corpus: list[bytes]) -> None:
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
    poisoned = _poison("retrain.requests", repeats[0], settings)
    repeated = len(repeats) + sum(1 for p in poisoned if p.reason is None)
    rng = random.Random(SEED)
    good = _valid("retrain.requests", repeats, lambda r: r.model)
    good += [Out("retrain.requests", encode(r), r.model, "training_failed") for r in untrainable]
    messages = _interleave(rng, good, [*_bad("retrain.requests", _bad_list(repeats[0])),
                                       *poisoned, *_corpus("retrain.requests", corpus)])
    _produce(settings, messages)

    worker = TrainingWorker(settings, telemetry=in_memory_telemetry("fuzz-train"))
    started = time.monotonic()
    stats = worker.run(until=_consumed_all(worker, len(messages)), idle_timeout_s=20)
    candidates = read_all(settings, "models.candidates", ModelCandidate)

    outcome = _outcome(settings, messages)
    _record(ledger, "training worker", outcome, worker.stats.duplicates, repeated,
            len(messages))
    assert stats.consumed == len(messages), f"{time.monotonic() - started:.0f} s"
    _assert_table(outcome)
    assert worker.stats.duplicates == repeated
    # corpus inputs that are valid requests of a model without champion fail the same way
    corpus_failed = sum(1 for r in outcome.corpus.values() if r == "training_failed")
    assert worker.stats.trained == 0
    assert worker.stats.failed == len(untrainable) + corpus_failed
    assert len(candidates) == repeated  # each repeat re-announces the registered version
    assert registry.list_versions(shadow_worker.MODEL) == [v1]


# -- ingest --------------------------------------------------------------------------------

@pytest.mark.timeout(240)
def test_ingest_service_fuzz(settings: Settings, tmp_path: Path, ledger: FaultRecorder,
                             corpus: list[bytes]) -> None:
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

    refused = [  # (event, reason, path)
        (odd(1, surprise=1.0), "unknown_feature", None),
        (odd(2, amount=KeyError), "missing_feature", None),
        (odd(3, amount="s" * 20_000), "wrong_type", None),
        (odd(4, channel=3.0), "wrong_type", None),
        (odd(5, model="nobody"), "unknown_model", None),
        (odd(12, amount=1e308), "invalid_value", "features.amount"),
    ]
    stored = [odd(6, amount=1e11), odd(7, channel="c" * 10_000), odd(8, amount=None),
              feats[9], feats[10]]  # the last two: repeated event ids
    refused_labels = [
        (LabelEvent(event_id="odd-5", model="nobody", label=1.0, event_time=T0), "unknown_model"),
        (LabelEvent(event_id="never-sent", model="fraud", label=1.0,
                    event_time=T0 - timedelta(days=1)), "label_unmatched"),
    ]
    stored_labels = [LabelEvent(event_id="odd-6", model="fraud", label=1.0, event_time=T0),
                     labels[11]]  # a label of a stored odd event; a repeated label
    poisoned_f = _poison("features", feats[0], settings, boundaries=False)
    poisoned_l = _poison("labels", labels[0], settings, boundaries=False)
    rng = random.Random(SEED)
    good = _valid("features", [*feats, *stored], lambda e: e.entity_id)
    good += _valid("labels", [*labels, *stored_labels], lambda e: e.event_id)
    wrong = [Out("features", encode(e), e.entity_id, r, p) for e, r, p in refused]
    wrong += [Out("labels", encode(e), e.event_id, r) for e, r in refused_labels]
    messages = _interleave(rng, good, [*wrong, *_bad("features", _bad_list(feats[0])),
                                       *_bad("labels", _bad_list(labels[0])),
                                       *poisoned_f, *poisoned_l, *_corpus("features", corpus)])
    # (no corpus on its labels: a valid label whose features never come waits for them)
    _produce(settings, messages)

    service = IngestService(settings, store=store, models=["fraud"], flush_rows=100_000,
                            flush_interval_s=0.3, telemetry=in_memory_telemetry("fuzz-ingest"))
    settled = lambda: service.buffer.rows == 0 and service.buffer.pending_labels == 0  # noqa: E731
    stats = service.run(until=_consumed_all(service, len(messages), settled), idle_timeout_s=30)

    outcome = _outcome(settings, messages)
    layout = load_layout(store, "fraud")
    on_disk = {view.name: pq.read_table(view.path).num_rows for view in (*layout.views,
                                                                          layout.labels)}
    frame, labelled = build_training_frame(store, layout, T0 - timedelta(days=2),
                                           T0 + timedelta(days=1))
    # valid poison variants are repeats of feats[0] / labels[0]: stored again
    extra_f = sum(1 for p in poisoned_f if p.reason is None)
    extra_l = sum(1 for p in poisoned_l if p.reason is None)
    corpus_f = sum(1 for p, r in outcome.corpus.items() if r is None and
                   p[0] == settings.topic("features"))
    rows_f = len(feats) + len(stored) + extra_f + corpus_f
    rows_l = len(labels) + len(stored_labels) + extra_l
    _record(ledger, "ingest service", outcome,
            on_disk["fraud_transaction"] + on_disk["fraud_labels"], rows_f + rows_l,
            len(messages))
    assert stats.consumed == len(messages)
    _assert_table(outcome)
    assert on_disk == {"fraud_transaction": rows_f, "fraud_card": rows_f, "fraud_labels": rows_l}
    assert labelled == len(labels) + 1 and len(frame) == labelled  # + odd-6, repeats once
    row = frame.set_index("event_id").loc["odd-6"]
    assert row["amount"] == 1e11 and row["is_fraud"] == 1.0
    assert "odd-12" not in set(frame["event_id"])
