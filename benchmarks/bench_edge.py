"""Cost of the contract edge: decode alone vs decode + nesting pre-check + validation.

The consumer loop decodes every message with msgspec, then (since the poison rules)
counts brackets (``may_be_too_deep``) and validates ranges (``streams.validation``).
This measures, in one run and on the same events, events per second for:

* ``decode``: the typed msgspec decoder alone (the baseline);
* ``edge``: pre-check + decode + ``validate`` (what the loop does per message).

Target: ``edge`` keeps at least 0.2 of ``decode``'s throughput for feature events of
20 features. Measured on the shared 2-core machine: 0.26-0.45 (decode 360-560k/s, edge
145-160k/s, i.e. the checks cost about 3-5 µs per event in pure Python, the decode about
1.2-2 µs); see ``benchmarks/results/edge.json``. Cost grows linearly with the features of
an event (C-level passes: one regex over all ids, names and categories, min/max/sum over
the numbers) and the bracket count linearly with its bytes; neither depends on history.
Moving the static parts (control characters, magnitude) into msgspec constraints of the
contracts would take most of it into C.

Run: ``python -m benchmarks.bench_edge [--quick]``. Writes ``benchmarks/results/edge.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from streams.codec import may_be_too_deep
from streams.contracts import FeatureEvent
from streams.settings import ValidationSettings
from streams.validation import validate

ROOT = Path(__file__).resolve().parent
TARGET_RATIO = 0.2


def events(n: int, n_features: int) -> list[bytes]:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        features: dict[str, float | str] = {f"x{j}": (i * 7 + j) * 0.37 for j in range(n_features)}
        features["channel"] = "online"
        out.append(msgspec.json.encode(FeatureEvent(
            event_id=f"e{i}", model="fraud", entity_id=f"card-{i % 1000}",
            event_time=t0 + timedelta(seconds=i), features=features)))
    return out


def rate(fn, data: list[bytes], repeat: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn(data)
        best = min(best, time.perf_counter() - started)
    return len(data) / best


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 20_000 if args.quick else 100_000
    decoder = msgspec.json.Decoder(FeatureEvent)
    limits = ValidationSettings()

    def decode_only(data: list[bytes]) -> None:
        for raw in data:
            decoder.decode(raw)

    def edge(data: list[bytes]) -> None:
        for raw in data:
            if may_be_too_deep(raw):
                raise AssertionError("valid events are shallow")
            validate(decoder.decode(raw), limits)

    rows = []
    for n_features in (5, 20, 80):
        data = events(n, n_features)
        base = rate(decode_only, data, 3)
        full = rate(edge, data, 3)
        rows.append({"features": n_features, "bytes": len(data[0]), "decode_per_s": round(base),
                     "edge_per_s": round(full), "ratio": round(full / base, 3)})
        print(f"{n_features:3d} features, {len(data[0]):5d} B: decode {base:9.0f}/s, "
              f"edge {full:9.0f}/s, ratio {full / base:.2f}")
    at20 = next(r for r in rows if r["features"] == 20)
    ok = at20["ratio"] >= TARGET_RATIO
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / "edge.json").write_text(json.dumps({
        "target_ratio_at_20_features": TARGET_RATIO, "met": ok, "rows": rows,
        "events": n, "python": platform.python_version(), "machine": platform.machine(),
    }, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
