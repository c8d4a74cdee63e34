"""The closed loop end to end: scenarios with a known change through every real service.

Each run (scenario x task x seed) gets its own directory, embedded broker, Feast repo
and registry, and runs in a fresh process (:mod:`benchmarks.children`) with a time
limit; see :mod:`benchmarks.closed_loop.harness` for what a run does and
:mod:`benchmarks.closed_loop.scenarios` for the data. Everything reported is counted
from the topics (``drift.reports``, ``retrain.requests``, ``retrain.episodes``,
``models.verdicts``, ``models.promotions``) and the registry: requests by reason,
episodes (distinct ids), joined events, promotions, windows (drifted) against each
champion version, event time from the change to the promotion, and the loss on held-out
post-change rows of champion v1, the final champion and an oracle trained only on
post-change data.

Targets (:mod:`benchmarks.closed_loop.targets`), PASS/FAIL per scenario (every seed):
no_drift and recurring: 0 requests over >= 40 windows; covariate: exactly 1 promotion,
not rolled back, whose drift reference holds no pre-change row, with 0 drifted windows
of >= 3 against it and no request opening a new episode after it; covariate_long
(covariate's data, 80 windows of four times the events): the same with >= 40 windows
against the promoted champion; concept: a promotion in every seed and post-change loss
within 5% of the oracle; gradual: at most 2 promotions over the ramp, none after it.

Run: ``python -m benchmarks.bench_closed_loop [--quick] [--tasks binary,...]
[--scenarios covariate,...] [--seeds 0,1,2] [--events N] [--window N]``. ``--quick``:
the binary task, seed 0, 200-event windows, the no_drift and covariate scenarios unless
``--scenarios`` says otherwise (about 3 minutes; covariate_long keeps its 80 windows
even then). Writes
``benchmarks/results/closed_loop.json``; exits 1 when a scenario misses its target.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.children import run_in_child
from benchmarks.closed_loop.harness import RunOptions, child
from benchmarks.closed_loop.scenarios import (
    LIVE_WINDOWS,
    SCENARIO_WINDOW_SCALE,
    SCENARIO_WINDOWS,
    SCENARIOS,
    TASKS,
    Scenario,
)
from benchmarks.closed_loop.targets import judge

ROOT = Path(__file__).resolve().parent
QUICK_SCENARIOS = ("no_drift", "covariate")


def _names(text: str, known: tuple[str, ...], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise SystemExit(f"error: unknown {what} {', '.join(unknown) or '(none)'}; "
                         f"known: {', '.join(known)}")
    return names


def _fmt(value: Any, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def reference_cell(promotions: list[dict[str, Any]]) -> str:
    """``v2:0/3600`` per promoted version: its reference's pre-change rows / rows (and
    ``<ramp N`` rows before a ramp's end); ``?`` where it was not measured."""
    cells = []
    for p in promotions:
        rows, pre = p.get("reference_rows"), p.get("reference_pre_change_rows")
        cell = f"v{p['version']}:" + ("?" if rows is None else f"{_fmt(pre)}/{rows}")
        if p.get("reference_pre_settled_rows") is not None:
            cell += f" <ramp {p['reference_pre_settled_rows']}"
        cells.append(cell)
    return " ".join(cells) or "-"


def row(result: dict[str, Any]) -> list[str]:
    """One table row of a run's result."""
    if "error" in result:
        return [result["scenario"], result["task"], str(result["seed"]), "ERROR",
                result["error"][:80]]
    promotions = result["promotions"]
    versions = " ".join(f"v{v}:{w['drifted']}/{w['windows']}"
                        for v, w in result["windows_by_champion"].items())
    losses = result["losses"]
    return [
        result["scenario"], result["task"], str(result["seed"]),
        "PASS" if result["passed"] else "FAIL",
        ",".join(f"{k}={v}" for k, v in sorted(result["requests_by_reason"].items())) or "0",
        str(result["episodes"]), str(result["joined"]),
        str(len(promotions)) + (f" ({len(result['rollbacks'])} rolled back)"
                                if result.get("rollbacks") else ""), versions,
        " ".join(_fmt(p["change_to_promotion_min"], ".0f") for p in promotions) or "-",
        f"{_fmt(losses.get('v1'), '.4f')}/{_fmt(losses.get('final'), '.4f')}/"
        f"{_fmt(losses.get('oracle'), '.4f')}",
        _fmt(result.get("opened_by")), reference_cell(promotions),
        _fmt(result.get("requests_after_promotion")),
        f"{result['total_s']:.0f}s", result["why"] + (
            "" if result["ended"] == "settled" else f" [{result['ended']}]"),
    ]


