"""Offline data path: ingest throughput against the history size, snapshot engines.

1. Ingest end to end from Kafka: ``events`` feature events and their labels are
   replayed into the embedded broker, then the real ingest service (one process, its
   defaults: flush every 150,000 rows or 5 s, card state online in SQLite, every row
   offline as new parquet parts; the tail is flushed as soon as the last message is
   consumed rather than after the 5 s timer) consumes them into a repo that already holds
   ``history`` rows per view. Timed from its first consumed message until every row
   is written. Cost must grow with the new data, not the history.
   Baseline in the same run: a bare consume + typed decode of the same messages.
   Targets: rate with the largest history >= 0.9 x rate with the smallest;
   >= 30,000 events/s (feature and label messages) with every history.
2. Snapshot (``create_snapshot`` without the drift profile: labels pull,
   point-in-time join, canonical frame, hash, saved dataset) over ``rows`` labelled
   events, on the embedded default (DuckDB, ASOF join), Feast's own DuckDB store and
   Feast's file store (the old default, the baseline), same parts, same run; each
   engine in a child process with a time limit (``null`` when it did not finish).
   Targets: the largest snapshot >= 100,000 rows/s on DuckDB, and >= 10x the file
   store in the same run at the largest size where the file store finishes (250,000
   rows here: at 1M its process is killed, most likely out of memory, which is
   reported as such: ``finished: false`` with its exit code).

Run: ``python -m benchmarks.bench_offline [--quick]``; writes
``benchmarks/results/offline.json``.
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
from benchmarks.kafka_harness import embedded_broker

RESULTS = Path(__file__).parent / "results" / "offline.json"
T0 = datetime(2026, 5, 1, tzinfo=UTC)
TARGET_HISTORY_RATIO = 0.9
TARGET_INGEST_EVENTS_PER_S = 30_000
TARGET_SNAPSHOT_ROWS_PER_S = 100_000
TARGET_SNAPSHOT_VS_FILE = 10.0
ENGINES = {
    "duckdb_asof": None,  # the embedded default's feature_store.yaml
    "duckdb_feast": "duckdb",
    "file": "file",
}


def _repo(tmp: Path, history: int) -> tuple[Path, str]:
    from services.features.feast_repo import apply_repo, copy_repo, open_repo
    from services.features.generate import Generator, GeneratorConfig
    from services.features.history import write_history

    repo = copy_repo(tmp / f"repo-{history}")
    project = f"bench_{uuid.uuid4().hex[:8]}"
    store = open_repo("embedded", repo_path=repo, project=project)
    apply_repo(store)
    if history:
        write_history(store, Generator(GeneratorConfig(seed=3)).history(T0, history))
        # "already stored": on disk, not in the page cache waiting for writeback (ext4's
        # journal commit would otherwise make the ingest's first fsyncs wait for it)
        os.sync()
    return repo, project


def _open(repo: Path, project: str, offline: str | None) -> Any:
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    from services.features.feast_repo import load_repo_config_dict
    from streams.settings import FeastSettings

    raw = load_repo_config_dict(FeastSettings(repo=repo, project=project))
    if offline:
        raw["offline_store"] = {"type": offline}
    config = RepoConfig(**raw)
    config.repo_path = repo
    return FeatureStore(repo_path=str(repo), config=config)


def ingest(history: int, events: int) -> dict[str, Any]:
    from services.features.generate import Generator, GeneratorConfig
    from services.features.ingest_service import IngestService
    from services.features.parts import list_parts
    from services.features.replay import replay
    from streams.producer import EventProducer

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        repo, project = _repo(Path(tmp), history)
        setup_s = time.perf_counter() - started
        store = _open(repo, project, None)
        # 1,000 events/s of event time: the whole replay stays inside the ingest's
        # label wait (10 minutes of event time), however the partitions interleave
        live = GeneratorConfig(seed=11, label_delay_s=1.0, events_per_second=1000.0)
        pairs = list(Generator(live).live(T0 + timedelta(hours=1), events))
        with embedded_broker() as settings:
            with EventProducer(settings, "bench") as producer:
                replay(producer, settings, pairs)
            # the service's defaults (flush every 150,000 rows or 5 s); the 5 s timer
            # would only delay the tail of a finite replay (latency, not cost), so once
            # every message is consumed the rest is flushed at once, as a shutdown or a
            # partition revocation does (labels still waiting flush when they join)
            service = IngestService(settings, store=store)
            first: list[float] = []

            def done() -> bool:
                if not first and service.loop.stats.consumed:
                    first.append(time.perf_counter())
                if service.loop.stats.consumed >= 2 * events and service.buffer.rows:
                    service.flush()
                return service.sink.rows >= 3 * events

            service.run(until=done, idle_timeout_s=120)
            elapsed = time.perf_counter() - first[0]
            rows = service.sink.rows
            baseline = consume_decode(settings, 2 * events)
            parts = sum(len(list_parts(v)) for v in (Path(repo) / "data" / "offline").iterdir())
    assert rows == 3 * events, f"wrote {rows} rows, expected {3 * events}"
    return {
        "history_rows_per_view": history,
        "feature_events": events,
        "messages": 2 * events,
        "seconds": round(elapsed, 3),
        "events_per_s": round(2 * events / elapsed),
        "feature_events_per_s": round(events / elapsed),
        "baseline_consume_decode_per_s": round(baseline),
        "ratio_to_baseline": round(2 * events / elapsed / baseline, 3),
        "flushes": service.sink.pushes // 3,
        "parts_after": parts,
        "setup_seconds": round(setup_s, 1),
    }


def consume_decode(settings: Any, messages: int, timeout_s: float = 300.0) -> float:
    """Baseline in the same run: consume the same two topics and decode each message
    into its typed event, nothing else (the ceiling of any ingest); messages/s."""
    import msgspec
    from confluent_kafka import Consumer

    from streams.contracts import FeatureEvent, LabelEvent

    decoders = {settings.topic("features"): msgspec.json.Decoder(FeatureEvent),
                settings.topic("labels"): msgspec.json.Decoder(LabelEvent)}
    consumer = Consumer(settings.kafka.consumer_config(f"baseline-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe(list(decoders))
    seen, started = 0, None
    deadline = time.monotonic() + timeout_s
    try:
        while seen < messages and time.monotonic() < deadline:
            batch = consumer.consume(num_messages=10_000, timeout=0.2)
            if batch and started is None:
                started = time.perf_counter()
            for m in batch:
                if m.error() is None:
                    decoders[m.topic()].decode(m.value())
                    seen += 1
    finally:
        consumer.close()
    assert started is not None and seen == messages, f"baseline read {seen} of {messages}"
    return seen / (time.perf_counter() - started)


def _snapshot_child(repo: str, project: str, offline: str | None, queue: Any) -> None:
    warnings.simplefilter("ignore")
    from services.features.feast_repo import load_model_spec
    from services.features.snapshot import create_snapshot

    store = _open(Path(repo), project, offline)
    spec = load_model_spec(store, "fraud")
    started = time.perf_counter()
    snap = create_snapshot(store, spec, T0 - timedelta(days=30), T0 + timedelta(days=1),
                           with_profile=False)
    queue.put((time.perf_counter() - started, snap.rows, snap.sha256))


def snapshot(rows: int, limit_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": rows, "engines": {}}
    with tempfile.TemporaryDirectory() as tmp:
        repo, project = _repo(Path(tmp), rows)
        for name, offline in ENGINES.items():
            result, failed = run_in_child(_snapshot_child, (str(repo), project, offline),
                                          limit_s)
            if failed:  # out of time, or e.g. killed for memory
                out["engines"][name] = failed
                continue
            seconds, got, digest = result
            assert got == rows, f"{name}: snapshot of {got} rows, expected {rows}"
            out["engines"][name] = {"finished": True, "seconds": round(seconds, 3),
                                    "rows_per_s": round(rows / seconds), "sha256": digest}
    finished = [e for e in out["engines"].values() if e.get("finished")]
    out["same_sha256"] = len({e["sha256"] for e in finished}) == 1
    asof, file = out["engines"]["duckdb_asof"], out["engines"]["file"]
    if asof.get("finished") and file.get("finished"):
        out["asof_vs_file"] = round(asof["rows_per_s"] / file["rows_per_s"], 1)
    elif asof.get("finished") and "died_after_s" in file:
        # the file store ran that long without finishing: a lower bound of the ratio
        out["asof_vs_file_at_least"] = round(file["died_after_s"] / asof["seconds"], 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--events", type=int, default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.quick:
        histories, events, snaps, limit = (10_000, 50_000), args.events or 5_000, (20_000,), 300
    else:
        histories = (100_000, 1_000_000, 5_000_000)
        events, snaps, limit = args.events or 100_000, (100_000, 250_000, 1_000_000), 400
    load = os.getloadavg()
    result: dict[str, Any] = {
        "benchmark": "offline",
        "quick": args.quick,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in load],
        "ingest": [ingest(h, events) for h in histories],
        "snapshot": [snapshot(n, limit) for n in snaps],
    }
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    runs = result["ingest"]
    ratio = runs[-1]["events_per_s"] / runs[0]["events_per_s"]
    largest = result["snapshot"][-1]
    asof = largest["engines"]["duckdb_asof"]
    # the ratio to the file store where it still finishes (the largest such size)
    both = [s for s in result["snapshot"] if "asof_vs_file" in s]
    vs_file = both[-1] if both else largest
    checks = {
        "ingest_history_ratio": round(ratio, 3),
        "ingest_history_ratio_ok": ratio >= TARGET_HISTORY_RATIO,
        "ingest_min_events_per_s": min(r["events_per_s"] for r in runs),
        "ingest_rate_ok": all(r["events_per_s"] >= TARGET_INGEST_EVENTS_PER_S for r in runs),
        "ingest_ratio_to_baseline": [r["ratio_to_baseline"] for r in runs],
        "snapshot_rows_per_s": asof.get("rows_per_s"),
        "snapshot_rate_ok": (asof.get("rows_per_s") or 0) >= TARGET_SNAPSHOT_ROWS_PER_S,
        "snapshot_vs_file_rows": vs_file["rows"],
        "snapshot_vs_file": vs_file.get("asof_vs_file"),
        "snapshot_vs_file_at_least": vs_file.get("asof_vs_file_at_least"),
        "snapshot_vs_file_ok": max(vs_file.get("asof_vs_file") or 0,
                                   vs_file.get("asof_vs_file_at_least") or 0)
        >= TARGET_SNAPSHOT_VS_FILE,
        "file_store_largest": {
            "rows": largest["rows"],
            "finished": largest["engines"]["file"].get("finished"),
            "exitcode": largest["engines"]["file"].get("exitcode"),
            "died_after_s": largest["engines"]["file"].get("died_after_s")},
        "snapshots_identical": all(s["same_sha256"] for s in result["snapshot"]),
    }
    result["checks"] = checks
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    passed = [v for k, v in checks.items() if k.endswith("_ok") or k == "snapshots_identical"]
    return 0 if all(passed) else 1


if __name__ == "__main__":
    sys.exit(main())
