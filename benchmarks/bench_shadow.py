"""Shadow decision quality: false-promotion rate under continuous monitoring, and power.

Simulates champion/candidate pairs the way the shadow evaluator sees them, for each task.
Binary: each event has a true logit ``z`` and a label ``y ~ Bernoulli(sigmoid(z))``;
each model predicts ``sigmoid(z + noise)`` where the two models' noise shares a common
part (correlated errors, as for a candidate fine-tuned from the champion). Multiclass:
K true logits, the label drawn from their softmax, each model predicts the softmax of
the logits plus noise. Regression: a true value, the label is it plus label noise, each
model predicts it plus its noise (squared errors are heavy-tailed: the paired t-test's
level is checked there too). Per-event losses come from the task's own
``Task.batch_loss`` (log loss, cross-entropy, squared error, clipped like the evaluator
clips them) and arrive in batches of uneven size; after every batch the full procedure
runs (``PairedStats.add_many`` then ``decide``), until it decides or ``max_pairs`` is
reached.

* Null: both models have the same noise, so no true difference. The false-promotion
  rate must be <= alpha. Shown for the default policy (1% minimum improvement) and for
  margin 0 (the test's level alone), next to naive peeking (a t-test at level alpha after
  every batch) and a single fixed-horizon test.
* Power: the candidate's noise is set so its expected loss is 5% lower (calibrated by
  Monte Carlo); reported: labelled pairs needed to promote (median, 90th percentile).
* The same null and 5% scenarios for a multiclass (3 classes) and a regression model:
  the margins are relative, so one policy serves every task.

Run: ``python benchmarks/bench_shadow.py [--quick] [--seed N]``. Writes
``benchmarks/results/shadow.json`` and ``benchmarks/shadow.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import special

from services.model.task import Task
from services.shadow.decision import PairedStats, ShadowPolicy, decide, paired_t

ROOT = Path(__file__).resolve().parent
EVENTS_PER_SECOND = 10.0  # simulated label rate: 50,000 pairs in under 1.5 h (< max_duration)


@dataclass(frozen=True)
class World:
    """How the simulated events and the two models' errors are drawn."""

    logit_mean: float = -0.5
    logit_sd: float = 1.5
    noise_sd: float = 1.0  # champion's prediction noise (logit scale; value scale)
    correlation: float = 0.8  # share of noise variance common to both models
    task: str = "binary"  # binary, multiclass (3 classes) or regression
    label_sd: float = 0.5  # regression: label noise around the true value

    def losses(
        self, rng: np.random.Generator, n: int, candidate_noise_sd: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-event losses (champion, candidate) of ``n`` labelled events."""
        shape = (n, 3) if self.task == "multiclass" else (n,)
        z = rng.normal(self.logit_mean, self.logit_sd, shape)
        y = self._labels(rng, z)
        common = rng.standard_normal(shape)
        a, b = math.sqrt(self.correlation), math.sqrt(1.0 - self.correlation)
        e_ch = self.noise_sd * (a * common + b * rng.standard_normal(shape))
        e_ca = candidate_noise_sd * (a * common + b * rng.standard_normal(shape))
        task = TASKS[self.task]
        return task.batch_loss(y, self._predict(z + e_ch)), task.batch_loss(
            y, self._predict(z + e_ca))

    def _labels(self, rng: np.random.Generator, z: np.ndarray) -> np.ndarray:
        if self.task == "binary":
            return (rng.random(len(z)) < special.expit(z)).astype(np.float64)
        if self.task == "multiclass":
            cum = np.cumsum(special.softmax(z, axis=1), axis=1)
            idx = (rng.random((len(z), 1)) > cum).sum(axis=1).clip(max=z.shape[1] - 1)
            return np.asarray(TASKS["multiclass"].classes, dtype=np.float64)[idx]
        return z + rng.normal(0.0, self.label_sd, len(z))

    def _predict(self, noisy: np.ndarray) -> np.ndarray:
        if self.task == "binary":
            return special.expit(noisy)
        if self.task == "multiclass":
            return special.softmax(noisy, axis=1)
        return noisy


TASKS = {"binary": Task(), "multiclass": Task(kind="multiclass", classes=(0, 1, 2)),
         "regression": Task(kind="regression")}


def calibrate(world: World, improvement: float, seed: int, n: int = 1_000_000) -> float:
    """Candidate noise sd giving ``E[L_cand] = (1 - improvement) E[L_champ]`` (bisection
    over the same draws)."""

    def mean_loss(sd: float) -> float:
        return float(world.losses(np.random.default_rng(seed), n, sd)[1].mean())

    target = (1.0 - improvement) * mean_loss(world.noise_sd)
    lo, hi = 0.0, world.noise_sd
    for _ in range(30):
        mid = (lo + hi) / 2
        if mean_loss(mid) > target:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def batch_sizes(rng: np.random.Generator, total: int) -> list[int]:
    """Uneven arrival batches (like consumer polls): 100..1,500 pairs each."""
    sizes, n = [], 0
    while n < total:
        s = int(min(rng.integers(100, 1501), total - n))
        sizes.append(s)
        n += s
    return sizes


def run_one(
    world: World, policy: ShadowPolicy, candidate_sd: float, rng: np.random.Generator
) -> dict:
    """One candidate's shadow run; also what naive peeking / a fixed test would have said."""
    ch, ca = world.losses(rng, policy.max_pairs, candidate_sd)
    stats = PairedStats.for_policy(policy)
    naive_promoted = False
    a = 1.0 - policy.min_relative_improvement
    out: dict = {"action": "continue", "pairs": policy.max_pairs}
    start = 0
    for size in batch_sizes(rng, policy.max_pairs):
        stats.add_many(ch[start : start + size], ca[start : start + size])
        start += size
        if not naive_promoted and stats.n >= policy.min_pairs:
            naive_promoted = paired_t(stats.moments, a, 1.0)[1] <= policy.alpha
        if out["action"] == "continue":
            d = decide(stats, policy, stats.n / EVENTS_PER_SECOND)
            if d.action != "continue":
                out = {"action": d.action, "pairs": d.samples, "reason": d.reason}
        if out["action"] != "continue" and naive_promoted:
            break
    final = stats.moments if stats.n == policy.max_pairs else None
    if final is None:  # stopped early: finish the fixed-horizon comparison on all pairs
        final = PairedStats()
        final.add_many(ch, ca)
        final = final.moments
    out["naive_promoted"] = naive_promoted
    out["fixed_promoted"] = paired_t(final, a, 1.0)[1] <= policy.alpha
    return out


def scenario(
    name: str, world: World, policy: ShadowPolicy, candidate_sd: float, runs: int, seed: int
) -> dict:
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    results = [run_one(world, policy, candidate_sd, rng) for _ in range(runs)]
    promoted = [r for r in results if r["action"] == "promote"]
    pairs = np.array([r["pairs"] for r in promoted]) if promoted else np.array([np.nan])
    summary = {
        "scenario": name,
        "runs": runs,
        "policy": json.loads(policy.model_dump_json()),
        "candidate_noise_sd": candidate_sd,
        "promoted": len(promoted) / runs,
        "promoted_ci95_upper": _upper95(len(promoted), runs),
        "rejected_regression": sum("worse" in r.get("reason", "") for r in results) / runs,
        "rejected_max_pairs": sum("max_pairs" in r.get("reason", "") for r in results) / runs,
        "naive_peeking_promoted": sum(r["naive_promoted"] for r in results) / runs,
        "fixed_horizon_promoted": sum(r["fixed_promoted"] for r in results) / runs,
        "pairs_to_promote_median": float(np.median(pairs)),
        "pairs_to_promote_p90": float(np.percentile(pairs, 90)),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "policy"}))
    return summary