HEADER = ["scenario", "task", "seed", "target", "requests", "episodes", "joined",
          "promotions", "drifted/windows per champion", "change->promotion min",
          "loss v1/final/oracle", "opened by", "ref pre-change/rows",
          "requests after promotion", "took", "why"]


def print_table(results: list[dict[str, Any]]) -> None:
    rows = [HEADER, *(row(r) for r in results)]
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(HEADER))]
    for r in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip())


def verdicts(results: list[dict[str, Any]]) -> dict[str, bool]:
    """PASS per scenario: every run of it (each task and seed) met its target."""
    out: dict[str, bool] = {}
    for r in results:
        out[r["scenario"]] = out.get(r["scenario"], True) and bool(r.get("passed"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="binary, seed 0, small windows, no_drift and covariate")
    parser.add_argument("--tasks", default=None, help=f"comma-separated: {','.join(TASKS)}")
    parser.add_argument("--scenarios", default=None,
                        help=f"comma-separated: {','.join(SCENARIOS)}")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--events", type=int, default=None, help="live events per run")
    parser.add_argument("--window", type=int, default=None, help="events per drift window")
    parser.add_argument("--limit-s", type=float, default=900.0, help="time limit per run")
    parser.add_argument("--keep", action="store_true", help="keep each run's directory")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "closed_loop.json")
    args = parser.parse_args(argv)

    tasks = _names(args.tasks or ("binary" if args.quick else ",".join(TASKS)), TASKS, "task")
    scenarios = _names(args.scenarios or ",".join(QUICK_SCENARIOS if args.quick else SCENARIOS),
                       SCENARIOS, "scenario")
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    window = args.window or (200 if args.quick else 250)

    def window_of(name: str) -> int:
        return window * SCENARIO_WINDOW_SCALE.get(name, 1)

    def events_of(name: str) -> int:
        # --quick shortens every stream but covariate_long's, whose length is its target
        quick = args.quick and name != "covariate_long"
        return args.events or (42 if quick else SCENARIO_WINDOWS.get(name, LIVE_WINDOWS)
                               ) * window_of(name)

    options = RunOptions(drain_s=60.0 if args.quick else 90.0)

    results = []
    for name in scenarios:
        for task in tasks:
            for seed in seeds:
                scenario = Scenario.make(name, task, seed=seed, events=events_of(name),
                                         window=window_of(name))
                workdir = Path(tempfile.mkdtemp(prefix=f"closed-loop-{name}-{task}-{seed}-"))
                started = time.monotonic()
                result, failure = run_in_child(child, (scenario, options, str(workdir)),
                                               args.limit_s)
                if result is None:
                    result = {"scenario": name, "task": task, "seed": seed,
                              "error": f"run did not finish: {failure}"}
                if "error" not in result:
                    result["passed"], result["why"] = judge(name, result)
                result["workdir"] = str(workdir) if args.keep else None
                if not args.keep:
                    import shutil

                    shutil.rmtree(workdir, ignore_errors=True)
                results.append(result)
                print(f"{name} {task} seed {seed}: "
                      f"{'ERROR ' + result['error'] if 'error' in result else result['why']}"
                      f" ({time.monotonic() - started:.0f}s)", flush=True)

    print()
    print_table(results)
    passed = verdicts(results)
    print()
    for name, ok in passed.items():
        print(f"{name}: {'PASS' if ok else 'FAIL'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "closed_loop", "quick": args.quick, "python": platform.python_version(),
        "tasks": tasks, "scenarios": scenarios, "seeds": seeds,
        "events": {name: events_of(name) for name in scenarios},
        "window": window, "windows": {name: window_of(name) for name in scenarios},
        "options": options.__dict__, "targets": passed, "runs": results,
    }, indent=2, default=str))
    print(f"wrote {args.out}")
    return 0 if all(passed.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
