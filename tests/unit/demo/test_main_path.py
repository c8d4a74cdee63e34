"""The demo succeeds only on the product's main path (drift-monitor episode, one trace,
quiet windows after the promotion), judged from the events it saw."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.demo.loop import Observed, main_path_problems
from streams.contracts import DriftReport, ModelPromotion, RetrainRequest, WindowBounds

T0 = datetime(2026, 11, 30, tzinfo=UTC)


def _request(rid: str, reason: str, reports: list[str], episode: str | None = None,
             attempt: int = 1) -> RetrainRequest:
    return RetrainRequest(event_id=f"e{rid}", request_id=rid, model="fraud", reason=reason,
                          base_version=1, window_start=T0, window_end=T0,
                          drift_report_ids=reports, requested_at=T0, episode_id=episode,
                          attempt=attempt)


def _report(i: int, version: int, drifted: bool) -> DriftReport:
    end = T0 + timedelta(minutes=i)
    return DriftReport(event_id=f"r{i}", model="fraud", reference_snapshot_id="s",
                       champion_version=version, features=[], drifted_share=0.0,
                       drifted=drifted, created_at=end,
                       window=WindowBounds(start_time=end - timedelta(seconds=30),
                                           end_time=end, n_events=1000))


def _observed(opener: RetrainRequest, after: list[bool], *, retry: bool = False,
              trace: str = "t1") -> Observed:
    observed = Observed()
    observed.requests[opener.request_id] = opener
    observed.request_traces[opener.request_id] = "t1"
    answered = opener.request_id
    if retry:  # the second attempt of the same episode was the one promoted
        second = _request("r2", opener.reason, [], episode=opener.request_id, attempt=2)
        observed.requests["r2"] = second
        answered = "r2"
    observed.candidates[2] = answered
    observed.promoted = ModelPromotion(event_id="p", model="fraud", new_champion=2,
                                       previous_champion=1, cause="shadow", promoted_at=T0)
    observed.promotion_trace = trace
    observed.reports = [_report(0, 1, True), *(_report(i + 1, 2, d) for i, d in
                                                enumerate(after))]
    return observed


def test_the_main_path_passes_also_when_a_retry_was_promoted() -> None:
    covariate = _request("r1", "covariate", ["a", "b"])
    assert main_path_problems(_observed(covariate, [False, False]), 2) == []
    assert main_path_problems(_observed(covariate, [False, False], retry=True), 2) == []


def test_what_is_not_the_main_path_is_named() -> None:
    covariate = _request("r1", "covariate", ["a", "b"])
    concept = _request("c1", "concept", [])
    assert main_path_problems(Observed(), 2) == ["no promotion"]
    assert main_path_problems(_observed(concept, [False, False]), 2) == [
        "the episode was opened by a concept request, not by the drift monitor"]
    assert main_path_problems(_observed(covariate, [False, True]), 2) == [
        "1 of the first 2 windows against the new champion drifted"]
    assert main_path_problems(_observed(covariate, [False]), 2) == [
        "1 of 2 windows against the new champion"]
    assert main_path_problems(_observed(covariate, [False, False], trace="t9"), 2) == [
        "the promotion is not in the trace of the drift decision"]
