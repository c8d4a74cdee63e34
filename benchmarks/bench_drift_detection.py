"""Drift detection quality: false alarms on clean streams, detection delay on drifted ones.

In-process by default: seeded streams of
windows of 5,000 events, 20 numeric features (normal, lognormal, gamma, uniform and
Student-t, four of each) and two categorical ones (``channel``, critical, top category
40%; ``country``, eight categories), against the profile of a 100,000-row reference
drawn from the same population. Scenarios:

* ``null``: 500 windows from the reference distribution: no retrain request, at most 1%
  of windows flagged;
* ``mean_0.5sd``: from the onset, a mean shift of 0.5 standard deviations on 30% of the
  features (7 of 22, numeric, picked per trial);
* ``scale_1.5``: from the onset, a scale change x1.5 (about the mean) on 30% of them;
* ``critical_cat``: from the onset, ``channel``'s top category falls from 40% to 20%
  (the others grow in proportion);
* ``mean_0.05sd``: a mean shift of 0.05 standard deviations on every numeric feature
  (too small to matter): no retrain request.

Each drift scenario runs 20 seeded trials of 3 clean windows then 4 drifted ones through
the policy and a fresh :class:`RetrainTrigger`; a trial detects when the retrain request
fires within 2 windows of the onset (target: at least 95% of trials).

The same streams go through Evidently's default ``DataDriftPreset`` (its own dataset
verdict per window, drift share 0.5; no trigger, so a trial counts as detected when a
window within 2 of the onset is flagged). It takes seconds per window, so it sees fewer
windows (``--evidently-windows``, ``--evidently-trials``); the table says how many.

With ``--kafka`` the same seeded streams (default policy only) are replayed through the
embedded broker into the real :class:`~services.drift.service.DriftMonitor` service: one
broker for the whole run, a fresh topic prefix (and consumer group and state directory)
per stream, every event of a stream under one key (one partition, so windows follow
event order), windows of 5,000 events of one minute of event time each. Flags come from
the ``drift.reports`` topic and requests from ``retrain.requests``; every window's flag
and request is also checked against the in-process detector on the same window.

Run: ``python benchmarks/bench_drift_detection.py [--quick] [--no-evidently] [--kafka]``.
Writes ``benchmarks/results/drift_detection.json`` (``--kafka``:
``benchmarks/results/drift_detection_kafka.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from services.drift.policy import DriftPolicy, evaluate_window
from services.drift.profile import build_reference_profile
from services.drift.stats import WindowStatsEngine
from services.drift.trigger import RetrainTrigger, TriggerConfig
from services.featurespec import FeatureSpec, ModelSpec

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "drift_detection.json"
KAFKA_RESULTS = ROOT / "results" / "drift_detection_kafka.json"
FAMILIES = ("normal", "lognormal", "gamma", "uniform", "student_t")
N_NUMERIC = 20
CHANNELS = ("web", "app", "store", "phone")
CHANNEL_P = np.array([0.4, 0.3, 0.2, 0.1])
COUNTRIES = tuple(f"c{i}" for i in range(8))
COUNTRY_P = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.07, 0.05, 0.03])
WINDOW = 5_000
REFERENCE_ROWS = 100_000
PRE, POST = 3, 4
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def numeric_names() -> list[str]:
    """``f00_normal`` ... ``f19_student_t``."""
    return [f"f{i:02d}_{FAMILIES[i % len(FAMILIES)]}" for i in range(N_NUMERIC)]


def model_spec(n_numeric: int = N_NUMERIC) -> ModelSpec:
    """The benchmark model: numeric features, then ``channel`` (critical) and ``country``."""
    names = numeric_names() if n_numeric == N_NUMERIC else [f"x{i}" for i in range(n_numeric)]
    feats = [FeatureSpec(n, "numeric") for n in names]
    feats += [FeatureSpec("channel", "categorical", critical=True)]
    feats += [FeatureSpec("country", "categorical")]
    return ModelSpec(model="bench", entity="entity_id", features=tuple(feats))


def _draw(family: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if family == "normal":
        return rng.normal(0.0, 1.0, n)
    if family == "lognormal":
        return rng.lognormal(0.0, 0.5, n)
    if family == "gamma":
        return rng.gamma(2.0, 1.0, n)
    if family == "uniform":
        return rng.uniform(0.0, 1.0, n)
    return rng.standard_t(5, n)


# population mean and standard deviation of each family
MOMENTS = {
    "normal": (0.0, 1.0),
    "lognormal": (math.exp(0.125), math.sqrt((math.exp(0.25) - 1) * math.exp(0.25))),
    "gamma": (2.0, math.sqrt(2.0)),
    "uniform": (0.5, math.sqrt(1 / 12)),
    "student_t": (0.0, math.sqrt(5 / 3)),
}


@dataclass(frozen=True)
class Batch:
    """One window: numeric matrix (rows x 20) and categorical columns."""

    numeric: np.ndarray
    channel: np.ndarray
    country: np.ndarray

    def categorical(self) -> dict[str, np.ndarray]:
        """Categorical columns by feature name."""
        return {"channel": self.channel, "country": self.country}

    def frame(self, names: list[str]) -> pd.DataFrame:
        """As a data frame (for Evidently)."""
        df = pd.DataFrame(self.numeric, columns=names)
        df["channel"] = self.channel
        df["country"] = self.country
        return df


def draw_batch(rng: np.random.Generator, n: int, channel_p: np.ndarray = CHANNEL_P) -> Batch:
    """``n`` rows from the reference population (optionally another channel mix)."""
    numeric = np.column_stack(
        [_draw(FAMILIES[i % len(FAMILIES)], rng, n) for i in range(N_NUMERIC)]
    )
    return Batch(
        numeric=numeric,
        channel=rng.choice(np.array(CHANNELS, dtype=object), size=n, p=channel_p),
        country=rng.choice(np.array(COUNTRIES, dtype=object), size=n, p=COUNTRY_P),
    )


def _affected(rng: np.random.Generator) -> np.ndarray:
    n_total = N_NUMERIC + 2
    k = math.ceil(0.3 * n_total)  # 7 of 22 features: drifted share 31.8% when all flagged
    return np.sort(rng.choice(N_NUMERIC, size=k, replace=False))


def _shift(batch: Batch, cols: np.ndarray, sds: float) -> Batch:
    x = batch.numeric.copy()
    for j in cols:
        x[:, j] += sds * MOMENTS[FAMILIES[j % len(FAMILIES)]][1]
    return Batch(x, batch.channel, batch.country)


def _scale(batch: Batch, cols: np.ndarray, factor: float) -> Batch:
    x = batch.numeric.copy()
    for j in cols:
        mean = MOMENTS[FAMILIES[j % len(FAMILIES)]][0]
        x[:, j] = mean + factor * (x[:, j] - mean)
    return Batch(x, batch.channel, batch.country)


SHIFTED_CHANNEL_P = np.array([0.2, *(CHANNEL_P[1:] * 0.8 / 0.6)])

Scenario = Callable[[np.random.Generator, np.ndarray], Batch]
SCENARIOS: dict[str, Scenario] = {
    "mean_0.5sd": lambda rng, cols: _shift(draw_batch(rng, WINDOW), cols, 0.5),
    "scale_1.5": lambda rng, cols: _scale(draw_batch(rng, WINDOW), cols, 1.5),
    "critical_cat": lambda rng, cols: draw_batch(rng, WINDOW, SHIFTED_CHANNEL_P),
    "mean_0.05sd": lambda rng, cols: _shift(draw_batch(rng, WINDOW), np.arange(N_NUMERIC), 0.05),
}


def trial_streams(scenario: str, trial: int) -> list[Batch]:
    """The seeded stream of one trial: PRE clean windows, then POST drifted ones."""
    rng = np.random.default_rng([hash_name(scenario), trial])
    cols = _affected(rng)
    clean = [draw_batch(rng, WINDOW) for _ in range(PRE)]
    return clean + [SCENARIOS[scenario](rng, cols) for _ in range(POST)]


class TrialTally:
    """Detection figures over the trials of one drift scenario (flags and requests per
    window, ``PRE`` clean windows then ``POST`` drifted ones)."""

    def __init__(self) -> None:
        self.trials = self.detected = self.early = self.requests = 0
        self.pre_flags = self.post_flags = 0
        self.delays: list[int] = []

    def add(self, flags: list[bool], fires: list[bool]) -> None:
        self.trials += 1
        self.requests += sum(fires)
        self.early += any(fires[:PRE])
        self.pre_flags += sum(flags[:PRE])
        self.post_flags += sum(flags[PRE:])
        after = [k + 1 for k, f in enumerate(fires[PRE:]) if f]
        if after:
            self.delays.append(after[0])
        self.detected += bool(after) and after[0] <= 2 and not any(fires[:PRE])

    def summary(self) -> dict[str, object]:
        n = self.trials
        return {
            "trials": n,
            "detected_within_2": self.detected,
            "detection_rate": self.detected / n,
            "retrain_requests": self.requests,
            "requests_before_onset": self.early,
            "mean_delay_windows": float(np.mean(self.delays)) if self.delays else None,
            "flagged_rate_before_onset": self.pre_flags / (n * PRE),
            "flagged_rate_after_onset": self.post_flags / (n * POST),
        }


def hash_name(name: str) -> int:
    """A stable small integer from a name (seeding, not security)."""
    return int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "little") % (2**32)


def reference_frame(seed: int = 0) -> pd.DataFrame:
    """The 100,000-row reference snapshot."""
    return draw_batch(np.random.default_rng(seed), REFERENCE_ROWS).frame(numeric_names())


class Ours:
    """driftloop's stats, policy and trigger over a stream of windows."""

    def __init__(self, reference: pd.DataFrame, spec: ModelSpec, policy: DriftPolicy):
        self.spec = spec
        self.policy = policy
        self.engine = WindowStatsEngine(build_reference_profile(reference, spec, "bench-ref"), spec)
        self.config = TriggerConfig(
            consecutive=policy.consecutive_windows,
            cooldown=policy.cooldown,
            in_flight_timeout=policy.in_flight_timeout,
        )

    def run(self, windows: list[Batch]) -> tuple[list[bool], list[bool]]:
        """Per window: (flagged, retrain request fired); feature shares in ``self.shares``."""
        trigger = RetrainTrigger(self.config)
        flagged, fired = [], []
        self.shares: list[float] = []
        for i, w in enumerate(windows):
            verdict = evaluate_window(
                self.engine.compute(w.numeric, w.categorical()), self.spec, self.policy
            )
            decision = trigger.observe(verdict.drifted, T0 + timedelta(minutes=i), f"w{i}")
            flagged.append(verdict.drifted)
            fired.append(decision.fire)
            self.shares.append(verdict.drifted_share)
        return flagged, fired


