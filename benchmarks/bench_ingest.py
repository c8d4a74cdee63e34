"""Feature ingest: the pure core's throughput, Feast push cost, snapshot build time.

1. Core: events/s through ``IngestBuffer`` (validate, label join, one frame per push
   source), with ``pandas.DataFrame.from_records`` over the same feature dicts as a
   reference in the same process (the least any batching into one frame costs).
2. Push: batches of ``batch`` events (3 push sources: card state online + offline,
   transactions and labels offline) pushed into offline files that already hold the
   history and the earlier batches, as new parts; reported as seconds per push and as
   the ratio to the first (about 1: the cost does not grow with the history).
   Target: building a batch in the core takes <= 0.25x the time of pushing it (the
   core must not be what limits ingest), median over the batches.
   Also: the history written as a first load by ``write_history`` (direct parquet).
3. Snapshot: ``create_snapshot`` (labels pull, point-in-time join, hash, saved
   dataset, drift profile) over the history, rows/s.
The offline half of a push appends new parquet parts (cost independent of the
history); ``bench_offline.py`` measures that end to end from Kafka against the history
size, and the snapshot engines.

Run: ``python benchmarks/bench_ingest.py [--quick] [--variant embedded|real]``.
Writes ``benchmarks/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from services.features.feast_repo import (
    apply_repo,
    copy_repo,
    drop_project,
    load_layout,
    load_model_spec,
    open_repo,
)
from services.features.generate import Generator, GeneratorConfig
from services.features.history import write_history
from services.features.ingest import IngestBuffer
from services.features.sink import push_batches
from services.features.snapshot import create_snapshot

RESULTS = Path(__file__).parent / "results" / "ingest.json"
TARGET_CORE_TO_PUSH = 0.25
T0 = datetime(2026, 5, 1, tzinfo=UTC)


def core(layout: Any, n: int) -> dict[str, float]:
    pairs = list(Generator(GeneratorConfig(seed=1)).live(T0, n))
    records = [f.features for f, _ in pairs]

    started = time.perf_counter()
    pd.DataFrame.from_records(records)
    baseline = n / (time.perf_counter() - started)

    buffer = IngestBuffer({"fraud": layout})
    started = time.perf_counter()
    for feature, label in pairs:
        buffer.add_features(feature)
        buffer.add_label(label)
    batches = buffer.take()
    elapsed = time.perf_counter() - started
    assert sum(len(b.frame) for b in batches) == 3 * n
    rate = n / elapsed
    return {
        "events": n,
        "from_records_events_per_s": round(baseline),
        "core_events_per_s": round(rate),
        "ratio_to_from_records": round(rate / baseline, 3),
    }


def pushes(store: Any, layout: Any, batch: int, steps: int, base: int) -> dict[str, Any]:
    gen = Generator(GeneratorConfig(seed=2))
    out: list[dict[str, float]] = []
    stream = gen.live(T0, batch * steps)
    for step in range(steps):
        events = [next(stream) for _ in range(batch)]
        started = time.perf_counter()
        buffer = IngestBuffer({"fraud": layout})
        for feature, label in events:
            buffer.add_features(feature)
            buffer.add_label(label)
        batches = buffer.take()
        core_s = time.perf_counter() - started
        started = time.perf_counter()
        push_batches(store, batches)
        seconds = time.perf_counter() - started
        out.append(
            {
                "rows_before": base + step * batch,
                "core_seconds": round(core_s, 4),
                "push_seconds": round(seconds, 4),
                "events_per_s": round(batch / (core_s + seconds)),
            }
        )
    first = out[0]["push_seconds"]
    for row in out:
        row["push_ratio_to_first"] = round(row["push_seconds"] / first, 2)
    ratio = statistics.median(r["core_seconds"] / r["push_seconds"] for r in out)
    return {
        "batch_events": batch,
        "pushes": out,
        "core_to_push_median": round(ratio, 3),
        "target_core_to_push": TARGET_CORE_TO_PUSH,
        "meets_target": ratio <= TARGET_CORE_TO_PUSH,
    }


def first_load(store: Any, rows: int) -> dict[str, float]:
    frame = Generator(GeneratorConfig(seed=3)).history(T0, rows)
    started = time.perf_counter()
    write_history(store, frame)
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds)}


def snapshot(store: Any, rows: int) -> dict[str, float]:
    spec = load_model_spec(store, "fraud")
    started = time.perf_counter()
    snap = create_snapshot(
        store,
        spec,
        T0 - timedelta(days=1),
        T0 + timedelta(days=1),
        cache_root=Path(store.repo_path) / "data" / "profiles",
    )
    seconds = time.perf_counter() - started
    assert snap.rows == rows
    return {
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        "snapshot_id": snap.snapshot_id,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--variant", default="embedded", choices=["embedded", "real"])
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    n_core, batch, steps, history = (
        (5_000, 2_000, 3, 20_000) if args.quick else (100_000, 20_000, 6, 200_000)
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = open_repo(
            args.variant,
            repo_path=copy_repo(Path(tmp) / "repo"),
            project=f"bench_{uuid.uuid4().hex[:8]}",
        )
        try:
            apply_repo(store)
            layout = load_layout(store, "fraud")
            result = {
                "benchmark": "ingest",
                "quick": args.quick,
                "variant": args.variant,
                "python": platform.python_version(),
                "machine": platform.machine(),
                "core": core(layout, n_core),
                "first_load": first_load(store, history),
                "snapshot": snapshot(store, history),
                "push": pushes(store, layout, batch, steps, history),
            }
        finally:
            drop_project(store)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
