"""The episode book: a pure fold of the control topics into one episode per change.

A change of a model's data opens an *episode* with the first retrain request that a
detector sends for it (``retrain.requests``, attempt 1). Until the episode closes:

* another alarm (the other detector, a replica that raced the first) *joins* it
  (``retrain.episodes`` ``joined``, or a second attempt-1 request folded in as one);
* a rejected candidate (``models.verdicts`` ``reject``) or an attempt without enough
  post-change data (``insufficient_data``) leaves it open for the next attempt.

Its reason is what the evidence says: a concept detector's episode whose inputs the
trainer found moved is ``reclassified`` as covariate. It closes with the promotion of one
of its candidates (a ``promote`` verdict naming one of its requests), as ``adapted`` (a
candidate no better than a champion an earlier episode adapted) or as ``failed``
(``retrain.episodes``). A promoted episode may still get
one *refinement* attempt (``RetrainRequest.refinement``): it stays closed (no alarm joins
it, nothing waits for it) and a promotion of the refinement's candidate becomes its
``promoted_version``. Manual requests are episodes of
their own that never block or absorb the detectors'.

Every service folds the same topics in the same per-model order (one partition per
model key), so they agree on which episode is open. Events of different topics may be
read out of order (a verdict before its request): what refers to a request not seen yet
waits for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from streams.contracts import EpisodeEvent, RetrainRequest, ShadowVerdict

State = Literal["open", "promoted", "adapted", "failed"]
DETECTOR_OF_REASON = {"covariate": "drift", "concept": "online", "manual": "manual"}


def attempt_request_id(episode_id: str, attempt: int) -> str:
    """The request id of ``attempt`` (2, 3, ...) of an episode: every service that decides
    to retry derives the same id, so a retry sent twice trains once."""
    digest = hashlib.sha256(f"retrain-attempt\x1f{episode_id}\x1f{attempt}".encode())
    return digest.hexdigest()[:32]


@dataclass
class Episode:
    """One change of one model's data, from its first request to its end."""

    episode_id: str
    model: str
    reason: str  # the opener's, until the evidence says otherwise (``reclassified``)
    detector: str  # who opened it
    change_point: datetime
    opened_at: datetime  # the first request's ``requested_at`` (wall clock)
    last_activity: datetime  # wall clock of the latest event that touched it
    attempts: int = 1  # the highest attempt requested
    request_ids: list[str] = field(default_factory=list)
    rejected: int = 0
    insufficient: int = 0
    joined: list[EpisodeEvent] = field(default_factory=list)
    absorbed_requests: list[str] = field(default_factory=list)  # raced attempt-1 requests
    state: State = "open"
    closed_at: datetime | None = None
    promoted_version: int | None = None
    failure: str = ""  # why it ended without a promotion (failed, adapted)
    refinements: list[str] = field(default_factory=list)  # refinement request ids
    # change points the other detectors estimated (joined alarms, absorbed requests)
    other_change_points: list[datetime] = field(default_factory=list)
    # whose error the concept alarms behind it watched (``learner``, ``champion``)
    watched: set[str] = field(default_factory=set)

    @property
    def latest_change_point(self) -> datetime:
        """The latest of every detector's estimate of where the change began: the rows
        after it are post-change by every detector's account."""
        return max([self.change_point, *self.other_change_points])

    @property
    def earliest_change_point(self) -> datetime:
        """The earliest of every detector's estimate: where a search for the change starts."""
        return min([self.change_point, *self.other_change_points])

    @property
    def is_open(self) -> bool:
        """Still waiting for a promotion (or its last attempt)."""
        return self.state == "open"

    def touch(self, at: datetime) -> None:
        """Record activity at wall time ``at`` (for the staleness timeout)."""
        if at > self.last_activity:
            self.last_activity = at


