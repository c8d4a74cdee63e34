"""A run's measures (from its :class:`~.tally.Tally`) and the acceptance targets.

Targets per scenario, judged per seed (a scenario passes when every seed does):

* ``no_drift``, ``recurring``: no retrain request over at least 40 windows;
* ``covariate``: exactly one promotion (one change), not rolled back, its drift
  reference (the promoted version's training snapshot) without a row from before the
  change, at least 3 windows judged against the promoted champion of which none drifted,
  and no retrain request opening a new episode after the promotion;
* ``covariate_long``: the same, with at least 40 windows against the promoted champion;
* ``concept``: a promotion, and the final champion's loss on held-out post-change data
  within 5% of an oracle trained only on post-change data;
* ``gradual``: at most 2 promotions, and none after the ramp: no promoted candidate
  answers a request whose estimated change start is at or after the ramp's end (the
  loop chased a change that was over), and none is placed wholly after the ramp's end
  when its request is unknown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from benchmarks.closed_loop.scenarios import Scenario
from benchmarks.closed_loop.tally import Tally

MIN_QUIET_WINDOWS = 40
MIN_WINDOWS_AFTER_PROMOTION = 3
# windows the promoted champion must see, per scenario of the covariate family
WINDOWS_AFTER_PROMOTION = {"covariate": MIN_WINDOWS_AFTER_PROMOTION, "covariate_long": 40}
ORACLE_TOLERANCE = 0.05
MAX_GRADUAL_PROMOTIONS = 2


def _minutes(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds() / 60.0, 1)


def reference_figures(snapshot_id: str, event_times: pd.Series,
                      scenario: Scenario) -> dict[str, Any]:
    """The make-up of a drift reference: its rows, those whose event time is before the
    change (and, for a ramp, before its end), from the snapshot's event-time column."""
    times = pd.to_datetime(event_times, utc=True)
    rows = len(times)
    out: dict[str, Any] = {"reference_snapshot_id": snapshot_id, "reference_rows": rows,
                           "reference_pre_change_rows": None,
                           "reference_pre_change_share": None}
    if scenario.change_time is not None:
        pre = int((times < pd.Timestamp(scenario.change_time)).sum())
        out["reference_pre_change_rows"] = pre
        out["reference_pre_change_share"] = round(pre / rows, 4) if rows else None
    if scenario.settled_time is not None and scenario.settled_time != scenario.change_time:
        out["reference_pre_settled_rows"] = int(
            (times < pd.Timestamp(scenario.settled_time)).sum())
    return out


