"""The episode book folds requests, episode events and verdicts into one episode per change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.episodes.book import EpisodeBook, attempt_request_id
from streams.contracts import EpisodeEvent, PairedTest, RetrainRequest, ShadowVerdict

T0 = datetime(2026, 11, 30, 12, tzinfo=UTC)


def request(rid: str, reason: str = "covariate", *, episode: str | None = None,
            attempt: int = 1, change: datetime | None = None, at: datetime = T0,
            model: str = "m") -> RetrainRequest:
    return RetrainRequest(
        event_id=f"e-{rid}", request_id=rid, model=model, reason=reason, base_version=1,
        window_start=T0 - timedelta(minutes=5), window_end=T0, requested_at=at,
        change_point=change, episode_id=episode, attempt=attempt)


def verdict(rid: str, decision: str, candidate: int = 2, at: datetime = T0) -> ShadowVerdict:
    return ShadowVerdict(
        event_id=f"v-{rid}-{decision}", model="m", candidate=candidate, champion=1,
        samples=100, metric="log_loss", candidate_metric=0.5, champion_metric=0.6,
        test=PairedTest(method="t", statistic=1.0, p_value=0.01, mean_difference=0.1,
                        relative_improvement=0.1),
        decision=decision, reason="r", decided_at=at, request_id=rid)


def event(episode: str, status: str, at: datetime = T0, **kw: object) -> EpisodeEvent:
    return EpisodeEvent(event_id=f"x-{episode}-{status}-{at.isoformat()}", episode_id=episode,
                        model="m", status=status, detector="online", at=at, **kw)


def test_a_first_request_opens_an_episode_at_its_change_point() -> None:
    book = EpisodeBook()
    change = T0 - timedelta(minutes=3)
    book.fold(request("r1", change=change))
    episode = book.open_episode("m")
    assert episode is not None and episode.episode_id == "r1"
    assert (episode.change_point, episode.detector, episode.attempts) == (change, "drift", 1)
    # without a change point (one written by hand), the window's start is the change point
    book.fold(request("x", model="other"))
    assert book.open_episode("other").change_point == T0 - timedelta(minutes=5)


def test_a_racing_request_of_the_other_detector_joins_instead_of_opening() -> None:
    book = EpisodeBook()
    book.fold(request("r1"))
    racer = request("c1", "concept")
    book.fold(racer)
    assert book.absorbed(racer).episode_id == "r1"
    assert book.absorbed(request("r1")) is None  # the opener itself is not absorbed
    assert [e.episode_id for e in book.for_model("m")] == ["r1"]


def test_a_rejection_keeps_the_episode_open_and_a_promotion_of_a_retry_closes_it() -> None:
    book = EpisodeBook()
    book.fold(request("r1"))
    book.fold(verdict("r1", "reject"))
    book.fold(verdict("r1", "reject"))  # redelivered: counted once
    episode = book.open_episode("m")
    assert episode is not None and episode.rejected == 1
    retry = attempt_request_id("r1", 2)
    assert retry == attempt_request_id("r1", 2) != attempt_request_id("r1", 3)
    book.fold(request(retry, episode="r1", attempt=2))
    book.fold(verdict(retry, "promote", candidate=3))
    assert book.open_episode("m") is None
    closed = book.episodes["r1"]
    assert (closed.state, closed.promoted_version, closed.attempts) == ("promoted", 3, 2)
    book.fold(request("r9"))  # the next change opens a new episode
    assert book.open_episode("m").episode_id == "r9"


def test_a_verdict_read_before_its_request_is_applied_when_the_request_comes() -> None:
    book = EpisodeBook()
    book.fold(verdict("r1", "promote"))
    book.fold(request("r1"))
    assert book.episodes["r1"].state == "promoted" and book.open_episode("m") is None


def test_joins_failures_and_staleness() -> None:
    book = EpisodeBook(stale_after=timedelta(hours=2))
    book.fold(event("r1", "joined", evidence=["adwin"]))  # before the request: waits
    book.fold(request("r1"))
    assert [e.evidence for e in book.episodes["r1"].joined] == [["adwin"]]
    assert book.open_episode("m", now=T0 + timedelta(hours=1)) is not None
    assert book.open_episode("m", now=T0 + timedelta(hours=2)) is None  # lost
    book.fold(event("r1", "insufficient_data", T0 + timedelta(minutes=1)))
    book.fold(event("r1", "failed", T0 + timedelta(minutes=2), detail="3 attempts"))
    failed = book.episodes["r1"]
    assert (failed.state, failed.insufficient, failed.failure) == ("failed", 1, "3 attempts")
    assert book.open_episode("m") is None


def test_manual_requests_neither_block_nor_join() -> None:
    book = EpisodeBook()
    book.fold(request("manual-1", "manual"))
    assert book.open_episode("m") is None
    book.fold(request("r1"))
    book.fold(request("manual-2", "manual"))
    assert book.open_episode("m").episode_id == "r1"
    assert book.absorbed(request("manual-2", "manual")) is None


def test_a_racing_openers_own_opened_event_is_folded_in_whatever_the_order() -> None:
    """Bug caught: the racer's 'opened' event, read before (or after) its request,
    made a second episode and replaced the open one."""
    for order in ("event first", "request first"):
        book = EpisodeBook()
        book.fold(request("r1"))
        racer = request("c1", "concept", episode="c1")
        opened = event("c1", "opened", reason="concept")
        book.fold_all([opened, racer] if order == "event first" else [racer, opened])
        assert [e.episode_id for e in book.for_model("m")] == ["r1"], order
        assert book.open_episode("m").episode_id == "r1", order
        assert book.absorbed(racer).episode_id == "r1", order


def test_a_refinement_keeps_the_episode_closed_and_its_promotion_is_the_episodes() -> None:
    """Bugs caught: a refinement request reopening its episode (the next alarm would join
    it and ask nothing) or opening a new one; its promotion not recorded."""
    book = EpisodeBook()
    book.fold(request("c1", "concept"))
    book.fold(verdict("c1", "promote", candidate=2))
    refine_id = attempt_request_id("c1", 2)
    refine = RetrainRequest(
        event_id="e-refine", request_id=refine_id, model="m", reason="concept",
        base_version=2, window_start=T0, window_end=T0, requested_at=T0,
        episode_id="c1", attempt=2, refinement=True)
    book.fold(event("c1", "refining", attempt=2, request_id=refine_id))
    book.fold(refine)
    episode = book.episodes["c1"]
    assert (episode.state, episode.attempts, episode.refinements) == ("promoted", 2, [refine_id])
    assert book.open_episode("m") is None
    book.fold(verdict(refine_id, "promote", candidate=3))
    assert episode.promoted_version == 3
    book.fold(request("r2"))  # the next change opens its own episode
    assert book.open_episode("m").episode_id == "r2"
    # a refinement read without its episode (a book started late) opens nothing either
    late = EpisodeBook()
    late.fold(refine)
    assert late.open_episode("m") is None and late.episodes["c1"].state == "promoted"
