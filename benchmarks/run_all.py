"""Run every benchmark in turn (``make bench``); ``--quick`` passes through.

Each benchmark prints its table, writes ``benchmarks/results/<name>.json`` and exits
non-zero when it misses one of its targets; this runner reports them all and fails if
any failed.
"""

from __future__ import annotations

import subprocess
import sys
import time

BENCHMARKS = (
    "bench_drift_stats",
    "bench_drift_detection",
    "bench_drift_e2e",
    "bench_ingest",
    "bench_offline",
    "bench_finetune",
    "bench_shadow",
    "bench_online",
    "bench_prediction_drift",
    "bench_closed_loop",  # last: every service end to end (about an hour; --quick: minutes)
)


def main() -> int:
    extra = sys.argv[1:]
    failed = []
    for name in BENCHMARKS:
        print(f"=== {name} {' '.join(extra)}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, "-m", f"benchmarks.{name}", *extra])
        print(f"=== {name}: exit {code} after {time.monotonic() - started:.0f}s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"benchmarks that missed a target or failed: {', '.join(failed)}")
        return 1
    print("every benchmark met its targets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
