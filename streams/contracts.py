"""Typed, versioned event contracts for every driftloop topic.

Each event is a frozen msgspec struct tagged by its ``schema`` field
(``"<name>/<version>"``), so a decoder knows exactly which version it reads and
rejects any other. Unknown fields are tolerated (forward compatible within a
version); missing fields, wrong types and unknown schema versions are not.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
ModelName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")]
Version = Annotated[int, msgspec.Meta(ge=1)]
FeatureValue = float | str | None
Reason = Literal["covariate", "concept", "manual"]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
Watched = Literal["learner", "champion"]
"""Whose error a concept detector watched: the online learner's own, or the champion's."""


def new_event_id() -> str:
    """A fresh random event id (UUID4 hex)."""
    return uuid.uuid4().hex


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="schema"):
    """Base of every event: carries the ``schema`` tag and an ``event_id``."""

    event_id: NonEmptyStr


class FeatureEvent(Event, tag="feature_event/1", kw_only=True):
    """One scoring request's features, keyed by entity id on ``features``."""

    model: ModelName
    entity_id: NonEmptyStr
    event_time: Timestamp
    features: dict[str, FeatureValue]


class LabelEvent(Event, tag="label_event/1", kw_only=True):
    """The observed outcome of the feature event with the same ``event_id``."""

    model: ModelName
    label: float
    event_time: Timestamp


class PartitionRange(msgspec.Struct, frozen=True, kw_only=True):
    """Offsets covered by a window on one partition (inclusive)."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int


class WindowBounds(msgspec.Struct, frozen=True, kw_only=True):
    """Where a drift window starts and ends, in event time and in offsets."""

    start_time: Timestamp
    end_time: Timestamp
    n_events: int
    offsets: list[PartitionRange] = []


SUMMARY_QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
"""The quantile levels a :class:`Summary` carries."""


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    """Summary statistics of one feature's values (reference or window), for reports.

    Numeric features: mean, standard deviation and quantiles (at ``levels``) over the
    present finite values; ``None`` where there is none. Categorical: missing share only.
    """

    mean: float | None = None
    std: float | None = None
    levels: list[float] = []
    quantiles: list[float] = []
    missing_share: float | None = None


class FeatureDrift(msgspec.Struct, frozen=True, kw_only=True):
    """Drift statistics of one feature in one window."""

    name: str
    kind: Literal["numeric", "categorical"]
    psi: float
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    # Categorical features: total variation distance and chi-square homogeneity p-value.
    tvd: float | None = None
    chi2_pvalue: float | None = None
    missing_share: float
    drifted: bool
    critical: bool = False
    # Values of this feature in the window that were not finite numbers (counted as
    # missing in the statistics).
    invalid: int = 0
    # Histogram for dashboards and reports: bin labels (numeric ranges or categories,
    # with "missing" and "other"), and the reference and window shares per bin.
    bins: list[str] = []
    reference_shares: list[float] = []
    window_shares: list[float] = []
    # Reference and window summary statistics: none where the report was built without
    # them (``driftloop drift check`` over files builds none).
    reference_summary: Summary | None = None
    window_summary: Summary | None = None


class DriftReport(Event, tag="drift_report/1", kw_only=True):
    """One closed window compared with the champion's training snapshot."""

    model: ModelName
    window: WindowBounds
    reference_snapshot_id: NonEmptyStr
    champion_version: Version | None = None
    features: list[FeatureDrift]
    drifted_share: float
    drifted: bool
    created_at: Timestamp
    # The champion's own predictions in this window against its predictions on its
    # reference snapshot (``drift.prediction``); ``name`` says what was compared:
    # ``prediction`` (binary P(1), regression value) or ``predicted_class``.
    prediction: FeatureDrift | None = None
    # With a declared cycle (``drift.seasonality``): the phase range of the reference the
    # window was compared with, e.g. ``02:00:00-04:00:00 of 1d (250 reference rows)``.
    # Absent (not encoded at all) without one, so those reports stay byte-for-byte as
    # they were.
    reference_phase: str | msgspec.UnsetType = msgspec.UNSET