class EvidentlyPreset:
    """Evidently's default DataDriftPreset; its dataset verdict per window."""

    def __init__(self, reference: pd.DataFrame, spec: ModelSpec):
        warnings.filterwarnings("ignore")
        from evidently import DataDefinition, Dataset
        from evidently.presets import DataDriftPreset

        self._dataset = Dataset
        self._preset = DataDriftPreset
        self.names = [f.name for f in spec.numeric]
        self.definition = DataDefinition(
            numerical_columns=self.names, categorical_columns=["channel", "country"]
        )
        self.reference = Dataset.from_pandas(reference, data_definition=self.definition)
        self.shares: list[float] = []

    def flagged(self, batch: Batch) -> bool:
        """Whether the preset's dataset-drift verdict is positive for this window.

        The share of columns it found drifted is kept in ``self.shares``.
        """
        from evidently import Report

        current = self._dataset.from_pandas(
            batch.frame(self.names), data_definition=self.definition
        )
        snap = Report([self._preset()]).run(current_data=current, reference_data=self.reference)
        for metric in snap.dict()["metrics"]:
            if metric["metric_name"].startswith("DriftedColumnsCount"):
                share = float(metric["value"]["share"])
                self.shares.append(share)
                return share >= metric["config"]["drift_share"]
        raise RuntimeError("DriftedColumnsCount missing from the preset's result")


