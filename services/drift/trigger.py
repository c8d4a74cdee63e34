"""When a run of alarming windows becomes a retrain request: a small state machine.

Generic on purpose (the drift monitor uses it for covariate drift, the online learner
for concept drift, each with its own numbers): it sees one boolean per window and
fires when

- the last ``consecutive`` windows all alarmed (the streak restarts after firing),
- no request fired in the last ``cooldown``, and
- no request is in flight: one is in flight from firing until :meth:`clear_in_flight`
  gets its id (its verdict arrived) or ``in_flight_timeout`` passes, and
- no episode is open for the model (``open_episode``, from
  :class:`~services.episodes.book.EpisodeBook`): a complete streak then *joins* that
  episode (outcome ``joined``: the caller attaches its evidence; the streak restarts,
  nothing fires and the cooldown does not start).

Observing the same ``window_id`` twice in a row (a redelivered window) returns the
first decision again and changes nothing. The state is plain data
(:meth:`RetrainTrigger.state_json` / :meth:`RetrainTrigger.from_state_json`), so a
restarted process carries on where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

Outcome = Literal[
    "fire", "calm", "streak", "joined", "cooldown", "in_flight", "repeat", "too_small"]


@dataclass(frozen=True, slots=True)
class TriggerConfig:
    """The numbers of one trigger."""

    consecutive: int = 2
    cooldown: timedelta = timedelta(minutes=15)
    in_flight_timeout: timedelta = timedelta(hours=2)

    def __post_init__(self) -> None:
        if self.consecutive < 1:
            raise ValueError("consecutive must be >= 1")
        if self.cooldown < timedelta(0) or self.in_flight_timeout <= timedelta(0):
            raise ValueError("cooldown must be >= 0 and in_flight_timeout > 0")


@dataclass(frozen=True, slots=True)
class TriggerDecision:
    """What one observation led to, and why."""

    fire: bool
    outcome: Outcome
    reason: str
    streak: int
    window_id: str
    request_id: str | None = None  # set when fired
    streak_windows: tuple[str, ...] = ()  # the windows of the streak that fired
    expired_request_id: str | None = None  # an in-flight request this call timed out


@dataclass(slots=True)
class TriggerState:
    """Everything the trigger remembers (JSON-serialisable through ``to_dict``)."""

    streak_windows: list[str] = field(default_factory=list)
    last_fired_at: datetime | None = None
    in_flight_id: str | None = None
    in_flight_since: datetime | None = None
    last_window_id: str | None = None
    last_decision: TriggerDecision | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able dict."""

        def ts(v: datetime | None) -> str | None:
            return v.isoformat() if v is not None else None

        last = None
        if self.last_decision is not None:
            last = asdict(self.last_decision)
            last["streak_windows"] = list(self.last_decision.streak_windows)
        return {
            "streak_windows": list(self.streak_windows),
            "last_fired_at": ts(self.last_fired_at),
            "in_flight_id": self.in_flight_id,
            "in_flight_since": ts(self.in_flight_since),
            "last_window_id": self.last_window_id,
            "last_decision": last,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TriggerState:
        """Inverse of :meth:`to_dict`."""

        def ts(v: object) -> datetime | None:
            return datetime.fromisoformat(v) if isinstance(v, str) else None

        last = data.get("last_decision")
        decision = None
        if isinstance(last, dict):
            decision = TriggerDecision(**{**last, "streak_windows": tuple(last["streak_windows"])})
        streak = data.get("streak_windows") or []
        return cls(
            streak_windows=[str(w) for w in streak],  # type: ignore[union-attr]
            last_fired_at=ts(data.get("last_fired_at")),
            in_flight_id=data.get("in_flight_id"),  # type: ignore[arg-type]
            in_flight_since=ts(data.get("in_flight_since")),
            last_window_id=data.get("last_window_id"),  # type: ignore[arg-type]
            last_decision=decision,
        )


class RetrainTrigger:
    """Consecutive-windows, cooldown and in-flight rules for one model."""

    def __init__(self, config: TriggerConfig | None = None, state: TriggerState | None = None):
        self.config = config or TriggerConfig()
        self.state = state or TriggerState()

    @property
    def in_flight(self) -> str | None:
        """The id of the request in flight, if any."""
        return self.state.in_flight_id

    def expire(self, now: datetime) -> str | None:
        """Drop an in-flight request older than the timeout; returns its id if dropped."""
        s = self.state
        if s.in_flight_id is None or s.in_flight_since is None:
            return None
        if now - s.in_flight_since < self.config.in_flight_timeout:
            return None
        expired = s.in_flight_id
        s.in_flight_id = None
        s.in_flight_since = None
        return expired

    def clear_in_flight(self, request_id: str) -> bool:
        """The verdict for ``request_id`` arrived: it no longer blocks new requests."""
        s = self.state
        if s.in_flight_id != request_id:
            return False
        s.in_flight_id = None
        s.in_flight_since = None
        return True

    def record_request(self, request_id: str, at: datetime) -> None:
        """A request for this model was made elsewhere (another instance, a restart
        before this state was saved, or by hand): it is in flight and starts the
        cooldown, as if this trigger had fired it."""
        s = self.state
        if s.in_flight_id == request_id:
            return
        if s.last_fired_at is None or at > s.last_fired_at:
            s.last_fired_at = at
        if s.in_flight_id is None or s.in_flight_since is None or at >= s.in_flight_since:
            s.in_flight_id = request_id
            s.in_flight_since = at
        s.streak_windows.clear()

    def observe(
        self,
        window_alarmed: bool,
        now: datetime,
        window_id: str,
        request_id: str | None = None,
        open_episode: str | None = None,
    ) -> TriggerDecision:
        """Take one window's verdict; ``request_id`` names the request if this fires.

        (``request_id`` defaults to ``window_id``.) ``open_episode``: the id of the
        model's open episode, if any.
        """
        s = self.state
        if window_id == s.last_window_id and s.last_decision is not None:
            return replace(s.last_decision, outcome="repeat", fire=False, expired_request_id=None)
        expired = self.expire(now)
        cfg = self.config
        if window_alarmed:
            s.streak_windows.append(window_id)
            del s.streak_windows[: -cfg.consecutive]
        else:
            s.streak_windows.clear()
        streak = len(s.streak_windows)
        fire = False
        rid = None
        fired_windows: tuple[str, ...] = ()
        if not window_alarmed:
            outcome: Outcome = "calm"
            reason = "window did not alarm; streak reset"
        elif streak < cfg.consecutive:
            outcome = "streak"
            reason = f"{streak} of {cfg.consecutive} consecutive alarming windows"
        elif open_episode is not None:
            outcome = "joined"
            reason = f"{streak} consecutive alarming windows join open episode {open_episode}"
            fired_windows = tuple(s.streak_windows)
            s.streak_windows.clear()
        elif s.in_flight_id is not None:
            outcome = "in_flight"
            reason = f"request {s.in_flight_id} in flight since {s.in_flight_since}"
        elif s.last_fired_at is not None and now - s.last_fired_at < cfg.cooldown:
            outcome = "cooldown"
            reason = f"cooldown until {s.last_fired_at + cfg.cooldown}"
        else:
            fire = True
            outcome = "fire"
            rid = request_id or window_id
            fired_windows = tuple(s.streak_windows)
            reason = f"{streak} consecutive alarming windows"
            s.last_fired_at = now
            s.in_flight_id = rid
            s.in_flight_since = now
            s.streak_windows.clear()
        decision = TriggerDecision(
            fire=fire,
            outcome=outcome,
            reason=reason,
            streak=streak,
            window_id=window_id,
            request_id=rid,
            streak_windows=fired_windows,
            expired_request_id=expired,
        )
        s.last_window_id = window_id
        s.last_decision = decision
        return decision

    def state_json(self) -> str:
        """The state as JSON text."""
        return json.dumps(self.state.to_dict(), sort_keys=True)

    @classmethod
    def from_state_json(cls, text: str, config: TriggerConfig | None = None) -> RetrainTrigger:
        """A trigger restored from :meth:`state_json`."""
        return cls(config, TriggerState.from_dict(json.loads(text)))
