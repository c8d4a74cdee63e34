"""The trainer's episode decisions: which requests train, on what window, what follows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from services.episodes.book import EpisodeBook, attempt_request_id
from services.training.attempts import (
    after_attempt,
    after_rejection,
    attempt_change_start,
    enough_rows,
    episode_event,
    fresh_window,
    next_attempt,
    skip_reason,
    wants_refinement,
)
from streams.codec import decode, encode
from streams.contracts import EpisodeEvent, PairedTest, RetrainRequest, ShadowVerdict

T0 = datetime(2026, 11, 30, 12, tzinfo=UTC)
CHANGE = T0 - timedelta(minutes=3)


def request(rid: str, reason: str = "covariate", *, episode: str | None = None,
            attempt: int = 1, at: datetime = T0) -> RetrainRequest:
    return RetrainRequest(
        event_id=f"e-{rid}", request_id=rid, model="m", reason=reason, base_version=1,
        window_start=T0 - timedelta(minutes=5), window_end=T0, requested_at=at,
        change_point=CHANGE, episode_id=episode, attempt=attempt, drift_report_ids=["d1"])


def verdict(rid: str, decision: str) -> ShadowVerdict:
    return ShadowVerdict(
        event_id=f"v-{rid}", model="m", candidate=2, champion=1, samples=100,
        metric="log_loss", candidate_metric=0.6, champion_metric=0.5,
        test=PairedTest(method="t", statistic=1.0, p_value=0.5, mean_difference=-0.1,
                        relative_improvement=-0.1),
        decision=decision, reason="worse", decided_at=T0, request_id=rid)


def test_the_fresh_window_runs_from_the_change_point_past_the_newest_label() -> None:
    newest = T0 + timedelta(minutes=1)
    window = fresh_window(CHANGE, 40, newest)
    assert window is not None
    assert (window.start, window.labelled) == (CHANGE, 40)
    assert window.end > newest and window.end - newest == timedelta(microseconds=1)
    assert fresh_window(CHANGE, 0, None) is None
    assert not enough_rows(0, 0) and enough_rows(1, 0)
    assert enough_rows(500, 500) and not enough_rows(499, 500)


def test_the_next_attempt_keeps_episode_and_change_point_with_a_deterministic_id() -> None:
    first = request("r1")
    retry = next_attempt(first, T0, 120)
    assert retry.request_id == attempt_request_id("r1", 2)
    assert (retry.episode, retry.attempt, retry.change_point) == ("r1", 2, CHANGE)
    assert retry.not_before == T0 + timedelta(seconds=120)
    assert (retry.reason, retry.drift_report_ids, retry.window_start) == (
        "covariate", ["d1"], first.window_start)
    third = next_attempt(retry, T0, 0)
    assert (third.request_id, third.episode, third.attempt) == (
        attempt_request_id("r1", 3), "r1", 3)
    assert decode(encode(retry), RetrainRequest) == retry  # a valid event on the wire
    step = episode_event(first, "retrying", T0, attempt=2, request_id=retry.request_id)
    assert (step.episode_id, step.detector, step.attempt, step.request_id) == (
        "r1", "trainer", 2, retry.request_id)
    assert decode(encode(step), EpisodeEvent) == step


def test_absorbed_closed_and_superseded_requests_are_not_trained_manual_ones_are() -> None:
    book = EpisodeBook()
    first = request("r1")
    book.fold(first)
    assert skip_reason(book, first) is None
    racer = request("c1", "concept")
    book.fold(racer)
    assert "absorbed into the open episode r1" in (skip_reason(book, racer) or "")
    manual = request("m1", "manual")
    book.fold(manual)
    assert skip_reason(book, manual) is None
    # the next attempt was asked for: the first one, redelivered, is superseded
    book.fold(next_attempt(first, T0, 0))
    assert "superseded by attempt 2" in (skip_reason(book, first) or "")
    book.fold(EpisodeEvent(event_id="f", episode_id="r1", model="m", status="failed",
                           detector="trainer", at=T0))
    retry = next_attempt(first, T0, 0)
    assert "episode r1 is already failed" in (skip_reason(book, retry) or "")


def test_a_rejection_asks_for_one_next_attempt_until_the_limit() -> None:
    book = EpisodeBook()
    first = request("r1")
    book.fold(first)
    book.fold(verdict("r1", "reject"))
    assert after_rejection(book, first, 3) == "retry"
    retry = next_attempt(first, T0, 0)
    book.fold(retry)  # asked for (by this worker or another): not again
    assert after_rejection(book, first, 3) is None
    book.fold(verdict(retry.request_id, "reject"))
    assert after_rejection(book, retry, 2) == "failed"  # attempt 2 of 2
    assert after_attempt(1, 1) == "failed" and after_attempt(2, 3) == "retry"
    manual = request("m1", "manual")
    book.fold(manual)
    assert after_rejection(book, manual, 3) is None


def test_a_stale_open_episode_does_not_absorb_the_next_change() -> None:
    """The trainer dead-lettered r1 (no verdict will ever come): two hours later a new
    request must open its own episode, not be absorbed into the lost one forever."""
    book = EpisodeBook(stale_after=timedelta(hours=2))
    book.fold(request("r1"))
    later = request("r2", at=T0 + timedelta(hours=3))
    book.fold(later)
    assert skip_reason(book, later) is None
    assert book.open_episode("m").episode_id == "r2"


def test_a_concept_attempt_replays_the_concept_share_of_the_parents_rows() -> None:
    """Bug caught: a concept episode's fine-tune replaying 30% of rows labelled by the
    relation that changed (its candidate lands between the old and the new concept)."""
    from services.model_settings import ModelSettings
    from services.training.attempts import attempt_training_config

    settings = ModelSettings.model_validate(
        {"training": {"data": {"replay_ratio": 0.3}}, "retrain": {"concept_replay_ratio": 0.1}})
    def ratio(reason: str) -> float:
        req = RetrainRequest(event_id="e", request_id="r", model="m", reason=reason,
                             base_version=1, window_start=T0, window_end=T0, requested_at=T0)
        return attempt_training_config(req, settings).data.replay_ratio

    assert (ratio("covariate"), ratio("manual"), ratio("concept")) == (0.3, 0.3, 0.1)
    assert ModelSettings().retrain.concept_replay_ratio == 0.0
    # a concept episode the drift monitor joined (the features moved too) replays as usual
    book = EpisodeBook()
    req = RetrainRequest(event_id="e", request_id="r", model="m", reason="concept",
                         base_version=1, window_start=T0, window_end=T0, requested_at=T0)
    book.fold(req)
    assert attempt_training_config(req, settings, book).data.replay_ratio == 0.1
    book.fold(EpisodeEvent(event_id="j", episode_id="r", model="m", status="joined",
                           detector="drift", at=T0))
    assert attempt_training_config(req, settings, book).data.replay_ratio == 0.3


def test_a_concept_promotion_from_few_rows_asks_for_one_refinement() -> None:
    """Bugs caught: no refinement after a data-starved concept promotion; a refinement
    for a covariate episode (whose replay still holds), for a candidate that had enough
    rows, of a refinement, or twice; a refinement skipped as "already promoted", or
    retried after its rejection."""
    book = EpisodeBook()
    first = request("c1", "concept")
    book.fold(first)
    assert not wants_refinement(book, first, 400, 5000)  # not promoted yet ... (still open)
    book.fold(verdict("c1", "promote"))
    assert book.episodes["c1"].state == "promoted"
    assert wants_refinement(book, first, 400, 5000)
    assert not wants_refinement(book, first, 5000, 5000)  # enough rows
    assert not wants_refinement(book, first, 400, 0)  # turned off
    assert not wants_refinement(book, first, None, 5000)  # lineage without the count
    covariate = EpisodeBook()
    drift = request("d1")
    covariate.fold(drift)
    covariate.fold(verdict("d1", "promote"))
    assert not wants_refinement(covariate, drift, 400, 5000)
    moved = EpisodeBook()  # a concept detector opened it, the drift monitor joined
    concept = request("c9", "concept")
    moved.fold(concept)
    moved.fold(EpisodeEvent(event_id="j9", episode_id="c9", model="m", status="joined",
                            detector="drift", at=T0))
    moved.fold(verdict("c9", "promote"))
    assert not wants_refinement(moved, concept, 400, 5000)

    refine = next_attempt(first, T0, 60, refinement=True, base_version=2)
    assert refine.refinement and refine.attempt == 2 and refine.base_version == 2
    assert refine.request_id == attempt_request_id("c1", 2)
    assert refine.not_before == T0 + timedelta(seconds=60)
    assert decode(encode(refine), RetrainRequest) == refine
    book.fold(refine)
    episode = book.episodes["c1"]
    assert episode.state == "promoted" and episode.refinements == [refine.request_id]
    assert book.open_episode("m") is None  # a refinement reopens nothing
    assert skip_reason(book, refine) is None  # trained although the episode is promoted
    assert "already promoted" in (skip_reason(book, first) or "")
    assert not wants_refinement(book, first, 400, 5000)  # asked for once
    assert not wants_refinement(book, refine, 400, 5000)  # a refinement is not refined
    assert after_rejection(book, refine, 3) is None  # its rejection ends nothing
    book.fold(verdict(refine.request_id, "promote"))
    assert book.episodes["c1"].promoted_version == 2  # the verdict helper's candidate


def test_a_refinement_of_an_episode_that_is_not_promoted_is_not_trained() -> None:
    book = EpisodeBook()
    first = request("c1", "concept")
    book.fold(first)
    book.fold(EpisodeEvent(event_id="f", episode_id="c1", model="m", status="failed",
                           detector="trainer", at=T0))
    refine = next_attempt(first, T0, 0, refinement=True)
    book.fold(refine)
    assert "which is failed" in (skip_reason(book, refine) or "")


def test_an_attempt_starts_at_the_latest_change_point_its_episode_knows() -> None:
    """Bug caught: the opener's early change point (a chance-drifted window just before
    the change starting the drift monitor's streak) used although a joined alarm or an
    absorbed request placed the change later: pre-change rows trained as the new normal
    and kept in the drift reference (12 of 20 windows drifted against such a champion)."""
    book = EpisodeBook()
    first = request("d1")  # change point CHANGE
    assert attempt_change_start(book, first) == CHANGE  # not folded yet: its own
    book.fold(first)
    assert attempt_change_start(book, first) == CHANGE
    racer = RetrainRequest(
        event_id="e-c1", request_id="c1", model="m", reason="concept", base_version=1,
        window_start=T0, window_end=T0, requested_at=T0,
        change_point=CHANGE + timedelta(seconds=30))
    book.fold(racer)  # absorbed: its estimate counts
    assert attempt_change_start(book, first) == CHANGE + timedelta(seconds=30)
    book.fold(EpisodeEvent(event_id="j1", episode_id="d1", model="m", status="joined",
                           detector="online", change_point=CHANGE + timedelta(seconds=50),
                           at=T0))
    book.fold(EpisodeEvent(event_id="j2", episode_id="d1", model="m", status="joined",
                           detector="online", change_point=CHANGE - timedelta(minutes=9),
                           at=T0))  # an earlier estimate changes nothing
    assert attempt_change_start(book, first) == CHANGE + timedelta(seconds=50)
    retry = next_attempt(first, T0, 0)
    book.fold(retry)
    assert attempt_change_start(book, retry) == CHANGE + timedelta(seconds=50)
    manual = request("m1", "manual")
    book.fold(manual)
    assert attempt_change_start(book, manual) == CHANGE


def test_a_concept_episode_reclassified_by_its_inputs_trains_as_a_covariate_one() -> None:
    """Bug caught: a covariate shift whose first alarm came from the online learner kept
    its concept reason: no replay, no settle check, a concept refinement, and a concept
    reason in the candidate's lineage (issue: the loop settles whichever detector speaks
    first)."""
    from services.training.attempts import concept_only, episode_reason

    book = EpisodeBook()
    first = request("c1", "concept")
    book.fold(first)
    assert concept_only(book, first) and episode_reason(book, first) == "concept"
    book.fold(EpisodeEvent(event_id="rc", episode_id="c1", model="m", status="reclassified",
                           detector="trainer", reason="covariate", at=T0,
                           evidence=["moved: x0, x1"]))
    assert book.episodes["c1"].reason == "covariate"
    assert not concept_only(book, first) and episode_reason(book, first) == "covariate"
    book.fold(verdict("c1", "promote"))
    assert not wants_refinement(book, first, 400, 5000)  # covariate episodes are not refined
    assert episode_reason(book, request("m1", "manual")) == "manual"


def test_a_rejection_against_a_champion_an_earlier_episode_promoted_ends_adapted() -> None:
    """Bug caught: after the first episode promoted v2, a second episode's candidate lost
    to v2 and the trainer asked again for the same change (a third training and another
    30,000-pair shadow on nothing). Against v1, which no episode promoted, a rejection
    still asks for the next attempt (it has more post-change data)."""
    book = EpisodeBook()
    first = request("r1")
    book.fold(first)
    book.fold(verdict("r1", "promote"))  # candidate 2 promoted: episode r1 adapted v2
    second = request("r2", at=T0 + timedelta(minutes=30))
    book.fold(second)
    assert book.open_episode("m").episode_id == "r2"
    lost_to_v2 = verdict("r2", "reject")
    book.fold(lost_to_v2)
    assert after_rejection(book, second, 3, champion=2) == "adapted"
    assert after_rejection(book, second, 3, champion=1) == "retry"  # v1: no episode's
    assert after_rejection(book, second, 3) == "retry"  # champion unknown
    book.fold(EpisodeEvent(event_id="ad", episode_id="r2", model="m", status="adapted",
                           detector="trainer", at=T0, detail="v3 no better than v2"))
    episode = book.episodes["r2"]
    assert (episode.state, episode.failure) == ("adapted", "v3 no better than v2")
    assert book.open_episode("m") is None
    assert after_rejection(book, second, 3, champion=2) is None  # closed: nothing more


def test_whose_error_a_concept_alarm_watched_is_kept_per_episode() -> None:
    """Bugs caught: the champion watch's evidence lost when it joins (or retries) an
    episode the learner's alarm opened, so the trainer second-guesses it; a learner's
    alarm taken for the champion's."""
    from services.training.attempts import champion_alarmed

    book = EpisodeBook()
    opener = msgspec.structs.replace(request("c1", "concept"), watched="learner")
    book.fold(opener)
    assert not champion_alarmed(book, opener)
    retry = next_attempt(opener, T0, 0)
    assert retry.watched == "learner"
    book.fold(EpisodeEvent(event_id="j", episode_id="c1", model="m", status="joined",
                           detector="online", watched="champion", at=T0))
    assert champion_alarmed(book, opener) and book.episodes["c1"].watched == {
        "learner", "champion"}
