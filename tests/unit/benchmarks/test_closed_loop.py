"""The closed-loop benchmark's pure parts: its scenarios put the change where they say,
its tally counts what the topics hold (once), and its targets fail what they should."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from benchmarks.closed_loop.scenarios import (
    DAY_S,
    FEATURES,
    SCENARIO_WINDOWS,
    Scenario,
    draw,
    heldout_frame,
    history_frame,
    live_frame,
)
from benchmarks.closed_loop.tally import Tally
from benchmarks.closed_loop.targets import judge, measure, reference_figures
from streams.contracts import (
    DriftReport,
    EpisodeEvent,
    ModelCandidate,
    ModelPromotion,
    PairedTest,
    RetrainRequest,
    ShadowVerdict,
    WindowBounds,
)

START = datetime(2026, 11, 20, tzinfo=UTC)
MODEL = "cl_binary"


def scenario(name: str, **kw: object) -> Scenario:
    return Scenario.make(name, "binary", events=4000, window=200, start=START, **kw)


# -- scenarios --------------------------------------------------------------------------

def test_covariate_moves_the_named_inputs_at_the_change_window_and_no_earlier() -> None:
    s = scenario("covariate", change_window=10)
    live = live_frame(s)
    change = s.change_window * s.window
    assert live["event_timestamp"].iloc[change] == s.change_time
    before, after = live.iloc[:change], live.iloc[change:]
    assert abs(before["x0"].mean()) < 0.1 and abs(after["x0"].mean() - 1.5) < 0.1
    assert abs(after["x4"].mean()) < 0.1  # an input that is not moved
    # one window before the change is still the old data (a move one window early fails)
    assert abs(before["x1"].iloc[-s.window:].mean()) < 0.2


def test_concept_changes_labels_of_the_same_inputs_and_nothing_else() -> None:
    s = Scenario.make("concept", "regression", events=4000, window=200, start=START)
    pre = np.array([0.0, 10.0])
    post = pre + s.change_time.timestamp() - s.live_start.timestamp() + 60.0
    x_pre, y_pre = draw(s, pre, np.random.default_rng(5))
    x_post, y_post = draw(s, post, np.random.default_rng(5))
    np.testing.assert_array_equal(x_pre, x_post)
    assert not np.allclose(y_pre, y_post)
    calm = Scenario.make("no_drift", "regression", events=4000, window=200, start=START)
    np.testing.assert_array_equal(draw(calm, pre, np.random.default_rng(5))[1],
                                  draw(calm, post, np.random.default_rng(5))[1])


def test_gradual_ramps_over_its_windows_and_heldout_is_the_final_state() -> None:
    s = scenario("gradual", change_window=5, ramp_windows=8)
    live = live_frame(s)
    start = s.change_window * s.window
    middle = live.iloc[start + 3 * s.window: start + 5 * s.window]  # 3/8 .. 5/8 of the ramp
    assert abs(middle["x0"].mean() - 0.75) < 0.15
    assert s.settled_time == s.live_start + timedelta(seconds=(start + 8 * s.window)
                                                      * s.spacing_s)
    assert abs(heldout_frame(s)["x0"].mean() - 1.5) < 0.1


def test_recurring_history_holds_whole_days_of_the_cycle() -> None:
    s = scenario("recurring")
    assert s.window_minutes == 120.0
    history = history_frame(s)
    span = (history["event_timestamp"].max() - history["event_timestamp"].min()).total_seconds()
    assert span >= 4 * DAY_S
    seconds = history["event_timestamp"].astype("int64") / 1e9
    phase = np.sin(2 * np.pi * (seconds % DAY_S) / DAY_S)
    assert np.corrcoef(phase, history["x3"])[0, 1] > 0.3
    assert abs(np.corrcoef(phase, history["x0"])[0, 1]) < 0.1
    assert s.change_time is None


def test_event_ids_are_unique_across_history_live_and_heldout() -> None:
    s = scenario("covariate")
    ids = [*history_frame(s)["event_id"], *live_frame(s)["event_id"],
           *heldout_frame(s)["event_id"]]
    assert len(ids) == len(set(ids))


def test_unknown_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: no_drift"):
        Scenario.make("sudden", "binary")


# -- tally ------------------------------------------------------------------------------

def report(i: int, version: int, drifted: bool, s: Scenario,
           n_events: int = 200) -> DriftReport:
    start = s.live_start + timedelta(minutes=5 * i)
    return DriftReport(
        event_id=f"d{i}", model=MODEL, reference_snapshot_id="snap",
        window=WindowBounds(start_time=start, end_time=start + timedelta(minutes=5),
                            n_events=n_events),
        champion_version=version, features=[], drifted_share=1.0 if drifted else 0.0,
        drifted=drifted, created_at=start)


def request(rid: str, change: datetime, *, at: datetime = START, attempt: int = 1,
            episode: str | None = None) -> RetrainRequest:
    return RetrainRequest(
        event_id=f"r-{rid}", request_id=rid, model=MODEL, reason="covariate", base_version=1,
        window_start=change, window_end=change + timedelta(minutes=10), requested_at=at,
        change_point=change, attempt=attempt, episode_id=episode)


def verdict(version: int, rid: str | None, decision: str = "promote") -> ShadowVerdict:
    return ShadowVerdict(
        event_id=f"v{version}", model=MODEL, candidate=version, champion=version - 1,
        samples=300, metric="log_loss", candidate_metric=0.4, champion_metric=0.5,
        test=PairedTest(method="t", statistic=3.0, p_value=0.001, mean_difference=0.1,
                        relative_improvement=0.2),
        decision=decision, reason="r", decided_at=START, request_id=rid)


def candidate(version: int, rid: str) -> ModelCandidate:
    return ModelCandidate(event_id=f"c{version}", model=MODEL, version=version,
                          parent_version=version - 1, request_id=rid, registry_uri="file:///r",
                          sha256="0" * 64)


def promotion(version: int, at: datetime) -> ModelPromotion:
    return ModelPromotion(event_id=f"p{version}", model=MODEL, new_champion=version,
                          previous_champion=version - 1, cause="shadow", promoted_at=at)


def covariate_run(s: Scenario, drifted_after: bool) -> Tally:
    """10 windows against v1 (2 drifted after the change), a request, v2 promoted, then
    5 windows against v2 (drifted or not); every event read twice (redelivery)."""
    events: list[object] = []
    for i in range(10):
        events.append(report(i, 1, i >= 8, s))
    rid = "req-1"
    events += [request(rid, s.change_time, at=START), candidate(2, rid), verdict(2, rid),
               promotion(2, START + timedelta(seconds=42))]
    events += [report(10 + i, 2, drifted_after, s) for i in range(5)]
    events.append(EpisodeEvent(event_id="j1", episode_id=rid, model=MODEL, status="joined",
                               detector="online", at=START))
    events.append(ModelPromotion(event_id="p-other", model="cl_other", new_champion=9,
                                 previous_champion=8, cause="shadow", promoted_at=START))
    tally = Tally(MODEL)
    for event in [*events, *events]:
        tally.fold(event)
    return tally


# v2's reference as the harness measures it: post-change rows only
CLEAN_REF = {2: {"reference_snapshot_id": "snap-v2", "reference_rows": 3000,
                 "reference_pre_change_rows": 0, "reference_pre_change_share": 0.0}}


def test_tally_counts_each_event_once_and_only_the_models_own() -> None:
    s = scenario("covariate", change_window=8)
    m = measure(s, covariate_run(s, drifted_after=False), CLEAN_REF)
    assert m["windows"] == 15
    assert m["windows_by_champion"] == {"1": {"windows": 10, "drifted": 2},
                                        "2": {"windows": 5, "drifted": 0}}
    assert m["requests_by_reason"] == {"covariate": 1}
    assert m["episodes"] == 1 and m["joined"] == 1
    [p] = m["promotions"]
    assert p["version"] == 2
    # placed between the last window against v1 (ends at 50 min) and the first against v2
    assert (p["after_min"], p["by_min"]) == (50.0, 55.0)
    assert p["change_to_promotion_min"] == 55.0 - 40.0
    assert p["request_to_promotion_s"] == 42.0
    assert (m["opened_by"], m["requests_after_promotion"]) == ("drift", 0)
    assert p["reference_pre_change_rows"] == 0
    assert judge("covariate", m) == (
        True, "1 promotion; 0 of 5 windows against v2 drifted; its reference has no "
        "pre-change row of 3000; 0 requests after it")


def test_a_rolled_back_promotion_is_reported_and_fails_covariate() -> None:
    s = scenario("covariate", change_window=8)
    tally = covariate_run(s, drifted_after=False)
    assert measure(s, tally, CLEAN_REF)["rollbacks"] == []
    tally.fold(ModelPromotion(event_id="p-back", model=MODEL, new_champion=1,
                              previous_champion=2, cause="rollback",
                              promoted_at=START + timedelta(minutes=1)))
    m = measure(s, tally, CLEAN_REF)
    assert m["rollbacks"] == [{"from": 2, "to": 1}]
    assert len(m["promotions"]) == 1  # the shadow's promotion, still counted once
    assert judge("covariate", m) == (False, "v2 rolled back to v1")


def test_covariate_fails_when_the_promoted_champion_still_sees_drift() -> None:
    s = scenario("covariate", change_window=8)
    passed, why = judge("covariate", measure(s, covariate_run(s, drifted_after=True),
                                             CLEAN_REF))
    assert not passed and why == "5 of 5 windows against v2 drifted"


def test_pending_requests_are_those_without_an_answer() -> None:
    s = scenario("covariate")
    tally = Tally(MODEL)
    tally.fold(request("a", s.change_time))
    tally.fold(request("b", s.change_time))  # raced "a" (attempt 1, episode open): absorbed
    tally.fold(request("c", s.change_time, attempt=2, episode="other-episode"))
    assert tally.pending() == ["a", "c"]
    tally.fold(candidate(2, "a"))
    tally.fold(verdict(2, None, "reject"))  # a verdict of old: answers through the candidate
    tally.fold(EpisodeEvent(event_id="i", episode_id="other-episode", model=MODEL,
                            status="insufficient_data", detector="trainer", at=START,
                            request_id="c"))
    assert tally.pending() == []


# -- targets ----------------------------------------------------------------------------

def quiet(windows: int, requests: int = 0) -> dict[str, object]:
    return {"windows": windows, "requests": requests, "requests_by_reason": {},
            "promotions": []}


def test_quiet_scenarios_need_forty_windows_and_no_request() -> None:
    assert judge("no_drift", quiet(40))[0]
    assert not judge("no_drift", quiet(39))[0]
    assert not judge("recurring", quiet(48, requests=1))[0]


def test_concept_is_judged_against_the_oracle() -> None:
    m = {**quiet(48), "promotions": [{"version": 2}]}
    assert judge("concept", {**m, "losses": {"final": 0.52, "oracle": 0.5}})[0]
    assert not judge("concept", {**m, "losses": {"final": 0.53, "oracle": 0.5}})[0]
    assert not judge("concept", {**quiet(48), "losses": {"final": 0.5, "oracle": 0.5}})[0]


def test_gradual_fails_a_promotion_after_the_ramp_or_a_third_one() -> None:
    during = {"version": 2, "after_settled": False}
    after = {"version": 3, "after_settled": True}
    assert judge("gradual", {**quiet(48), "promotions": [during]})[0]
    assert not judge("gradual", {**quiet(48), "promotions": [during, after]})[0]
    assert not judge("gradual", {**quiet(48), "promotions": [during] * 3})[0]


def test_gradual_promotion_is_after_the_ramp_when_its_request_starts_after_it() -> None:
    s = scenario("gradual", change_window=2, ramp_windows=4)
    tally = Tally(MODEL)
    late = s.settled_time + timedelta(minutes=5)
    for i in range(12):
        tally.fold(report(i, 1 if i < 10 else 2, False, s))
    for event in (request("late", late), candidate(2, "late"), verdict(2, "late"),
                  promotion(2, START)):
        tally.fold(event)
    [p] = measure(s, tally)["promotions"]
    assert p["after_settled"]
    assert judge("gradual", measure(s, tally)) == (False, "1 promotions after the ramp (v2)")


def test_a_request_racing_the_open_episode_is_absorbed_not_a_second_episode() -> None:
    """Bug caught: both detectors alarming in the same second (each opened before it read
    the other's request) counted as two episodes although the services' book folds the
    second into the first and the trainer never trains it."""
    s = scenario("covariate", change_window=8)
    tally = Tally(MODEL)
    racer = RetrainRequest(
        event_id="r-c1", request_id="c1", model=MODEL, reason="concept", base_version=1,
        window_start=s.change_time, window_end=s.change_time, requested_at=START,
        change_point=s.change_time, episode_id="c1")
    for event in (request("r1", s.change_time), racer,
                  EpisodeEvent(event_id="o1", episode_id="r1", model=MODEL, status="opened",
                               detector="drift", at=START),
                  EpisodeEvent(event_id="o2", episode_id="c1", model=MODEL, status="opened",
                               detector="online", at=START)):
        tally.fold(event)
    m = measure(s, tally)
    assert (m["requests"], m["episodes"], m["absorbed"]) == (2, 1, 1)


# -- issue 26: the promoted champion's reference, who opened, what came after ------------

def test_covariate_long_draws_covariates_data_over_a_longer_stream() -> None:
    """Bug caught: a variant keyed on its own name in ``_move``/``has_change`` draws no
    change at all (or another draw), so it measures a stationary stream."""
    short, long = scenario("covariate"), scenario("covariate_long")
    assert long.has_change and long.change_time == short.change_time
    a, b = live_frame(short), live_frame(long)
    np.testing.assert_array_equal(a[list(FEATURES)].to_numpy(), b[list(FEATURES)].to_numpy())
    np.testing.assert_array_equal(a["target"].to_numpy(), b["target"].to_numpy())
    np.testing.assert_array_equal(heldout_frame(short)[list(FEATURES)].to_numpy(),
                                  heldout_frame(long)[list(FEATURES)].to_numpy())
    # at four times the events per window, the promotion came by window 30 in a trial run
    assert SCENARIO_WINDOWS["covariate_long"] >= 40 + 30


def test_reference_figures_count_rows_before_the_change_only() -> None:
    """Bug caught: ``<=`` instead of ``<`` (the first moved event, at the change time
    itself, counted as pre-change) or the share taken of the wrong total."""
    s = scenario("covariate", change_window=8)
    times = live_frame(s)["event_timestamp"]
    change = s.change_window * s.window
    ref = reference_figures("snap", times.iloc[change - 10:change + 30], s)
    assert (ref["reference_rows"], ref["reference_pre_change_rows"]) == (40, 10)
    assert ref["reference_pre_change_share"] == 0.25
    assert "reference_pre_settled_rows" not in ref  # abrupt: nothing more to say
    g = scenario("gradual", change_window=2, ramp_windows=4)
    settled = (g.change_window + g.ramp_windows) * g.window
    ref = reference_figures("snap", live_frame(g)["event_timestamp"].iloc[:settled + 5], g)
    assert ref["reference_pre_change_rows"] == g.change_window * g.window
    assert ref["reference_pre_settled_rows"] == settled


def covariate_measures(**promoted: object) -> dict[str, object]:
    """A clean covariate run's measures; ``promoted`` overrides v2's figures."""
    v2 = {"version": 2, "windows": 14, "drifted_windows": 0, "reference_rows": 3600,
          "reference_pre_change_rows": 0, "reference_pre_change_share": 0.0, **promoted}
    return {**quiet(49), "requests": 1, "promotions": [v2], "rollbacks": [],
            "requests_after_promotion": 0, "requests_after_promotion_by_reason": {}}


def test_a_reference_holding_pre_change_rows_fails_covariate_with_its_size() -> None:
    """Bug caught: a promoted champion compared with a reference that reaches back before
    the change (the replay mixture, or a change point estimated too early) passes because
    its windows happened not to drift."""
    assert judge("covariate", covariate_measures())[0]
    m = covariate_measures(reference_pre_change_rows=472, reference_pre_change_share=0.1311)
    assert judge("covariate", m) == (
        False, "v2's reference holds 472 rows from before the change (13%)")
    unmeasured = covariate_measures(reference_pre_change_rows=None)
    assert judge("covariate", unmeasured) == (False, "v2's reference not measured")


def test_a_request_after_the_promotion_fails_covariate() -> None:
    """Bug caught: a second episode opened against the promoted champion (the loop not
    going quiet) passes because only promotions and windows are judged."""
    m = {**covariate_measures(), "requests_after_promotion": 1,
         "requests_after_promotion_by_reason": {"concept": 1}}
    assert judge("covariate", m) == (False, "1 requests after v2's promotion {'concept': 1}")
    assert judge("covariate_long", {**m, "promotions": [
        {**m["promotions"][0], "windows": 50}]})[0] is False


def test_covariate_long_needs_forty_windows_against_the_promoted_champion() -> None:
    """Bug caught: the long variant judged with covariate's 3-window minimum, so a
    promotion near the stream's end passes without the quiet stretch it exists to show."""
    assert judge("covariate_long", covariate_measures(windows=40))[0]
    assert judge("covariate_long", covariate_measures(windows=39)) == (
        False, "39 windows against v2 (< 40: too few to judge)")
    assert judge("covariate", covariate_measures(windows=39))[0]


def test_requests_after_promotion_are_new_episodes_after_its_wall_clock_only() -> None:
    """Bug caught: counting the promoted episode's own retries or refinements, a request
    that raced its end and was absorbed into it, or requests from before the promotion."""
    s = scenario("covariate", change_window=8)
    tally = Tally(MODEL)
    promoted_at = START + timedelta(seconds=42)
    later = promoted_at + timedelta(seconds=5)
    events: list[object] = [
        request("r1", s.change_time, at=START), candidate(2, "r1"),
        # the online learner alarmed before it read the verdict: absorbed into r1's episode
        RetrainRequest(event_id="r-c1", request_id="c1", model=MODEL, reason="concept",
                       base_version=1, window_start=s.change_time,
                       window_end=s.change_time, requested_at=later,
                       change_point=s.change_time),
        verdict(2, "r1"), promotion(2, promoted_at),
        request("r1-2", s.change_time, at=later, attempt=2, episode="r1"),  # a retry
        RetrainRequest(event_id="r-f", request_id="f1", model=MODEL, reason="concept",
                       base_version=2, window_start=s.change_time, window_end=s.change_time,
                       requested_at=later, change_point=s.change_time, attempt=2,
                       episode_id="r1", refinement=True),
    ]
    for event in events:
        tally.fold(event)
    m = measure(s, tally)
    assert (m["opened_by"], m["requests_after_promotion"]) == ("drift", 0)
    tally.fold(request("r9", s.change_time + timedelta(minutes=60), at=later))
    m = measure(s, tally)
    assert m["requests_after_promotion"] == 1
    assert m["requests_after_promotion_by_reason"] == {"covariate": 1}


def test_opened_by_is_the_first_attempt_one_request_in_topic_order() -> None:
    """Bug caught: taking the most frequent reason, the latest request, or a retry's
    reason instead of the request that opened the first episode."""
    s = scenario("covariate", change_window=8)
    tally = Tally(MODEL)
    assert measure(s, tally)["opened_by"] is None
    assert measure(s, tally)["requests_after_promotion"] is None  # no promotion yet
    tally.fold(RetrainRequest(event_id="r-c", request_id="c", model=MODEL, reason="concept",
                              base_version=1, window_start=s.change_time,
                              window_end=s.change_time, requested_at=START,
                              change_point=s.change_time))
    for rid in ("a", "b"):
        tally.fold(request(rid, s.change_time, attempt=2, episode="c"))
    assert measure(s, tally)["opened_by"] == "online"


def test_a_window_under_min_window_events_is_reported_apart_not_judged() -> None:
    """Bug caught: a window closed by an idle flush with a few dozen events (reported,
    never judged by the drift policy's ``min_window_events``) counted as a drifted
    window against the new champion: a covariate_long run failed on 1 of 51 windows."""
    s = scenario("covariate")
    tally = Tally(MODEL, min_window_events=200)
    tally.fold(report(1, 2, False, s))
    tally.fold(report(2, 2, True, s, n_events=57))
    tally.fold(report(3, 2, True, s, n_events=200))
    assert tally.windows_by_champion() == {2: (2, 1)}
    assert tally.windows_by_champion(small=True) == {2: (1, 1)}