def run_ours(
    ours: Ours, n_null: int, n_trials: int, log: Callable[[str], None]
) -> dict[str, dict[str, object]]:
    """All scenarios through driftloop's detector."""
    out: dict[str, dict[str, object]] = {}
    rng = np.random.default_rng(12345)
    t = time.perf_counter()
    null_windows = (draw_batch(rng, WINDOW) for _ in range(n_null))
    trigger = RetrainTrigger(ours.config)
    flagged = fired = 0
    for i, w in enumerate(null_windows):
        v = evaluate_window(ours.engine.compute(w.numeric, w.categorical()), ours.spec, ours.policy)
        flagged += v.drifted
        fired += trigger.observe(v.drifted, T0 + timedelta(minutes=i), f"n{i}").fire
    out["null"] = {
        "windows": n_null,
        "flagged_windows": flagged,
        "flagged_rate": flagged / n_null,
        "retrain_requests": fired,
        "seconds": time.perf_counter() - t,
    }
    log(f"null: {flagged}/{n_null} windows flagged, {fired} requests")
    for name in SCENARIOS:
        t = time.perf_counter()
        tally = TrialTally()
        post_shares: list[float] = []
        for trial in range(n_trials):
            flags, fires = ours.run(trial_streams(name, trial))
            post_shares += ours.shares[PRE : PRE + 2]
            tally.add(flags, fires)
        out[name] = {
            **tally.summary(),
            "mean_drifted_feature_share_first_2_after_onset": float(np.mean(post_shares)),
            "seconds": time.perf_counter() - t,
        }
        log(f"{name}: detected {tally.detected}/{n_trials}, requests {tally.requests}")
    return out


