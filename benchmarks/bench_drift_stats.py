"""Per-window drift statistics: speed against Evidently's stattests and a scipy loop.

Same run, same data: one window of 10,000 rows x 20 numeric features (normal,
lognormal, gamma, uniform, Student-t; half of them shifted so that p-values of drifted
features are exercised) against a 100,000-row reference. Timed, median of repetitions:

* ``ours``: :class:`WindowStatsEngine.compute` (PSI, KS statistic and p-value, missing
  share for every feature), reference profile built beforehand (its one-off build time
  is reported separately);
* ``evidently_stattests``: Evidently's ``psi_stat_test`` and ``ks_stat_test`` per
  feature (the reference is re-binned / re-sorted on every call, as Evidently does);
* ``scipy_ks_loop``: ``scipy.stats.ks_2samp(window[:, j], reference[:, j])`` per feature.

Also measured: window accumulation throughput (msgspec-decoded feature events appended
to :class:`WindowAccumulator`, windows of 5,000 closed and their stats computed), and
peak memory (tracemalloc) of a monitor holding 10 models x 50 numeric features:
profiles from 100,000-row references and full windows of 5,000 rows, with their stats.

Run: ``python benchmarks/bench_drift_stats.py [--quick]``.
Writes ``benchmarks/results/drift_stats.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import time
import tracemalloc
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd

from services.drift.profile import build_reference_profile
from services.drift.stats import WindowStatsEngine
from services.drift.window import WindowAccumulator
from services.featurespec import FeatureSpec, ModelSpec
from streams.contracts import FeatureEvent

try:  # run as a module (python -m benchmarks.bench_drift_stats) or as a script
    from benchmarks.bench_drift_detection import FAMILIES, MOMENTS, _draw
except ImportError:
    from bench_drift_detection import FAMILIES, MOMENTS, _draw  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "drift_stats.json"
N_FEATURES = 20
WINDOW_ROWS = 10_000
REFERENCE_ROWS = 100_000
TARGET_VS_EVIDENTLY = 15.0
TARGET_VS_SCIPY = 8.0


def numeric_spec(n: int, model: str = "bench") -> ModelSpec:
    """A model of ``n`` numeric features ``x00``..."""
    return ModelSpec(model, "id", tuple(FeatureSpec(f"x{i:02d}", "numeric") for i in range(n)))


def make_data(
    seed: int, n_features: int, ref_rows: int, win_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reference and window matrices; every other window feature shifted by 0.3 sd."""
    rng = np.random.default_rng(seed)
    fams = [FAMILIES[j % len(FAMILIES)] for j in range(n_features)]
    ref = np.column_stack([_draw(f, rng, ref_rows) for f in fams])
    win = np.column_stack([_draw(f, rng, win_rows) for f in fams])
    for j in range(0, n_features, 2):
        win[:, j] += 0.3 * MOMENTS[fams[j]][1]
    return ref, win


