"""What the report's additions cost the drift monitor per window, as ratios in one run.

One model shaped like the demo's (14 numeric and 3 categorical features), windows of
5,000 events against a 100,000-row reference, the built-in tabular MLP (real torch,
untrained weights: scoring cost does not depend on them) as the champion. Timed per
window, median of repetitions, the variants taking turns within each repetition (a
busy machine slows them alike), each on the same closed windows:

* ``base``: the monitor's window work before this change: statistics, verdict, report;
* ``summaries``: plus the reference/window summary statistics per feature;
* ``prediction``: plus scoring the window's events with the champion and the
  prediction-drift entry (``drift.prediction: true``).

The one-off cost of scoring and profiling the reference snapshot (once per champion)
is reported apart. Targets (ratios to ``base``): summaries ≤ 1.5, prediction ≤ 4.0.
Measured here (2 busy cores): x1.31 and x3.02; most of the prediction cost is the
preprocessor's per-value encoding of the 3 categorical features (75% of a
``Scorer.predict`` call in a profile), the same cost the shadow service pays per event.

Run: ``python -m benchmarks.bench_prediction_drift [--quick]``.
Writes ``benchmarks/results/prediction_drift.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import torch

from services.drift.policy import DriftPolicy, evaluate_window
from services.drift.prediction import build_prediction_reference, prediction_drift
from services.drift.profile import build_reference_profile, profile_summaries
from services.drift.report import build_drift_report
from services.drift.stats import WindowStatsEngine
from services.drift.window import ClosedWindow, WindowAccumulator, window_summaries
from services.model.preprocessing import Preprocessor
from services.model.scoring import Scorer
from services.model.tabular import build_tabular
from services.training.config import ArchitectureConfig
from services.training.synthetic import synthetic_frame, synthetic_spec

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "prediction_drift.json"
SPEC = synthetic_spec(n_numeric=14, n_categorical=3, model="bench")
WINDOW_ROWS = 5_000
TARGET_SUMMARIES = 1.5
TARGET_PREDICTION = 4.0


def _windows(n: int) -> list[ClosedWindow]:
    acc = WindowAccumulator(SPEC, max_events=WINDOW_ROWS, max_seconds=1e9)
    out: list[ClosedWindow] = []
    for k in range(n):
        frame = synthetic_frame(WINDOW_ROWS, SPEC, seed=10 + k, shift=0.5 * (k % 2))
        for row in frame[list(SPEC.names)].to_dict("records"):
            closed = acc.add(1_000.0 + len(out), row)
            if closed is not None:
                out.append(closed)
    return out


def _interleaved_ms(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Median milliseconds of each function, run in turn within every repetition so
    that a busy machine slows them all alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(reps):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(ts) * 1e3 for name, ts in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    reps = 5 if args.quick else 20
    torch.set_num_threads(1)
    reference = synthetic_frame(20_000 if args.quick else 100_000, SPEC, seed=0)
    profile = build_reference_profile(reference, SPEC, "bench-snap")
    engine = WindowStatsEngine(profile, SPEC, ks_method="asymp")
    policy = DriftPolicy()
    ref_summaries = profile_summaries(profile)
    pre = Preprocessor.fit(SPEC, reference.head(5_000))
    module = build_tabular(pre.schema, ArchitectureConfig(hidden_sizes=(64, 64)))
    scorer = Scorer("bench", 1, module.eval(), pre)
    started = time.perf_counter()
    pred_ref = build_prediction_reference("bench", scorer.task, scorer.predict(reference),
                                          "bench-snap", champion_version=1, ks_method="asymp")
    reference_once_ms = (time.perf_counter() - started) * 1e3
    windows = _windows(2)
    now = datetime.now(UTC)

    def base(w: ClosedWindow) -> object:
        verdict = evaluate_window(engine.compute(w.numeric, w.categorical), SPEC, policy)
        return build_drift_report("bench", w.bounds, verdict, "bench-snap", created_at=now)

    def summaries(w: ClosedWindow) -> object:
        verdict = evaluate_window(engine.compute(w.numeric, w.categorical), SPEC, policy)
        return build_drift_report("bench", w.bounds, verdict, "bench-snap", created_at=now,
                                  reference_summaries=ref_summaries,
                                  window_summaries=window_summaries(w, SPEC))

    def prediction(w: ClosedWindow) -> object:
        verdict = evaluate_window(engine.compute(w.numeric, w.categorical), SPEC, policy)
        frame = pd.DataFrame(w.numeric, columns=[f.name for f in SPEC.numeric])
        for name, values in w.categorical.items():
            frame[name] = values
        entry = prediction_drift(pred_ref, scorer.predict(frame), policy)
        return build_drift_report("bench", w.bounds, verdict, "bench-snap", created_at=now,
                                  reference_summaries=ref_summaries,
                                  window_summaries=window_summaries(w, SPEC), prediction=entry)

    variants = {"base": base, "summaries": summaries, "prediction": prediction}
    per_window = [
        _interleaved_ms({name: (lambda w=w, fn=fn: fn(w)) for name, fn in variants.items()},
                        reps)
        for w in windows
    ]
    timings = {name: statistics.mean(t[name] for t in per_window) for name in variants}
    ratios = {"summaries": timings["summaries"] / timings["base"],
              "prediction": timings["prediction"] / timings["base"]}
    ok = ratios["summaries"] <= TARGET_SUMMARIES and ratios["prediction"] <= TARGET_PREDICTION
    result = {
        "benchmark": "prediction_drift", "quick": args.quick, "python": platform.python_version(),
        "window_rows": WINDOW_ROWS, "features": len(SPEC.features),
        "reference_rows": len(reference), "per_window_ms": timings, "ratio_to_base": ratios,
        "reference_scoring_once_ms": reference_once_ms,
        "targets": {"summaries": TARGET_SUMMARIES, "prediction": TARGET_PREDICTION}, "ok": ok,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for name, ms in timings.items():
        ratio = "" if name == "base" else f"  x{ratios[name]:.2f}"
        print(f"{name:>11}: {ms:8.2f} ms per window{ratio}")
    print(f"reference scored and profiled once: {reference_once_ms:.0f} ms")
    print("targets met" if ok else "a target was missed")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