def run_evidently(
    ev: EvidentlyPreset, n_null: int, n_trials: int, log: Callable[[str], None]
) -> dict[str, dict[str, object]]:
    """The same streams (fewer windows) through Evidently's preset."""
    out: dict[str, dict[str, object]] = {}
    rng = np.random.default_rng(12345)  # the same first null windows as ours
    t = time.perf_counter()
    ev.shares.clear()
    flagged = sum(ev.flagged(draw_batch(rng, WINDOW)) for _ in range(n_null))
    out["null"] = {
        "windows": n_null,
        "flagged_windows": flagged,
        "flagged_rate": flagged / n_null,
        "mean_drifted_column_share": float(np.mean(ev.shares)),
        "max_drifted_column_share": float(np.max(ev.shares)),
        "seconds": time.perf_counter() - t,
        "seconds_per_window": (time.perf_counter() - t) / n_null,
    }
    log(f"evidently null: {flagged}/{n_null}")
    for name in SCENARIOS:
        t = time.perf_counter()
        ev.shares.clear()
        detected = post = 0
        for trial in range(n_trials):
            stream = trial_streams(name, trial)[PRE : PRE + 2]  # the first 2 drifted windows
            flags = [ev.flagged(w) for w in stream]
            post += sum(flags)
            detected += any(flags)
        out[name] = {
            "trials": n_trials,
            "windows_per_trial": 2,
            "detected_within_2": detected,
            "detection_rate": detected / n_trials,
            "flagged_rate_after_onset": post / (2 * n_trials),
            "mean_drifted_column_share": float(np.mean(ev.shares)),
            "seconds": time.perf_counter() - t,
        }
        log(f"evidently {name}: {detected}/{n_trials}")
    return out


def _print_table(results: dict[str, object]) -> None:
    columns = [
        ("ours", "ours (default)"),
        ("ours_design_literal", "DESIGN literally"),
        ("ours_floor_0.1", "KS floor 0.1"),
        ("evidently", "Evidently preset"),
    ]
    columns = [(k, title) for k, title in columns if results.get(k)]
    print()
    print(f"{'scenario':<14}" + "".join(f"{title:>28}" for _, title in columns))
    for name in ("null", *SCENARIOS):
        cells = []
        for key, _ in columns:
            r = results[key][name]
            if name == "null":
                req = f", {r['retrain_requests']} req" if "retrain_requests" in r else ""
                cells.append(f"{r['flagged_windows']}/{r['windows']} flagged{req}")
            else:
                req = f", {r['retrain_requests']} req" if "retrain_requests" in r else ""
                cells.append(f"{r['detected_within_2']}/{r['trials']} detected{req}")
        print(f"{name:<14}" + "".join(f"{c:>28}" for c in cells))