class EpisodeBook:
    """Episodes per model, folded from requests, episode events and verdicts."""

    def __init__(self, stale_after: timedelta = timedelta(hours=2)) -> None:
        self.stale_after = stale_after
        self.episodes: dict[str, Episode] = {}
        self._open: dict[str, str] = {}  # model -> open detector episode id
        self._of_request: dict[str, str] = {}  # request id -> episode id
        self._waiting: dict[str, list[Any]] = {}  # request/episode id -> events seen early
        self._verdicts: set[str] = set()  # verdict event ids folded (redelivered ones)

    # -- queries ----------------------------------------------------------------------

    def open_episode(self, model: str, now: datetime | None = None) -> Episode | None:
        """The model's open detector episode; with ``now`` (wall clock), one without any
        activity for ``stale_after`` counts as lost (its request or verdict never came)."""
        episode_id = self._open.get(model)
        if episode_id is None:
            return None
        episode = self.episodes[episode_id]
        if now is not None and now - episode.last_activity >= self.stale_after:
            return None
        return episode

    def of_request(self, request_id: str) -> Episode | None:
        """The episode a request is an attempt of, or that absorbed it."""
        episode_id = self._of_request.get(request_id)
        return self.episodes.get(episode_id) if episode_id is not None else None

    def absorbed(self, request: RetrainRequest) -> Episode | None:
        """The other episode that ``request`` joined instead of opening its own (it raced
        the first request of an open episode): such a request is not trained."""
        episode = self.of_request(request.request_id)
        if episode is None or request.request_id not in episode.absorbed_requests:
            return None
        return episode

    def for_model(self, model: str) -> list[Episode]:
        """The model's episodes, oldest first."""
        return [e for e in self.episodes.values() if e.model == model]

    # -- folding ----------------------------------------------------------------------

    def fold_all(self, events: Iterable[Any]) -> None:
        """Fold events in order."""
        for event in events:
            self.fold(event)

    def fold(self, event: Any) -> None:
        """Fold one control event; other events are ignored."""
        if isinstance(event, RetrainRequest):
            self._request(event)
        elif isinstance(event, EpisodeEvent):
            self._episode_event(event)
        elif isinstance(event, ShadowVerdict):
            self._verdict(event)

    def _request(self, request: RetrainRequest) -> None:
        if request.request_id in self._of_request:
            return  # a duplicate
        episode = self.episodes.get(request.episode)
        if request.refinement:  # of a promoted episode: it never opens one
            if episode is None:
                episode = self._new(request.episode, request.model, request.reason,
                                    request.change_start, request.requested_at)
                self._close(episode, "promoted", request.requested_at)
            episode.refinements.append(request.request_id)
        elif episode is None:
            open_one = self._open.get(request.model)
            if open_one is not None and (request.requested_at
                                         - self.episodes[open_one].last_activity
                                         >= self.stale_after):
                open_one = None  # lost (see open_episode): a new change opens its own
            if request.reason != "manual" and open_one is not None and request.attempt == 1:
                episode = self.episodes[open_one]  # raced the open episode: joins it
                episode.absorbed_requests.append(request.request_id)
                episode.other_change_points.append(request.change_start)
            else:
                episode = self._new(request.episode, request.model, request.reason,
                                    request.change_start, request.requested_at)
        episode.attempts = max(episode.attempts, request.attempt)
        if request.watched is not None:
            episode.watched.add(request.watched)
        if request.request_id not in episode.absorbed_requests:
            episode.request_ids.append(request.request_id)
        episode.touch(request.requested_at)
        self._of_request[request.request_id] = episode.episode_id
        for early in self._waiting.pop(request.request_id, []):
            self.fold(early)
        for early in self._waiting.pop(request.episode, []):
            self.fold(early)

    def _new(self, episode_id: str, model: str, reason: str, change_point: datetime,
             at: datetime) -> Episode:
        episode = Episode(
            episode_id=episode_id, model=model, reason=reason,
            detector=DETECTOR_OF_REASON.get(reason, reason), change_point=change_point,
            opened_at=at, last_activity=at,
        )
        self.episodes[episode_id] = episode
        if reason != "manual":
            self._open[model] = episode_id
        return episode

    def _episode_event(self, event: EpisodeEvent) -> None:
        episode = self.episodes.get(event.episode_id)
        if episode is None and event.episode_id in self._of_request:
            # the opener raced another open episode and was folded into it: so are its steps
            episode = self.episodes[self._of_request[event.episode_id]]
        if episode is None:
            if event.status != "opened":
                self._waiting.setdefault(event.episode_id, []).append(event)
                return
            open_one = self._open.get(event.model)
            if open_one is not None and event.reason != "manual":
                # read before its own request, which raced the open episode: absorbed
                episode = self.episodes[open_one]
                episode.absorbed_requests.append(event.episode_id)
                self._of_request[event.episode_id] = open_one
            else:
                episode = self._new(event.episode_id, event.model,
                                    event.reason or "covariate",
                                    event.change_point or event.at, event.at)
        episode.touch(event.at)
        if event.watched is not None and event.status in ("opened", "joined"):
            episode.watched.add(event.watched)
        if event.status == "joined":
            if all(e.event_id != event.event_id for e in episode.joined):
                episode.joined.append(event)
                if event.change_point is not None:
                    episode.other_change_points.append(event.change_point)
        elif event.status == "reclassified" and event.reason is not None:
            episode.reason = event.reason
        elif event.status == "insufficient_data":
            episode.insufficient += 1
        elif event.status in ("retrying", "refining"):
            episode.attempts = max(episode.attempts, event.attempt)
        elif event.status in ("failed", "adapted") and episode.is_open:
            self._close(episode, event.status, event.at)
            episode.failure = event.detail

    def _verdict(self, verdict: ShadowVerdict) -> None:
        if verdict.request_id is None or verdict.event_id in self._verdicts:
            return
        episode = self.of_request(verdict.request_id)
        if episode is None:
            self._waiting.setdefault(verdict.request_id, []).append(verdict)
            return
        self._verdicts.add(verdict.event_id)
        episode.touch(verdict.decided_at)
        if verdict.decision == "promote":
            if episode.state != "promoted":
                self._close(episode, "promoted", verdict.decided_at)
            episode.promoted_version = verdict.candidate  # a refinement's, when later
        elif verdict.decision == "reject":
            episode.rejected += 1

    def _close(self, episode: Episode, state: State, at: datetime) -> None:
        episode.state = state
        episode.closed_at = at
        if self._open.get(episode.model) == episode.episode_id:
            del self._open[episode.model]