def median_seconds(fn: Callable[[], object], reps: int) -> tuple[float, list[float]]:
    """Median wall time of ``reps`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def bench_speed(reps: int) -> dict[str, object]:
    """Ours vs Evidently stattests vs scipy loop, interleaved in one process."""
    warnings.filterwarnings("ignore")
    from evidently.legacy.calculations.stattests import ks_stat_test, psi_stat_test
    from evidently.legacy.core import ColumnType
    from scipy.stats import ks_2samp

    spec = numeric_spec(N_FEATURES)
    ref, win = make_data(0, N_FEATURES, REFERENCE_ROWS, WINDOW_ROWS)
    ref_frame = pd.DataFrame(ref, columns=list(spec.names))
    t = time.perf_counter()
    profile = build_reference_profile(ref_frame, spec, "bench")
    build_s = time.perf_counter() - t
    engine = WindowStatsEngine(profile, spec)
    ref_cols = [ref_frame[c] for c in spec.names]
    win_cols = [pd.Series(win[:, j]) for j in range(N_FEATURES)]

    def ours() -> object:
        return engine.compute(win)

    def evidently() -> object:
        out = []
        for r, c in zip(ref_cols, win_cols, strict=True):
            out.append(psi_stat_test(r, c, ColumnType.Numerical, None))
            out.append(ks_stat_test(r, c, ColumnType.Numerical, None))
        return out

    def scipy_loop() -> object:
        return [ks_2samp(win[:, j], ref[:, j]) for j in range(N_FEATURES)]

    # correctness on the benchmark data: KS equal to scipy's
    ours_stats = ours()
    for j, s in enumerate(ours_stats):
        expected = ks_2samp(win[:, j], ref[:, j])
        assert s.ks_statistic == expected.statistic
        assert abs(s.ks_pvalue - expected.pvalue) <= 1e-8 * expected.pvalue

    fns = {"ours": ours, "evidently_stattests": evidently, "scipy_ks_loop": scipy_loop}
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):  # interleaved, so machine load hits every contender alike
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            samples[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "window": [WINDOW_ROWS, N_FEATURES],
        "reference_rows": REFERENCE_ROWS,
        "reps": reps,
        "median_ms": {k: v * 1e3 for k, v in med.items()},
        "min_ms": {k: min(v) * 1e3 for k, v in samples.items()},
        "speedup_vs_evidently": med["evidently_stattests"] / med["ours"],
        "speedup_vs_scipy": med["scipy_ks_loop"] / med["ours"],
        "profile_build_ms": build_s * 1e3,
        "drifted_features_in_window": sum(s.ks_pvalue < 0.01 / N_FEATURES for s in ours_stats),
    }


def bench_accumulate(n_events: int) -> dict[str, object]:
    """Decode + accumulate + stats per closed window, events per second."""
    spec = numeric_spec(N_FEATURES)
    ref, _ = make_data(1, N_FEATURES, REFERENCE_ROWS, 10)
    engine = WindowStatsEngine(
        build_reference_profile(pd.DataFrame(ref, columns=list(spec.names)), spec, "acc"), spec
    )
    rng = np.random.default_rng(2)
    values = rng.normal(size=(n_events, N_FEATURES))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    names = spec.names
    payloads = [
        msgspec.json.encode(
            FeatureEvent(
                event_id=f"e{i}",
                model="bench",
                entity_id=f"u{i % 1000}",
                event_time=t0 + timedelta(milliseconds=i),
                features=dict(zip(names, map(float, values[i]), strict=True)),
            )
        )
        for i in range(n_events)
    ]
    decoder = msgspec.json.Decoder(FeatureEvent)
    events = [decoder.decode(p) for p in payloads]

    def accumulate_only() -> int:
        acc = WindowAccumulator(spec, max_events=5_000, max_seconds=60)
        closed = 0
        for i, ev in enumerate(events):
            if acc.add(ev.event_time, ev.features, "features", i % 4, i) is not None:
                closed += 1
        return closed

    def decode_accumulate_stats() -> int:
        acc = WindowAccumulator(spec, max_events=5_000, max_seconds=60)
        decode = decoder.decode
        closed = 0
        for i, p in enumerate(payloads):
            ev = decode(p)
            w = acc.add(ev.event_time, ev.features, "features", i % 4, i)
            if w is not None:
                engine.compute(w.numeric, w.categorical)
                closed += 1
        return closed

    def decode_only() -> int:
        decode = decoder.decode
        return sum(1 for p in payloads if decode(p) is not None)

    out: dict[str, object] = {"events": n_events, "features": N_FEATURES, "window": 5_000}
    for name, fn in (
        ("decode_only", decode_only),
        ("accumulate_only", accumulate_only),
        ("decode_accumulate_stats", decode_accumulate_stats),
    ):
        best = min(_timed(fn) for _ in range(3))
        out[f"{name}_events_per_s"] = n_events / best
    return out


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_memory(
    n_models: int, n_features: int, ref_rows: int, ks_sample: int = 100_000
) -> dict[str, object]:
    """Peak and retained memory of ``n_models`` x ``n_features`` profiles, windows, stats."""
    gc.collect()
    tracemalloc.start()
    engines, windows = [], []
    for m in range(n_models):
        spec = numeric_spec(n_features, model=f"m{m}")
        ref, win = make_data(100 + m, n_features, ref_rows, 5_000)
        profile = build_reference_profile(
            pd.DataFrame(ref, columns=list(spec.names)), spec, f"s{m}", ks_sample=ks_sample
        )
        del ref
        engines.append(WindowStatsEngine(profile, spec))
        windows.append(win)
    gc.collect()
    retained, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    for engine, win in zip(engines, windows, strict=True):
        engine.compute(win)
    _, peak_compute = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    per_profile = sum(
        p.sample.nbytes + p.edges.nbytes + p.shares.nbytes
        for e in engines
        for p in e.profile.numeric
    )
    return {
        "models": n_models,
        "features": n_features,
        "reference_rows": ref_rows,
        "ks_sample_cap": ks_sample,
        "window_rows": 5_000,
        "profiles_bytes": per_profile,
        "retained_mb": retained / 2**20,
        "peak_during_stats_mb": peak_compute / 2**20,
        "note": "tracemalloc (Python and numpy allocations); profiles + one full window per model",
    }


def main() -> None:
    """Run the benchmark and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and events")
    args = parser.parse_args()
    reps = 5 if args.quick else 21
    results: dict[str, object] = {
        "platform": {"python": platform.python_version(), "machine": platform.machine()},
        "quick": args.quick,
    }
    import evidently
    import scipy

    results["versions"] = {
        "evidently": evidently.__version__,
        "scipy": scipy.__version__,
        "numpy": np.__version__,
    }
    print("speed: 10,000 x 20 window vs 100,000-row reference ...", flush=True)
    results["speed"] = speed = bench_speed(reps)
    print("window accumulation ...", flush=True)
    results["accumulate"] = acc = bench_accumulate(50_000 if args.quick else 200_000)
    print("memory: 10 models x 50 features ...", flush=True)
    n_models, ref_rows = (3, 30_000) if args.quick else (10, 100_000)
    results["memory"] = mem = bench_memory(n_models, 50, ref_rows)
    results["memory_ks_sample_20k"] = mem20 = bench_memory(n_models, 50, ref_rows, 20_000)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))

    med = speed["median_ms"]
    print()
    print(f"{'contender':<22} {'median ms':>10} {'ours is x faster':>17}  target")
    print(f"{'ours':<22} {med['ours']:>10.2f} {'':>17}")
    print(
        f"{'evidently_stattests':<22} {med['evidently_stattests']:>10.2f} "
        f"{speed['speedup_vs_evidently']:>17.1f}  >= {TARGET_VS_EVIDENTLY:g}"
    )
    print(
        f"{'scipy_ks_loop':<22} {med['scipy_ks_loop']:>10.2f} "
        f"{speed['speedup_vs_scipy']:>17.1f}  >= {TARGET_VS_SCIPY:g}"
    )
    print(f"profile build (one-off): {speed['profile_build_ms']:.0f} ms")
    print(
        "events/s: decode only {decode_only_events_per_s:,.0f}; accumulate only "
        "{accumulate_only_events_per_s:,.0f}; decode+accumulate+stats "
        "{decode_accumulate_stats_events_per_s:,.0f}".format(**acc)
    )
    print(
        f"memory {mem['models']} models x {mem['features']} features: retained "
        f"{mem['retained_mb']:.0f} MiB, peak during stats {mem['peak_during_stats_mb']:.0f} MiB "
        f"(KS sample cap 100,000); {mem20['retained_mb']:.0f} / "
        f"{mem20['peak_during_stats_mb']:.0f} MiB with cap 20,000"
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