class RetrainRequest(Event, tag="retrain_request/1", kw_only=True):
    """Ask the training workers for a new candidate; ``request_id`` is idempotent.

    One request is one attempt of an *episode* (one change of the model's data): the
    first attempt's ``request_id`` names the episode, retries carry it in
    ``episode_id`` with a higher ``attempt``. ``change_point`` is the detector's estimate
    of when the change began (the start of the drift monitor's first alarming window,
    the online learner's detector cut point): the trainer's fresh data is what came after
    it. A request written by hand (a ``manual`` retrain from an operator's tool) may leave
    them out: it is attempt 1 of its own episode, with the window's start as the change
    point. ``not_before`` (a retry's)
    asks the trainer not to start it earlier. ``refinement``: the next attempt of an
    episode that already promoted a candidate trained on few post-change rows (a concept
    episode's); it trains on everything after the change point that has arrived since,
    from the promoted champion, and its rejection ends nothing. ``watched`` (a concept
    request's): whose error its detector watched, the online learner's own or the
    champion's (the trainer checks a learner's alarm against the champion's loss).
    """

    request_id: NonEmptyStr
    model: ModelName
    reason: Reason
    base_version: Version | None
    window_start: Timestamp
    window_end: Timestamp
    drift_report_ids: list[str] = []
    requested_at: Timestamp
    change_point: Timestamp | None = None
    episode_id: NonEmptyStr | None = None
    attempt: Annotated[int, msgspec.Meta(ge=1)] = 1
    not_before: Timestamp | None = None
    refinement: bool = False
    watched: Watched | None = None

    @property
    def episode(self) -> str:
        """The episode this request is an attempt of."""
        return self.episode_id or self.request_id

    @property
    def change_start(self) -> datetime:
        """Where the fresh (post-change) data begins."""
        return self.change_point or self.window_start


EpisodeStatus = Literal["opened", "joined", "reclassified", "insufficient_data", "retrying",
                        "refining", "adapted", "failed"]


class EpisodeEvent(Event, tag="retrain_episode/1", kw_only=True):
    """A step of a model's episode that no other event records, on ``retrain.episodes``.

    ``opened``: a detector asked for the first retrain of a change (its request carries
    the same ``episode_id``). ``joined``: another alarm (the other detector, a request that
    raced the first) joined the open episode instead of asking again; ``evidence`` holds
    its report ids or detection. ``reclassified``: the trainer found the inputs moved
    against the parent's reference in an episode a concept detector opened: it is a
    covariate episode (``reason``), ``evidence`` names the moved features.
    ``insufficient_data``: an attempt found too few labelled
    rows after the change point in time and will be retried. ``retrying``: a new attempt
    was requested after a rejected candidate or missing data. ``refining``: the episode
    promoted a candidate trained on few post-change rows and a refinement attempt was
    requested (see :class:`RetrainRequest`). ``adapted``: a candidate trained on the data
    after the change was rejected against a champion that an earlier episode already
    adapted: the episode ends without asking again (``evidence``: the verdict and that
    episode). ``failed``: the episode
    ran out of attempts and the model stays unadapted. Requests, verdicts and
    promotions tell the rest (an episode closes with a promotion of one of its
    candidates).
    """

    episode_id: NonEmptyStr
    model: ModelName
    status: EpisodeStatus
    attempt: Annotated[int, msgspec.Meta(ge=1)] = 1
    request_id: str | None = None
    detector: Literal["drift", "online", "trainer", "manual"]
    reason: Reason | None = None
    change_point: Timestamp | None = None
    evidence: list[str] = []
    detail: str = ""
    at: Timestamp
    watched: Watched | None = None


class ModelCandidate(Event, tag="model_candidate/1", kw_only=True):
    """A registered version waiting for shadow evaluation."""

    model: ModelName
    version: Version
    parent_version: Version | None
    request_id: str | None
    registry_uri: NonEmptyStr
    sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}\Z")]


class PairedTest(msgspec.Struct, frozen=True, kw_only=True):
    """Result of the one-sided paired test on per-event loss differences."""

    method: str
    statistic: float
    p_value: float
    mean_difference: float
    relative_improvement: float


class ShadowVerdict(Event, tag="shadow_verdict/1", kw_only=True):
    """The shadow evaluator's decision on one candidate.

    ``request_id`` is the retrain request the candidate answers (its
    ``ModelCandidate.request_id``), so the services that keep a request in flight can
    clear it from the verdict alone. It is optional: a candidate registered by hand answers
    no request, and its verdict carries none.
    """

    model: ModelName
    candidate: Version
    champion: Version
    samples: int
    metric: str
    candidate_metric: float
    champion_metric: float
    test: PairedTest
    decision: Literal["promote", "reject"]
    reason: str
    decided_at: Timestamp
    request_id: str | None = None


class ModelPromotion(Event, tag="model_promotion/1", kw_only=True):
    """The champion alias of ``model`` moved from ``previous_champion`` to ``new_champion``."""

    model: ModelName
    new_champion: Version
    previous_champion: Version | None
    cause: Literal["shadow", "rollback", "manual"]
    promoted_at: Timestamp


ANY_EVENT = (
    FeatureEvent
    | LabelEvent
    | DriftReport
    | RetrainRequest
    | ModelCandidate
    | ShadowVerdict
    | ModelPromotion
    | EpisodeEvent
)

EVENT_TYPES: tuple[type[Event], ...] = (
    FeatureEvent,
    LabelEvent,
    DriftReport,
    RetrainRequest,
    ModelCandidate,
    ShadowVerdict,
    ModelPromotion,
    EpisodeEvent,
)


def schema_of(event_type: type[Event]) -> str:
    """The ``schema`` tag (``name/version``) of an event type."""
    return event_type.__struct_config__.tag  # type: ignore[return-value]
