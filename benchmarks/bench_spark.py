"""Snapshots on Spark (local mode) against the embedded default (DuckDB), same parts.

One repo per size holds ``rows`` labelled events as parquet parts; the embedded
variant (DuckDB, ASOF join) and the ``spark`` variant (Feast's Spark offline store,
pyspark ``local[2]``) each take the same ``create_snapshot`` (labels pull,
point-in-time join, canonical frame, hash, saved dataset), each in a child process.
Spark's session start is timed apart (``session_s``: a JVM and a SparkContext, paid
once per process) from the snapshot itself. Reported: rows/s per engine, Spark's
rate as a ratio of DuckDB's in the same run, and whether both hashed the same rows.
No target: Spark is here for scale-out beyond one machine, not speed on one.

Run: ``python -m benchmarks.bench_spark [--rows 100000 1000000]``; writes
``benchmarks/results/spark.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.children import run_in_child

RESULTS = Path(__file__).parent / "results" / "spark.json"
T0 = datetime(2026, 5, 1, tzinfo=UTC)
VARIANTS = {"duckdb_asof": "embedded", "spark_local": "spark"}


def _repo(tmp: Path, rows: int) -> Path:
    from services.features.feast_repo import apply_repo, copy_repo, open_repo
    from services.features.generate import Generator, GeneratorConfig
    from services.features.history import write_history

    repo = copy_repo(tmp / f"repo-{rows}")
    store = open_repo("embedded", repo_path=repo, project=f"bench_{uuid.uuid4().hex[:8]}")
    apply_repo(store)
    write_history(store, Generator(GeneratorConfig(seed=3)).history(T0, rows))
    return repo


def _child(repo: str, variant: str, queue: Any) -> None:
    warnings.simplefilter("ignore")
    from services.features.feast_repo import apply_repo, load_model_spec, open_repo
    from services.features.snapshot import create_snapshot

    store = open_repo(variant, repo_path=Path(repo), project=f"b_{uuid.uuid4().hex[:8]}")
    apply_repo(store)
    session_s = 0.0
    if variant == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
            get_spark_session_or_start_new_with_repoconfig,
        )

        started = time.perf_counter()
        get_spark_session_or_start_new_with_repoconfig(store.config.offline_store)
        session_s = time.perf_counter() - started
    spec = load_model_spec(store, "fraud")
    started = time.perf_counter()
    snap = create_snapshot(store, spec, T0 - timedelta(days=30), T0 + timedelta(days=1),
                           with_profile=False)
    queue.put((time.perf_counter() - started, session_s, snap.rows, snap.sha256))


def snapshot(rows: int, limit_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": rows, "engines": {}}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        repo = _repo(Path(tmp), rows)
        out["setup_seconds"] = round(time.perf_counter() - started, 1)
        for name, variant in VARIANTS.items():
            result, failed = run_in_child(_child, (str(repo), variant), limit_s)
            if failed:
                out["engines"][name] = failed
                continue
            seconds, session_s, got, digest = result
            assert got == rows, f"{name}: snapshot of {got} rows, expected {rows}"
            out["engines"][name] = {"finished": True, "seconds": round(seconds, 3),
                                    "session_s": round(session_s, 2),
                                    "rows_per_s": round(rows / seconds), "sha256": digest}
    done = [e for e in out["engines"].values() if e.get("finished")]
    out["same_sha256"] = len(done) == len(VARIANTS) and len({e["sha256"] for e in done}) == 1
    duck, spark = out["engines"]["duckdb_asof"], out["engines"]["spark_local"]
    if duck.get("finished") and spark.get("finished"):
        out["spark_vs_duckdb"] = round(spark["rows_per_s"] / duck["rows_per_s"], 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--limit-s", type=float, default=900.0)
    args = parser.parse_args()
    result = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "platform": platform.platform()},
        "snapshot": [snapshot(n, args.limit_s) for n in args.rows],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0 if all(s["same_sha256"] for s in result["snapshot"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
