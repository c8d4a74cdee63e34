"""The drift monitor end to end through the embedded broker, against the baseline loop.

One broker, one topic (3 partitions), ``N`` feature events of about 500 bytes (20
numeric standard-normal features, ``feature_event/1`` JSON) produced once. Then, on the
same messages, alternately and each with its own consumer group:

* ``baseline``: :func:`benchmarks.kafka_harness.baseline_consume_decode`, the fastest
  consume-and-decode-only loop (``consume(num_messages=10000)``, msgspec typed decode,
  numpy feature matrix, nothing else);
* ``monitor``: a :class:`~services.drift.service.DriftMonitor` (the real service: its
  consumer loop, dead-letter checks, spans, windows of 5,000 events, statistics against
  a reference profile of the same distribution with ``ks_method="asymp"``, one
  ``drift.reports`` event per window, commits), timed from the moment its first
  non-empty ``consume`` returned to the moment its last window was reported (its
  one-off first read of the control topics is done before the clock starts).

Target (issue 9): the monitor sustains >= 250,000 events/s and >= 50% of the fastest
baseline pass of the same run. The machine is shared, so the load average is recorded
before and after; the ratio is the meaningful figure.

Run: ``python benchmarks/bench_drift_e2e.py [--quick] [--repeats 2] [--profile]``.
Writes ``benchmarks/results/drift_e2e.json`` (``--profile`` prints a cProfile of one
extra monitor pass instead of writing results).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import confluent_kafka
import msgspec
import numpy as np
import pandas as pd

from services.drift.profile import build_reference_profile
from services.drift.references import ModelReference, StaticReferences
from services.drift.service import DriftMonitor
from services.featurespec import FeatureSpec, ModelSpec
from streams.contracts import FeatureEvent
from streams.settings import Settings, load_settings

try:  # run as a module (python -m benchmarks.bench_drift_e2e) or as a script
    from benchmarks.kafka_harness import (
        baseline_consume_decode,
        embedded_broker,
        numeric_feature_names,
        produce_payloads,
    )
except ImportError:
    from kafka_harness import (  # type: ignore[no-redef]
        baseline_consume_decode,
        embedded_broker,
        numeric_feature_names,
        produce_payloads,
    )

RESULTS = Path(__file__).resolve().parent / "results" / "drift_e2e.json"
MODEL = "bench"
N_FEATURES = 20
WINDOW = 5_000
EVENT_BYTES = 500
REFERENCE_ROWS = 100_000
TARGET_EVENTS_PER_S = 250_000
TARGET_RATIO = 0.5
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def model_spec() -> ModelSpec:
    """20 numeric features ``f00``...``f19`` (the harness's names)."""
    names = numeric_feature_names(N_FEATURES)
    return ModelSpec(MODEL, "entity_id", tuple(FeatureSpec(n, "numeric") for n in names))


def sized_payloads(n_events: int, *, seed: int = 0, size: int = EVENT_BYTES) -> list[bytes]:
    """``feature_event/1`` messages of standard-normal features, padded to about ``size``
    bytes (the entity id carries the padding, as a long opaque id would)."""
    rng = np.random.default_rng(seed)
    names = numeric_feature_names(N_FEATURES)
    values = rng.standard_normal((n_events, N_FEATURES)).round(6).tolist()
    high = int(rng.integers(0, 2**62))
    encoder = msgspec.json.Encoder()

    def event(i: int, pad: str) -> bytes:
        return encoder.encode(FeatureEvent(
            event_id=uuid.UUID(int=high << 64 | i).hex, model=MODEL,
            entity_id=f"card-{i % 5000:05d}-{pad}",
            event_time=T0 + timedelta(milliseconds=i),
            features=dict(zip(names, values[i], strict=True)),
        ))

    probe = [len(event(i, "")) for i in range(min(n_events, 1000))]
    pad = "x" * max(0, size - round(float(np.mean(probe))))
    return [event(i, pad) for i in range(n_events)]


def reference(seed: int = 1) -> ModelReference:
    """The profile of 100,000 rows from the same distribution as the stream."""
    rng = np.random.default_rng(seed)
    spec = model_spec()
    frame = pd.DataFrame(rng.standard_normal((REFERENCE_ROWS, N_FEATURES)),
                         columns=[f.name for f in spec.features])
    profile = build_reference_profile(frame, spec, "bench-e2e-ref")
    return ModelReference(spec=spec, profile=profile, champion_version=1)


class _TimedConsumer:
    """Wraps the monitor's consumer: notes when the first non-empty ``consume`` returned."""

    def __init__(self, inner: confluent_kafka.Consumer) -> None:
        self._inner = inner
        self.first_batch_at: float | None = None

    def consume(self, *args: Any, **kwargs: Any) -> list[Any]:
        messages = self._inner.consume(*args, **kwargs)
        if messages and self.first_batch_at is None:
            self.first_batch_at = time.perf_counter()
        return messages

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TimedMonitor(DriftMonitor):
    """The service unchanged, plus the time its ``expected``-th window was reported."""

    def __init__(self, settings: Settings, *, expected_windows: int, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.expected_windows = expected_windows
        self.done_at: float | None = None
        self.timed = _TimedConsumer(self.loop._consumer)
        self.loop._consumer = self.timed  # type: ignore[assignment]

    def handle_batch(self, batch: list[Any]) -> Any:
        plan = super().handle_batch(batch)
        if self.done_at is None and self.stats.windows >= self.expected_windows:
            self.done_at = time.perf_counter()
        return plan


def monitor_settings(settings: Settings, state_dir: Path) -> Settings:
    """The broker's settings plus the benchmark model's drift options (count windows)."""
    drift = {"window_events": WINDOW, "window_seconds": 3600.0, "ks_method": "asymp",
             "idle_flush_seconds": 3600.0}
    return load_settings(**{**settings.model_dump(), "state_dir": state_dir,
                            "models": {MODEL: {"drift": drift}}})


def monitor_pass(settings: Settings, refs: StaticReferences, n_events: int,
                 timeout_s: float = 300.0) -> dict[str, float]:
    """One monitor over the whole topic, from a fresh group; events/s while it worked."""
    run_id = uuid.uuid4().hex[:8]
    s = monitor_settings(settings, Path(settings.state_dir) / f"monitor-{run_id}")
    expected = n_events // WINDOW
    monitor = TimedMonitor(s, expected_windows=expected, references=refs,
                           group_id=f"bench-drift-{run_id}")
    # The first control-topic read waits up to 1 s for the history (a one-off at
    # start-up, not throughput): done here, before the clock starts.
    monitor._apply_control()
    deadline = time.monotonic() + timeout_s
    monitor.run(until=lambda: monitor.done_at is not None or time.monotonic() > deadline)
    if monitor.done_at is None or monitor.timed.first_batch_at is None:
        raise RuntimeError(f"monitor reported {monitor.stats.windows}/{expected} windows")
    seconds = monitor.done_at - monitor.timed.first_batch_at
    events = monitor.stats.events_reported
    return {"events": events, "windows": monitor.stats.windows, "seconds": seconds,
            "events_per_s": events / seconds, "batches": monitor.loop.stats.batches,
            "drifted_windows": monitor.stats.drifted_windows}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    """Run the benchmark and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200,000 events")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2,
                        help="baseline and monitor passes, interleaved")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile one monitor pass (no results written)")
    args = parser.parse_args()
    n_events = args.events or (200_000 if args.quick else 1_000_000)
    n_events -= n_events % WINDOW

    def log(msg: str) -> None:
        print(msg, flush=True)

    load_before = _load()
    log(f"load average before: {load_before}")
    t = time.perf_counter()
    payloads = sized_payloads(n_events)
    mean_bytes = sum(map(len, payloads)) / len(payloads)
    refs = StaticReferences({MODEL: reference()})
    log(f"{n_events} events of {mean_bytes:.0f} bytes and the reference profile in "
        f"{time.perf_counter() - t:.1f} s")
    with embedded_broker(partitions=3) as settings:
        topic = settings.topic("features")
        produce_s = produce_payloads(settings, topic, payloads)
        del payloads
        log(f"produced in {produce_s:.1f} s ({n_events / produce_s:,.0f}/s)")
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            result = monitor_pass(settings, refs, n_events)
            profiler.disable()
            log(f"monitor (profiled): {result['events_per_s']:,.0f} events/s")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
            return
        baselines: list[dict[str, float]] = []
        monitors: list[dict[str, float]] = []
        for i in range(args.repeats):
            baselines.append(baseline_consume_decode(settings, topic, n_events, N_FEATURES))
            log(f"pass {i + 1}: baseline {baselines[-1]['events_per_s']:,.0f} events/s "
                f"(load {_load()})")
            monitors.append(monitor_pass(settings, refs, n_events))
            log(f"pass {i + 1}: monitor  {monitors[-1]['events_per_s']:,.0f} events/s, "
                f"{monitors[-1]['windows']} windows (load {_load()})")
    best_baseline = max(b["events_per_s"] for b in baselines)
    best_monitor = max(m["events_per_s"] for m in monitors)
    ratio = best_monitor / best_baseline
    results = {
        "config": {
            "events": n_events, "mean_event_bytes": round(mean_bytes, 1),
            "numeric_features": N_FEATURES, "window_events": WINDOW, "partitions": 3,
            "reference_rows": REFERENCE_ROWS, "ks_method": "asymp", "batch_size": 10_000,
            "repeats": args.repeats, "quick": args.quick,
        },
        "load_average_before": load_before,
        "load_average_after": _load(),
        "cpu_count": os.cpu_count(),
        "produce_events_per_s": round(n_events / produce_s),
        "baseline_passes": baselines,
        "monitor_passes": monitors,
        "baseline_events_per_s": round(best_baseline),
        "monitor_events_per_s": round(best_monitor),
        "monitor_to_baseline": round(ratio, 3),
        "targets": {"monitor_events_per_s": TARGET_EVENTS_PER_S,
                    "monitor_to_baseline": TARGET_RATIO},
        "met": {"monitor_events_per_s": best_monitor >= TARGET_EVENTS_PER_S,
                "monitor_to_baseline": ratio >= TARGET_RATIO},
        "platform": {"python": platform.python_version(), "machine": platform.machine(),
                     "confluent_kafka": confluent_kafka.__version__,
                     "librdkafka": confluent_kafka.libversion()[0]},
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    log(f"\nbaseline {best_baseline:,.0f}/s, monitor {best_monitor:,.0f}/s, "
        f"ratio {ratio:.2f} (target >= {TARGET_RATIO}); load {results['load_average_after']}")
    log(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
