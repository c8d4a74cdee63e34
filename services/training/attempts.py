"""The trainer's episode decisions, pure: whether to train a request, on which window,
and what follows a data-starved or rejected attempt.

A detector's request is one attempt of an episode (``services.episodes.book``). The
trainer does not train an attempt that the book says is not to be trained (absorbed
into another open episode, of a closed episode, superseded by a later attempt); it
trains on the rows after the change point up to the newest labelled one; and an
attempt that ends without a promotion -- too few labelled rows after the change, or a
rejected candidate -- is followed by the next attempt (a request with a deterministic
id, so two workers deciding it train once) until ``retrain.episode_attempts``, then the
episode fails. A concept episode whose promoted candidate learned from few post-change
rows gets one refinement attempt (:func:`wants_refinement`). Manual requests stand
outside episodes: always trained, never retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from services.episodes.book import Episode, EpisodeBook, attempt_request_id
from streams.contracts import (
    EpisodeEvent,
    EpisodeStatus,
    Reason,
    RetrainRequest,
    new_event_id,
)

Next = Literal["retry", "failed", "adapted"]
ONE_TICK = timedelta(microseconds=1)  # snapshots store event times in microseconds


@dataclass(frozen=True, slots=True)
class FreshWindow:
    """The event-time range ``[start, end)`` an attempt trains on, and its labelled rows."""

    start: datetime
    end: datetime
    labelled: int


def fresh_window(change_start: datetime, labelled: int,
                 newest: datetime | None) -> FreshWindow | None:
    """From the change point to just past the newest labelled event (``None``: none)."""
    if labelled <= 0 or newest is None:
        return None
    return FreshWindow(change_start, max(newest + ONE_TICK, change_start + ONE_TICK), labelled)


def attempt_change_start(book: EpisodeBook, request: RetrainRequest) -> datetime:
    """Where an attempt's fresh data begins: the latest change point of its episode that
    the book knows when the attempt starts (the opener's, the joined alarms', the
    absorbed requests'), never earlier than the request's own. Each detector's estimate
    can be early (a chance-drifted window just before the change starting the drift
    monitor's streak; measured 10 minutes early on the closed-loop benchmark), and rows
    from before the change would be learned as the new normal and become part of the
    candidate's drift reference; the latest estimate keeps them out, at the price of a
    few post-change rows. Manual requests: their own."""
    if request.reason == "manual":
        return request.change_start
    episode = book.of_request(request.request_id)
    if episode is None:
        return request.change_start
    return max(request.change_start, episode.latest_change_point)


def enough_rows(labelled: int, min_fresh_rows: int) -> bool:
    """An attempt trains with at least ``min_fresh_rows`` labelled rows (and one at least)."""
    return labelled >= max(min_fresh_rows, 1)


def skip_reason(book: EpisodeBook, request: RetrainRequest) -> str | None:
    """Why ``request`` is not to be trained, or ``None`` (manual requests: always trained)."""
    if request.reason == "manual":
        return None
    absorbed = book.absorbed(request)
    if absorbed is not None:
        return f"absorbed into the open episode {absorbed.episode_id}"
    episode = book.of_request(request.request_id)
    if episode is None:
        return None
    if request.refinement:
        if episode.state != "promoted":
            return f"a refinement of episode {episode.episode_id}, which is {episode.state}"
        if episode.attempts > request.attempt:
            return (f"refinement {request.attempt} of episode {episode.episode_id} was "
                    f"superseded by attempt {episode.attempts}")
        return None
    if not episode.is_open:
        return f"episode {episode.episode_id} is already {episode.state}"
    if episode.attempts > request.attempt:
        return (f"attempt {request.attempt} of episode {episode.episode_id} was superseded "
                f"by attempt {episode.attempts}")
    return None


def after_attempt(attempt: int, episode_attempts: int) -> Next:
    """What follows an attempt that did not adapt the model: another one, or failure."""
    return "retry" if attempt < episode_attempts else "failed"


def after_rejection(book: EpisodeBook, request: RetrainRequest, episode_attempts: int,
                    champion: int | None = None) -> Next | None:
    """What a ``reject`` verdict on ``request``'s candidate calls for; ``None``: nothing
    (a manual request, an episode already closed, or its next attempt already asked for).

    ``adapted`` when the champion it lost to (``champion``) is the promoted version of an
    earlier episode of the model: a candidate trained on the data after this change is
    no better than a champion already adapted, so another attempt at the same change
    would only spend a training and a shadow (measured before this rule: a third request
    for one change after a rejection, then a 30,000-pair shadow on nothing)."""
    if request.reason == "manual" or request.refinement:
        return None
    episode = book.of_request(request.request_id)
    if episode is None or not episode.is_open or episode.attempts > request.attempt:
        return None
    if book.of_request(attempt_request_id(episode.episode_id, request.attempt + 1)):
        return None
    if adapted_by(book, request.model, champion, episode.episode_id) is not None:
        return "adapted"
    return after_attempt(request.attempt, episode_attempts)


def adapted_by(book: EpisodeBook, model: str, version: int | None,
               other_than: str) -> Episode | None:
    """The earlier episode of ``model`` (not ``other_than``) that promoted ``version``."""
    if version is None:
        return None
    for episode in book.for_model(model):
        if (episode.episode_id != other_than and episode.state == "promoted"
                and episode.promoted_version == version):
            return episode
    return None


def concept_only(book: EpisodeBook, request: RetrainRequest) -> bool:
    """Whether ``request``'s episode is a change of the labels' relation alone: a
    ``concept`` episode that the drift monitor has not joined and the trainer has not
    ``reclassified`` (its inputs moved against the parent's reference). When the features
    moved too (a covariate shift raises the champion's error as well, so a concept
    detector may open its episode first), the parent's labels still hold where its data
    was: that episode replays, is settled and located, and is not refined like a concept
    one."""
    if request.reason == "manual":
        return False
    episode = book.of_request(request.request_id)
    if episode is None:
        return request.reason == "concept"
    return episode.reason == "concept" and not any(e.detector == "drift"
                                                    for e in episode.joined)


def champion_alarmed(book: EpisodeBook, request: RetrainRequest) -> bool:
    """Whether a concept alarm behind ``request``'s episode watched the champion's own
    error (the champion watch): evidence about the champion itself, which an alarm on
    the online learner's error is not."""
    episode = book.of_request(request.request_id)
    watched = episode.watched if episode is not None else set()
    return request.watched == "champion" or "champion" in watched


def episode_reason(book: EpisodeBook, request: RetrainRequest) -> Reason:
    """What the evidence says ``request``'s episode is (its opener's reason until it was
    reclassified); manual requests: manual."""
    if request.reason == "manual":
        return "manual"
    return "concept" if concept_only(book, request) else "covariate"


def wants_refinement(book: EpisodeBook, request: RetrainRequest, fresh_rows: int | None,
                     refine_rows: int) -> bool:
    """Whether the promotion of ``request``'s candidate, trained on ``fresh_rows``
    post-change rows, calls for a refinement attempt: a concept episode's (no replay:
    the post-change rows are all it learned the new relation from) with fewer than
    ``refine_rows`` of them, once per episode (not a refinement's own promotion, nor one
    already requested)."""
    if not concept_only(book, request) or request.refinement or refine_rows <= 0:
        return False
    if fresh_rows is None or fresh_rows >= refine_rows:
        return False
    episode = book.of_request(request.request_id)
    if (episode is None or episode.state != "promoted" or episode.refinements
            or episode.attempts > request.attempt):
        return False
    return book.of_request(attempt_request_id(episode.episode_id, request.attempt + 1)) is None


def next_attempt(request: RetrainRequest, now: datetime, retry_after_s: float, *,
                 refinement: bool = False, base_version: int | None = None) -> RetrainRequest:
    """The request of the attempt after ``request``: same episode and change point, the
    deterministic id of its attempt number, not to start before ``retry_after_s``
    (``refinement``: of a promoted episode, based on its promoted candidate)."""
    attempt = request.attempt + 1
    return RetrainRequest(
        event_id=new_event_id(), watched=request.watched,
        request_id=attempt_request_id(request.episode, attempt),
        model=request.model, reason=request.reason,
        base_version=request.base_version if base_version is None else base_version,
        window_start=request.window_start, window_end=request.window_end,
        drift_report_ids=list(request.drift_report_ids), requested_at=now,
        change_point=request.change_start, episode_id=request.episode, attempt=attempt,
        not_before=now + timedelta(seconds=retry_after_s), refinement=refinement,
    )


def episode_event(request: RetrainRequest, status: EpisodeStatus, at: datetime, *,
                  detail: str = "", attempt: int | None = None,
                  request_id: str | None = None, evidence: list[str] | None = None,
                  reason: Reason | None = None) -> EpisodeEvent:
    """A trainer's step of ``request``'s episode (by default about ``request`` itself)."""
    return EpisodeEvent(
        event_id=new_event_id(), episode_id=request.episode, model=request.model,
        status=status, attempt=attempt or request.attempt,
        request_id=request_id or request.request_id, detector="trainer",
        reason=reason or request.reason, change_point=request.change_start, detail=detail,
        evidence=list(evidence or ()), at=at,
    )


def attempt_training_config(request: RetrainRequest, model_settings: Any,
                            book: EpisodeBook | None = None) -> Any:
    """The model's training config for this attempt: a concept-only episode's fine-tune
    (:func:`concept_only`; without a book, any ``concept`` request's) replays
    ``retrain.concept_replay_ratio`` of the parent's rows (their labels follow the
    relation that changed) instead of ``training.data.replay_ratio``."""
    config = model_settings.training
    concept = (request.reason == "concept" if book is None
               else concept_only(book, request))
    if not concept:
        return config
    return config.with_overrides(
        {"data": {"replay_ratio": model_settings.retrain.concept_replay_ratio}})
