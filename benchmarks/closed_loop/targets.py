"""A run's measures (from its :class:`~.tally.Tally`) and the acceptance targets.

Targets per scenario, judged per seed (a scenario passes when every seed does):

* ``no_drift``, ``recurring``: no retrain request over at least 40 windows;
* ``covariate``: exactly one promotion (one change), not rolled back, and at least 3
  windows judged against the promoted champion of which none drifted;
* ``concept``: a promotion, and the final champion's loss on held-out post-change data
  within 5% of an oracle trained only on post-change data;
* ``gradual``: at most 2 promotions, and none after the ramp: no promoted candidate
  answers a request whose estimated change start is at or after the ramp's end (the
  loop chased a change that was over), and none is placed wholly after the ramp's end
  when its request is unknown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from benchmarks.closed_loop.scenarios import Scenario
from benchmarks.closed_loop.tally import Tally

MIN_QUIET_WINDOWS = 40
MIN_WINDOWS_AFTER_PROMOTION = 3
ORACLE_TOLERANCE = 0.05
MAX_GRADUAL_PROMOTIONS = 2


def _minutes(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds() / 60.0, 1)


def measure(scenario: Scenario, tally: Tally) -> dict[str, Any]:
    """Everything the table and the targets need, as plain JSON-able data."""
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
        })
    return {
        "windows": len(tally.reports),
        "drifted_windows": sum(d for _, d in by_champion.values()),
        "windows_by_champion": {str(v): {"windows": n, "drifted": d}
                                for v, (n, d) in sorted(by_champion.items(),
                                                        key=lambda kv: kv[0] or 0)},
        "requests": len(tally.requests),
        "requests_by_reason": tally.requests_by_reason(),
        "episodes": len(tally.episodes()),
        "episode_events": tally.episode_statuses(),
        "joined": tally.episode_statuses().get("joined", 0),
        "absorbed": tally.absorbed(),
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
    if scenario == "covariate":
        if len(promotions) != 1:
            return False, f"{len(promotions)} promotions (want exactly 1)"
        if m.get("rollbacks"):  # its later windows were judged against the old champion
            back = m["rollbacks"][-1]
            return False, f"v{back['from']} rolled back to v{back['to']}"
        last = promotions[-1]
        if last["windows"] < MIN_WINDOWS_AFTER_PROMOTION:
            return False, (f"{last['windows']} windows against v{last['version']} "
                           f"(< {MIN_WINDOWS_AFTER_PROMOTION}: too few to judge)")
        if last["drifted_windows"]:
            return False, (f"{last['drifted_windows']} of {last['windows']} windows against "
                           f"v{last['version']} drifted")
        return True, (f"1 promotion; 0 of {last['windows']} windows against "
                      f"v{last['version']} drifted")
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