def _upper95(k: int, n: int) -> float:
    """Clopper-Pearson one-sided 95% upper bound of a rate k/n."""
    return 1.0 if k == n else float(special.betaincinv(k + 1, n - k, 0.95))


def write_markdown(report: dict, path: Path) -> None:
    rows = [
        "| scenario | runs | promoted | 95% upper | naive peeking | fixed horizon "
        "| regression rejects | pairs to promote (median / p90) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in report["scenarios"]:
        pairs = (
            f"{s['pairs_to_promote_median']:,.0f} / {s['pairs_to_promote_p90']:,.0f}"
            if s["promoted"] > 0
            else "n/a"
        )
        rows.append(
            f"| {s['scenario']} | {s['runs']} | {s['promoted']:.3f} | "
            f"{s['promoted_ci95_upper']:.3f} | {s['naive_peeking_promoted']:.3f} | "
            f"{s['fixed_horizon_promoted']:.3f} | {s['rejected_regression']:.3f} | {pairs} |"
        )
    w = report["world"]
    quick = " --quick" if report["quick"] else ""
    power = next(x for x in report["scenarios"] if x["scenario"] == "5% lower loss")
    looks = report["looks"]
    others = "; ".join(
        f"{x['scenario'].split(':')[0]}: {x['promoted']:.0%}, median "
        f"{x['pairs_to_promote_median']:,.0f} pairs"
        for x in report["scenarios"] if x["scenario"].endswith(": 5% lower loss"))
    text = f"""# Shadow decision benchmark

Generated by `benchmarks/bench_shadow.py{quick}` (seed {report["seed"]},
Python {report["python"]}, {report["seconds"]:.0f} s).

Each run simulates one candidate in shadow. Binary: per-event log losses of champion and
candidate on the same labelled events: true logit ~ N({w["logit_mean"]}, {w["logit_sd"]}^2),
label ~ Bernoulli(sigmoid(logit)), each model's prediction noise has sd {w["noise_sd"]} on
the logit scale with {w["correlation"]:.0%} of its variance shared by the two models.
Pairs arrive in uneven batches of 100-1,500; after every batch the full procedure
(`PairedStats.add_many`, then `decide`) runs, until it decides or reaches `max_pairs`.

Policy (defaults): looks at {looks[0]:,} pairs, then every {report["look_every"]:,}, up to
{looks[-1]:,} ({len(looks)} looks); alpha {report["alpha"]}; Pocock-type alpha spending,
union bound over the looks; minimum relative improvement 1% (0 in "margin 0").

{chr(10).join(rows)}

- *promoted* under a null scenario is the false-promotion rate; it must be <= alpha
  ({report["alpha"]}). *95% upper* is its one-sided Clopper-Pearson bound.
- *naive peeking*: a one-sided t-test at level alpha after every batch, promote at the
  first p <= alpha: what continuous monitoring without a correction does.
- *fixed horizon*: one test at level alpha on all {report["looks"][-1]:,} pairs (valid, but
  needs the whole sample before any decision).
- *pairs to promote*: labelled pairs seen when the promotion was decided (looks come
  every {report["look_every"]:,} pairs, so values are multiples of it).

Multiclass (3 classes, cross-entropy) and regression (squared error, label noise sd
{w["label_sd"]}, prediction noise sd {w["noise_sd"]}) run the same policy: its margins are
relative to the champion's mean loss, so they need no per-task or per-unit setting.

Verdict: false-promotion rate {report["false_promotion_rate"]:.4f} with the default policy
and {report["false_promotion_rate_margin0"]:.4f} with margin 0, and at most
{max(report["false_promotion_rate_by_null"].values()):.4f} over every null scenario
(limit {report["alpha"]}): {"PASS" if report["pass"] else "FAIL"}. A binary candidate with 5%
lower expected loss was promoted in {power["promoted"]:.0%} of runs, after
{power["pairs_to_promote_median"]:,.0f} labelled pairs (median) and
{power["pairs_to_promote_p90"]:,.0f} (90th percentile); {others}.
"""
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (smoke test)")
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "shadow.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "shadow.md")
    args = parser.parse_args()

    null_runs, power_runs = (200, 100) if args.quick else (1000, 300)
    world = World()
    policy = ShadowPolicy()
    no_margin = policy.model_copy(update={"min_relative_improvement": 0.0})
    t0 = time.perf_counter()
    sd_5 = calibrate(world, 0.05, args.seed)
    sd_2 = calibrate(world, 0.02, args.seed)
    scenarios = [
        scenario("null, default policy", world, policy, world.noise_sd, null_runs, args.seed),
        scenario("null, margin 0", world, no_margin, world.noise_sd, null_runs, args.seed + 1),
        scenario("5% lower loss", world, policy, sd_5, power_runs, args.seed + 2),
        scenario("2% lower loss", world, policy, sd_2, power_runs, args.seed + 3),
        scenario(
            "5% lower loss, 50% shared noise",
            World(correlation=0.5),
            policy,
            calibrate(World(correlation=0.5), 0.05, args.seed),
            power_runs,
            args.seed + 4,
        ),
    ]
    for offset, kind in ((5, "multiclass"), (7, "regression")):
        other = World(task=kind, logit_mean=0.0)
        scenarios += [
            scenario(f"{kind}: null", other, policy, other.noise_sd, null_runs,
                     args.seed + offset),
            scenario(f"{kind}: 5% lower loss", other, policy,
                     calibrate(other, 0.05, args.seed), power_runs, args.seed + offset + 1),
        ]
    nulls = [x for x in scenarios if "null" in x["scenario"]]
    false_rate = scenarios[0]["promoted"]
    report = {
        "benchmark": "shadow",
        "quick": args.quick,
        "seed": args.seed,
        "python": platform.python_version(),
        "world": world.__dict__,
        "alpha": policy.alpha,
        "looks": list(policy.looks()),
        "look_every": policy.look_every,
        "levels": list(policy.levels()),
        "scenarios": scenarios,
        "false_promotion_rate": false_rate,
        "false_promotion_rate_margin0": scenarios[1]["promoted"],
        "false_promotion_rate_by_null": {x["scenario"]: x["promoted"] for x in nulls},
        "pass": all(x["promoted"] <= policy.alpha for x in nulls),
        "seconds": time.perf_counter() - t0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    write_markdown(report, args.markdown)
    print(
        f"false promotion {false_rate:.4f} (margin 0: {scenarios[1]['promoted']:.4f}); "
        f"pass={report['pass']}; {report['seconds']:.0f} s"
    )


if __name__ == "__main__":
    main()