def measure(scenario: Scenario, tally: Tally,
            references: Mapping[int, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Everything the table and the targets need, as plain JSON-able data.

    ``references``: per promoted version, its drift reference's make-up
    (:func:`reference_figures`, measured by the harness from the registry and the Feast
    store after the loop); a version without one gets ``reference_rows`` None."""
    references = references or {}
    by_champion = tally.windows_by_champion()
    promotions = []
    for p in tally.shadow_promotions():
        lower, upper = tally.promotion_window(p.new_champion)
        request = tally.promoted_request(p.new_champion)
        change_start = request.change_start if request is not None else None
        windows, drifted = by_champion.get(p.new_champion, (0, 0))
        promotions.append({
            "version": p.new_champion, "previous": p.previous_champion,
            "after_min": _minutes(lower, scenario.live_start),
            "by_min": _minutes(upper, scenario.live_start),
            "change_to_promotion_min": _minutes(upper, scenario.change_time),
            # wall clock, from the events' own stamps: what the acceleration does not scale
            "request_to_promotion_s": round(
                (p.promoted_at - request.requested_at).total_seconds(), 1)
            if request is not None else None,
            "request_change_start_min": _minutes(change_start, scenario.live_start),
            "request_at_min": _minutes(request.window_end, scenario.live_start)
            if request is not None else None,
            "after_settled": bool(
                scenario.settled_time is not None and (
                    (change_start is not None and change_start >= scenario.settled_time)
                    or (change_start is None and lower is not None
                        and lower >= scenario.settled_time))),
            "windows": windows, "drifted_windows": drifted,
            "reference_rows": None, "reference_pre_change_rows": None,
            "reference_pre_change_share": None,
            **references.get(p.new_champion, {}),
        })
    after = tally.requests_after_promotion()
    return {
        "windows": len(tally.reports),
        "drifted_windows": sum(d for _, d in by_champion.values()),
        "windows_by_champion": {str(v): {"windows": n, "drifted": d}
                                for v, (n, d) in sorted(by_champion.items(),
                                                        key=lambda kv: kv[0] or 0)},
        # windows under min_window_events (idle flushes): reported, never judged
        "small_windows_by_champion": {
            str(v): {"windows": n, "drifted": d}
            for v, (n, d) in sorted(tally.windows_by_champion(small=True).items(),
                                    key=lambda kv: kv[0] or 0)},
        "requests": len(tally.requests),
        "requests_by_reason": tally.requests_by_reason(),
        "episodes": len(tally.episodes()),
        "episode_events": tally.episode_statuses(),
        "joined": tally.episode_statuses().get("joined", 0),
        "absorbed": tally.absorbed(),
        "opened_by": tally.opened_by(),
        # requests opening a new episode after the last promotion (None: no promotion)
        "requests_after_promotion": None if after is None else len(after),
        "requests_after_promotion_by_reason": None if after is None else dict(
            Counter(r.reason for r in after)),
        "candidates": len(tally.candidates),
        "verdicts": {d: sum(1 for v in tally.verdicts.values() if v.decision == d)
                     for d in ("promote", "reject")},
        "promotions": promotions,
        "rollbacks": [{"from": p.previous_champion, "to": p.new_champion}
                      for p in tally.rollbacks()],
        "change_min": _minutes(scenario.change_time, scenario.live_start),
        "settled_min": _minutes(scenario.settled_time, scenario.live_start),
    }


def judge(scenario: str, m: dict[str, Any]) -> tuple[bool, str]:
    """PASS/FAIL of one run's measures ``m`` (with ``losses`` when measured), and why."""
    promotions = m["promotions"]
    if scenario in ("no_drift", "recurring"):
        if m["windows"] < MIN_QUIET_WINDOWS:
            return False, f"only {m['windows']} windows (< {MIN_QUIET_WINDOWS})"
        if m["requests"]:
            return False, f"{m['requests']} retrain requests {m['requests_by_reason']}"
        return True, f"0 requests over {m['windows']} windows"
    if scenario in WINDOWS_AFTER_PROMOTION:
        return _judge_covariate(m, WINDOWS_AFTER_PROMOTION[scenario])
    if scenario == "concept":
        if not promotions:
            return False, "no promotion"
        losses = m.get("losses") or {}
        final, oracle = losses.get("final"), losses.get("oracle")
        if final is None or oracle is None:
            return False, "post-change loss not measured"
        if final > oracle * (1.0 + ORACLE_TOLERANCE):
            return False, f"loss {final:.4f} > oracle {oracle:.4f} + {ORACLE_TOLERANCE:.0%}"
        return True, f"loss {final:.4f} within {ORACLE_TOLERANCE:.0%} of oracle {oracle:.4f}"
    if scenario == "gradual":
        after = [p for p in promotions if p["after_settled"]]
        if len(promotions) > MAX_GRADUAL_PROMOTIONS:
            return False, f"{len(promotions)} promotions (> {MAX_GRADUAL_PROMOTIONS})"
        if after:
            return False, f"{len(after)} promotions after the ramp (v{after[0]['version']})"
        return True, f"{len(promotions)} promotions over the ramp, none after it"
    raise ValueError(f"unknown scenario {scenario!r}")


def _judge_covariate(m: dict[str, Any], min_windows: int) -> tuple[bool, str]:
    """One promotion, kept, whose reference is post-change only, that sees at least
    ``min_windows`` windows with none drifted and no new episode after it; every rule
    that fails is named."""
    promotions = m["promotions"]
    if len(promotions) != 1:
        return False, f"{len(promotions)} promotions (want exactly 1)"
    last = promotions[-1]
    v = f"v{last['version']}"
    failed = []
    if m.get("rollbacks"):  # its later windows were judged against the old champion
        back = m["rollbacks"][-1]
        failed.append(f"v{back['from']} rolled back to v{back['to']}")
    pre = last.get("reference_pre_change_rows")
    if pre is None:
        failed.append(f"{v}'s reference not measured")
    elif pre:
        share = last.get("reference_pre_change_share") or 0.0
        failed.append(f"{v}'s reference holds {pre} rows from before the change "
                      f"({share:.0%})")
    if last["windows"] < min_windows:
        failed.append(f"{last['windows']} windows against {v} "
                      f"(< {min_windows}: too few to judge)")
    if last["drifted_windows"]:
        failed.append(f"{last['drifted_windows']} of {last['windows']} windows against "
                      f"{v} drifted")
    after = m.get("requests_after_promotion")
    if after is None:
        failed.append(f"requests after {v}'s promotion not measured")
    elif after:
        failed.append(f"{after} requests after {v}'s promotion "
                      f"{m.get('requests_after_promotion_by_reason') or {}}")
    if failed:
        return False, "; ".join(failed)
    return True, (f"1 promotion; 0 of {last['windows']} windows against {v} drifted; "
                  f"its reference has no pre-change row of {last.get('reference_rows')}; "
                  f"0 requests after it")