# -- through the broker (--kafka) ---------------------------------------------------------

_OFFSETS = [timedelta(milliseconds=12 * j) for j in range(WINDOW)]  # a window: ~1 minute


def encode_window(encoder: msgspec.json.Encoder, batch: Batch, names: list[str], index: int,
                  tag: str) -> list[bytes]:
    """One window as ``feature_event/1`` messages; window ``index`` spans the minute
    ``T0 + index`` min (floats travel exactly: JSON keeps every float64 digit)."""
    from streams.contracts import FeatureEvent

    start = T0 + timedelta(minutes=index)
    numeric = batch.numeric.tolist()
    channel = batch.channel.tolist()
    country = batch.country.tolist()
    out = []
    for j in range(len(numeric)):
        features: dict[str, float | str | None] = dict(zip(names, numeric[j], strict=True))
        features["channel"] = channel[j]
        features["country"] = country[j]
        out.append(encoder.encode(FeatureEvent(
            event_id=f"{tag}-{index}-{j}", model="bench", entity_id=f"e{j % 997}",
            event_time=start + _OFFSETS[j], features=features,
        )))
    return out


def window_index(end_time: datetime) -> int:
    """The window a report or request belongs to, from its window's end time."""
    return int((end_time - T0).total_seconds() // 60)


class KafkaReplay:
    """Replays streams of windows through one embedded broker into the drift monitor."""

    def __init__(self, settings: Any, reference: pd.DataFrame, spec: ModelSpec,
                 policy: DriftPolicy) -> None:
        from services.drift.references import ModelReference, StaticReferences

        self.base = settings
        self.spec = spec
        self.policy = policy
        profile = build_reference_profile(reference, spec, "bench-ref")
        self.references = StaticReferences(
            {"bench": ModelReference(spec=spec, profile=profile, champion_version=1)})
        self.names = [f.name for f in spec.numeric]
        self.encoder = msgspec.json.Encoder()
        self.run_id = uuid.uuid4().hex[:6]
        self.events = 0
        self.monitor_seconds = 0.0

    def _settings(self, tag: str) -> Any:
        from streams.admin import create_topics
        from streams.settings import load_settings

        base = self.base.model_dump()
        drift = {"window_events": WINDOW, "window_seconds": 3600.0,
                 "idle_flush_seconds": 3600.0, **self.policy.model_dump(exclude_defaults=True)}
        settings = load_settings(**{
            **base,
            # The embedded broker holds a group join for half the session timeout: a
            # shorter one (fine on a local broker) saves seconds per stream.
            "kafka": {**base["kafka"], "session_timeout_ms": 2000, "heartbeat_interval_ms": 500},
            "topics": {**base["topics"], "prefix": f"{self.run_id}-{tag}."},
            "state_dir": Path(base["state_dir"]) / tag,
            "models": {"bench": {"drift": drift}},
        })
        create_topics(settings)
        return settings

    def _produce(self, settings: Any, windows: Iterable[Batch], tag: str,
                 on_window: Callable[[int, Batch], None]) -> int:
        from confluent_kafka import Producer

        producer = Producer({**settings.kafka.producer_config(), "linger.ms": 20,
                             "batch.num.messages": 10000,
                             "queue.buffering.max.messages": 500000})
        topic = settings.topic("features")
        n = 0
        for index, batch in enumerate(windows):
            on_window(index, batch)
            for payload in encode_window(self.encoder, batch, self.names, index, tag):
                while True:
                    try:
                        producer.produce(topic, payload, key=b"stream")
                        break
                    except BufferError:
                        producer.poll(0.05)
            producer.poll(0)
            n += 1
        if producer.flush(120):
            raise RuntimeError("feature events not acknowledged")
        return n

    def run(self, tag: str, windows: Iterable[Batch],
            on_window: Callable[[int, Batch], None] = lambda i, b: None,
            ) -> tuple[list[bool], list[bool]]:
        """Per window: (flagged in its ``drift.reports`` event, a retrain request fired)."""
        from services.drift.service import DriftMonitor
        from streams.contracts import DriftReport, RetrainRequest

        settings = self._settings(tag)
        n_windows = self._produce(settings, windows, tag, on_window)
        monitor = DriftMonitor(settings, references=self.references, group_id="drift")
        started = time.perf_counter()
        monitor.run(until=lambda: monitor.stats.windows >= n_windows, idle_timeout_s=120)
        self.monitor_seconds += time.perf_counter() - started
        self.events += n_windows * WINDOW
        if monitor.stats.windows != n_windows:
            raise RuntimeError(f"{tag}: {monitor.stats.windows} of {n_windows} windows")
        reports = _read_topic(settings, "drift.reports", DriftReport, n_windows)
        requests = _read_topic(settings, "retrain.requests", RetrainRequest,
                               monitor.stats.requests)
        flagged = [False] * n_windows
        for report in reports:
            if report.window.n_events != WINDOW:
                raise RuntimeError(f"{tag}: a window of {report.window.n_events} events")
            flagged[window_index(report.window.end_time)] = report.drifted
        fired = [False] * n_windows
        for request in requests:
            fired[window_index(request.window_end)] = True
        if len({window_index(r.window.end_time) for r in reports}) != n_windows:
            raise RuntimeError(f"{tag}: reports do not cover every window once")
        return flagged, fired


def _read_topic(settings: Any, name: str, event_type: type, count: int,
                timeout_s: float = 60.0) -> list[Any]:
    """``count`` events from every partition of a topic, from the start (no group)."""
    from streams.tail import TopicTail

    if count == 0:
        return []
    topic = settings.topic(name)
    out: list[Any] = []
    with TopicTail(settings, {topic: event_type}, name="read") as tail:
        deadline = time.monotonic() + timeout_s
        while len(out) < count and time.monotonic() < deadline:
            out += tail.drain(timeout=0.5)
    if tail.undecodable:
        raise RuntimeError(f"{tail.undecodable} undecodable messages on {topic}")
    if len(out) != count:
        raise RuntimeError(f"read {len(out)} of {count} events from {topic}")
    return out


def run_kafka(ours: Ours, replay: KafkaReplay, n_null: int, n_trials: int,
              log: Callable[[str], None]) -> dict[str, dict[str, object]]:
    """All scenarios through the broker and the drift monitor service; every window's
    flag and request compared with the in-process detector on the same window."""
    out: dict[str, dict[str, object]] = {}
    t = time.perf_counter()
    rng = np.random.default_rng(12345)  # the same null windows as the in-process run
    trigger = RetrainTrigger(ours.config)
    local_flags: list[bool] = []
    local_fires: list[bool] = []

    def local(i: int, w: Batch) -> None:
        v = evaluate_window(ours.engine.compute(w.numeric, w.categorical()), ours.spec,
                            ours.policy)
        local_flags.append(v.drifted)
        local_fires.append(trigger.observe(v.drifted, T0 + timedelta(minutes=i), f"n{i}").fire)

    flags, fires = replay.run("null", (draw_batch(rng, WINDOW) for _ in range(n_null)), local)
    out["null"] = {
        "windows": n_null,
        "flagged_windows": sum(flags),
        "flagged_rate": sum(flags) / n_null,
        "retrain_requests": sum(fires),
        "agrees_with_in_process": flags == local_flags and fires == local_fires,
        "seconds": time.perf_counter() - t,
    }
    log(f"kafka null: {sum(flags)}/{n_null} windows flagged, {sum(fires)} requests, "
        f"agrees: {out['null']['agrees_with_in_process']}")
    for name in SCENARIOS:
        t = time.perf_counter()
        tally = TrialTally()
        disagreements = 0
        for trial in range(n_trials):
            stream = trial_streams(name, trial)
            flags, fires = replay.run(f"{name}-{trial}", stream)
            local_flag_seq, local_fire_seq = ours.run(stream)
            disagreements += (flags, fires) != (local_flag_seq, local_fire_seq)
            tally.add(flags, fires)
        out[name] = {
            **tally.summary(),
            "trials_differing_from_in_process": disagreements,
            "seconds": time.perf_counter() - t,
        }
        log(f"kafka {name}: detected {tally.detected}/{n_trials}, requests {tally.requests}, "
            f"differing from in-process: {disagreements}")
    return out


def main_kafka(n_null: int, n_trials: int, quick: bool, log: Callable[[str], None]) -> None:
    """``--kafka``: the default policy's scenarios through the broker and the service."""
    try:
        from benchmarks.kafka_harness import embedded_broker
    except ImportError:
        from kafka_harness import embedded_broker  # type: ignore[no-redef]

    load_before = [round(x, 2) for x in os.getloadavg()]
    spec = model_spec()
    policy = DriftPolicy()
    started = time.perf_counter()
    with embedded_broker(partitions=3) as settings:
        replay = KafkaReplay(settings, reference_frame(), spec, policy)
        results: dict[str, object] = {
            "config": {
                "window": WINDOW, "reference_rows": REFERENCE_ROWS,
                "numeric_features": N_NUMERIC, "categorical_features": 2,
                "pre_onset_windows": PRE, "post_onset_windows": POST,
                "policy": json.loads(policy.model_dump_json()),
                "partitions": 3, "one_key_per_stream": True, "quick": quick,
            },
            "load_average_before": load_before,
        }
        results["kafka"] = run_kafka(Ours(reference_frame(), spec, policy), replay,
                                     n_null, n_trials, log)
    results["events_through_broker"] = replay.events
    results["monitor_seconds"] = round(replay.monitor_seconds, 1)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["platform"] = {"python": platform.python_version(), "machine": platform.machine()}
    KAFKA_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    KAFKA_RESULTS.write_text(json.dumps(results, indent=2, default=str))
    print()
    for name, r in results["kafka"].items():  # type: ignore[union-attr]
        if name == "null":
            print(f"{name:<14} {r['flagged_windows']}/{r['windows']} flagged, "
                  f"{r['retrain_requests']} requests")
        else:
            print(f"{name:<14} {r['detected_within_2']}/{r['trials']} detected, "
                  f"{r['retrain_requests']} requests")
    print(f"\nwrote {KAFKA_RESULTS}")


def main() -> None:
    """Run the benchmark and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer windows and trials")
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--evidently-windows", type=int, default=None)
    parser.add_argument("--evidently-trials", type=int, default=None)
    parser.add_argument("--kafka", action="store_true",
                        help="replay through the embedded broker into the drift monitor")
    parser.add_argument("--null-windows", type=int, default=None)
    parser.add_argument("--trials", type=int, default=None)
    args = parser.parse_args()
    n_null, n_trials = (100, 5) if args.quick else (500, 20)
    n_null = args.null_windows or n_null
    n_trials = args.trials or n_trials
    ev_null = args.evidently_windows or (3 if args.quick else 10)
    ev_trials = args.evidently_trials or (1 if args.quick else 3)

    def log(msg: str) -> None:
        print(msg, flush=True)

    if args.kafka:
        main_kafka(n_null, n_trials, args.quick, log)
        return
    spec = model_spec()
    reference = reference_frame()
    policies = {
        "ours": DriftPolicy(),
        # DESIGN.md's rule as written: KS effect floor 0.1, categorical features by PSI only
        "ours_design_literal": DriftPolicy(ks_min_statistic=0.1, categorical_test=False),
        # the default with DESIGN's KS effect floor (the default before it was lowered)
        "ours_floor_0.1": DriftPolicy(ks_min_statistic=0.1),
    }
    results: dict[str, object] = {
        "config": {
            "window": WINDOW,
            "reference_rows": REFERENCE_ROWS,
            "numeric_features": N_NUMERIC,
            "categorical_features": 2,
            "families": FAMILIES,
            "pre_onset_windows": PRE,
            "post_onset_windows": POST,
            "policies": {k: json.loads(p.model_dump_json()) for k, p in policies.items()},
            "quick": args.quick,
        },
        "platform": {"python": platform.python_version(), "machine": platform.machine()},
    }
    for key, pol in policies.items():
        log(f"{key}: {pol!r}")
        results[key] = run_ours(Ours(reference, spec, pol), n_null, n_trials, log)
    if not args.no_evidently:
        import evidently

        results["evidently_version"] = evidently.__version__
        log(f"evidently {evidently.__version__} default DataDriftPreset")
        results["evidently"] = run_evidently(
            EvidentlyPreset(reference, spec), ev_null, ev_trials, log
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str))
    _print_table(results)
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
