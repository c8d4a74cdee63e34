"""Move the ``champion`` alias and announce it, with an outbox so a crash in between heals.

Every champion change (a shadow promotion, an automatic rollback, ``driftloop models
rollback``) goes through :class:`Promoter`, in this order:

1. the intent (model, from, to, cause, and the events to publish) is written to the
   registry's outbox, ``models/<model>/outbox/<intent_id>.json`` (atomically);
2. the alias moves by compare-and-set (``expected`` = the champion the decision was
   made against); on a conflict the intent is removed and nothing is published;
3. the ``ShadowVerdict`` (shadow promotions) and the ``ModelPromotion`` are produced and
   flushed (acknowledged by the broker);
4. the intent is removed.

A process killed between 2 and 4 leaves the intent behind. :meth:`Promoter.recover`
(run by the shadow service at start and periodically, and by the rollback command
first) finds it and looks at the alias: moved as intended, the events are produced
(again); not moved, the intent is dropped once it is older than ``grace_s`` (younger,
its writer may still be between 1 and 2); moved elsewhere since, it is dropped as
superseded (that later move has its own events). So there is never a champion without
its promotion event, nor a promotion event for a move that did not happen.

Event ids are deterministic: the promotion's ``event_id`` is the intent id, a hash of
model, cause, from, to and the alias record it replaced (its ``updated_at``), and the
verdict's is fixed by the caller. Events produced twice (a crash after producing, before
step 4) carry the same ids, so consumers can drop the repeat.

The outbox lives in the registry, not in a service's state directory, because any
process that can move the alias (the service, an operator's CLI) must be able to find
and finish what another one left.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from confluent_kafka import KafkaException
from opentelemetry import trace

from services.registry.store import AliasConflictError, ModelRegistry, validate_name
from streams.codec import decode, encode
from streams.contracts import ModelPromotion, ShadowVerdict
from streams.producer import EventProducer
from streams.settings import Settings
from streams.tracing import extract_trace_context

log = logging.getLogger(__name__)

CHAMPION = "champion"
Cause = Literal["shadow", "rollback", "manual"]
Outcome = Literal["published", "dropped", "superseded", "waiting"]


class PromotionError(RuntimeError):
    """A champion change that cannot be made as asked (nothing was moved)."""


class BrokerUnavailableError(PromotionError):
    """Kafka could not be reached (or lacks the promotions topic) before moving anything."""


def event_id_for(*parts: object) -> str:
    """A deterministic event id (32 hex) from its defining parts."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class PromotionIntent:
    """One champion change and the events that announce it."""

    intent_id: str
    model: str
    new_champion: int
    previous_champion: int | None  # the expected alias value (compare-and-set)
    cause: Cause
    promoted_at: datetime
    verdict: ShadowVerdict | None = None  # published before the promotion (shadow)
    traceparent: str | None = None  # the decision's trace, parent of the events
    created_at: float = field(default_factory=time.time)

    @property
    def promotion(self) -> ModelPromotion:
        """The ``models.promotions`` event (its id is the intent id)."""
        return ModelPromotion(
            event_id=self.intent_id, model=self.model, new_champion=self.new_champion,
            previous_champion=self.previous_champion, cause=self.cause,
            promoted_at=self.promoted_at,
        )

    def to_json(self) -> bytes:
        return json.dumps({
            "intent_id": self.intent_id, "model": self.model,
            "new_champion": self.new_champion, "previous_champion": self.previous_champion,
            "cause": self.cause, "promoted_at": self.promoted_at.isoformat(),
            "verdict": None if self.verdict is None else json.loads(encode(self.verdict)),
            "traceparent": self.traceparent, "created_at": self.created_at,
        }, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PromotionIntent:
        d = json.loads(data)
        verdict = d.get("verdict")
        return cls(
            intent_id=d["intent_id"], model=d["model"], new_champion=int(d["new_champion"]),
            previous_champion=d["previous_champion"], cause=d["cause"],
            promoted_at=datetime.fromisoformat(d["promoted_at"]),
            verdict=None if verdict is None else decode(json.dumps(verdict).encode(),
                                                        ShadowVerdict),
            traceparent=d.get("traceparent"), created_at=float(d["created_at"]),
        )


def recovery_outcome(
    intent: PromotionIntent, alias: dict[str, Any] | None, age_s: float, grace_s: float
) -> Outcome:
    """What to do with a pending intent, given the alias record now (pure).

    ``published``: the alias made exactly this move, produce the events. ``waiting``: it
    has not moved and the intent is young (its writer may be about to move it).
    ``dropped``: it has not moved and the intent is old. ``superseded``: it points
    elsewhere (a later move, with its own events).
    """
    current = None if alias is None else int(alias["version"])
    previous = None if alias is None else alias.get("previous")
    if current == intent.new_champion and previous == intent.previous_champion:
        return "published"
    if current == intent.previous_champion:
        return "waiting" if age_s < grace_s else "dropped"
    return "superseded"


@dataclass(frozen=True)
class Recovery:
    """A pending intent found at recovery and what was done with it."""

    intent: PromotionIntent
    outcome: Outcome
    events: tuple[ShadowVerdict | ModelPromotion, ...] = ()


class Outbox:
    """Pending intents under the registry root: ``models/<model>/outbox/<intent_id>.json``."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.fs = registry.fs
        self.root = registry.root

    def _dir(self, model: str) -> str:
        return f"{self.root}/models/{validate_name(model, 'model name')}/outbox"

    def _path(self, intent: PromotionIntent) -> str:
        return f"{self._dir(intent.model)}/{validate_name(intent.intent_id, 'intent id')}.json"

    def put(self, intent: PromotionIntent) -> None:
        """Write the intent durably (readers see all of it or none)."""
        self.registry.write_atomic(self._path(intent), intent.to_json())

    def remove(self, intent: PromotionIntent) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._path(intent))

    def pending(self, model: str | None = None) -> list[PromotionIntent]:
        """Intents not yet completed, oldest first (of one model, or of every model)."""
        models = [model] if model is not None else self.registry.list_models()
        out = []
        for name in models:
            try:
                entries = self.fs.ls(self._dir(name), detail=False)
            except FileNotFoundError:
                continue
            for entry in entries:
                base = str(entry).rstrip("/").rsplit("/", 1)[-1]
                if base.endswith(".json") and not base.startswith("."):
                    with contextlib.suppress(FileNotFoundError):
                        out.append(PromotionIntent.from_json(self.fs.cat_file(str(entry))))
        return sorted(out, key=lambda i: i.created_at)


class Promoter:
    """Moves ``champion`` and publishes its events through the outbox (see module doc)."""

    def __init__(
        self,
        registry: ModelRegistry,
        producer: EventProducer,
        settings: Settings,
        *,
        tracer: trace.Tracer | None = None,
        flush_timeout_s: float = 30.0,
        grace_s: float = 120.0,
        after_alias_moved: Callable[[PromotionIntent], None] | None = None,
    ) -> None:
        """``after_alias_moved`` is called between the alias move and the events (step 2
        and 3): an observation point, and where a fault can be injected to prove that
        :meth:`recover` completes what a crash there leaves."""
        self.registry = registry
        self.producer = producer
        self.settings = settings
        self.tracer = tracer or trace.get_tracer("driftloop.shadow")
        self.flush_timeout_s = flush_timeout_s
        self.grace_s = grace_s
        self.outbox = Outbox(registry)
        self.after_alias_moved = after_alias_moved

    def intent(
        self,
        model: str,
        new_champion: int,
        *,
        expected: int | None,
        cause: Cause,
        at: datetime | None = None,
        verdict: ShadowVerdict | None = None,
        traceparent: str | None = None,
    ) -> PromotionIntent:
        """The intent to move ``champion`` from ``expected`` to ``new_champion``."""
        record = self.registry.alias_record(model, CHAMPION) or {}
        anchor = record.get("updated_at") if record.get("version") == expected else None
        return PromotionIntent(
            intent_id=event_id_for("promotion", model, cause, expected, new_champion, anchor),
            model=model, new_champion=new_champion, previous_champion=expected, cause=cause,
            promoted_at=at or datetime.now(UTC), verdict=verdict, traceparent=traceparent,
        )

    def move(self, intent: PromotionIntent) -> list[ShadowVerdict | ModelPromotion]:
        """Outbox, compare-and-set, publish, done; returns the events produced.

        Raises AliasConflictError (nothing moved, nothing published) when the champion is
        no longer ``intent.previous_champion``, and DeliveryError when the broker did not
        acknowledge the events (the alias has moved; the intent stays for recovery).
        """
        self.outbox.put(intent)
        try:
            self.registry.set_alias(intent.model, CHAMPION, intent.new_champion,
                                    expected=intent.previous_champion,
                                    back=intent.cause == "rollback")
        except AliasConflictError:
            self.outbox.remove(intent)
            raise
        if self.after_alias_moved is not None:
            self.after_alias_moved(intent)
        log.info("%s: champion v%s -> v%d (%s)", intent.model, intent.previous_champion,
                 intent.new_champion, intent.cause)
        return self.publish(intent)

    def publish(self, intent: PromotionIntent) -> list[ShadowVerdict | ModelPromotion]:
        """Produce the intent's events, wait for the broker's acks, remove the intent."""
        events: list[ShadowVerdict | ModelPromotion] = []
        if intent.verdict is not None:
            events.append(intent.verdict)
        events.append(intent.promotion)
        context = None
        if intent.traceparent:
            context = extract_trace_context([("traceparent", intent.traceparent.encode())])
        with self.tracer.start_as_current_span(
            f"{intent.cause} promotion", context=context,
            attributes={"driftloop.model": intent.model,
                        "driftloop.version": intent.new_champion,
                        "driftloop.cause": intent.cause},
        ):
            for event in events:
                topic = "models.verdicts" if isinstance(event, ShadowVerdict) else (
                    "models.promotions")
                self.producer.send(self.settings.topic(topic), event, intent.model)
        self.producer.flush(self.flush_timeout_s)
        self.outbox.remove(intent)
        return events

    def recover(self, model: str | None = None) -> list[Recovery]:
        """Complete or drop the intents a crashed process left (see :func:`recovery_outcome`)."""
        out = []
        for intent in self.outbox.pending(model):
            record = self.registry.alias_record(intent.model, CHAMPION)
            outcome = recovery_outcome(intent, record, time.time() - intent.created_at,
                                       self.grace_s)
            events: tuple[ShadowVerdict | ModelPromotion, ...] = ()
            if outcome == "published":
                log.warning("%s: completing promotion v%s -> v%d (%s) left by a crash",
                            intent.model, intent.previous_champion, intent.new_champion,
                            intent.cause)
                events = tuple(self.publish(intent))
            elif outcome in ("dropped", "superseded"):
                log.warning("%s: %s promotion intent v%s -> v%d (alias is %s)", intent.model,
                            outcome, intent.previous_champion, intent.new_champion,
                            None if record is None else record.get("version"))
                self.outbox.remove(intent)
            out.append(Recovery(intent, outcome, events))
        return out


def _sigkill(intent: PromotionIntent) -> None:
    log.warning("faults.crash_after_alias_move: killing the process after %s v%s -> v%d",
                intent.model, intent.previous_champion, intent.new_champion)
    os.kill(os.getpid(), signal.SIGKILL)


def configured_fault(settings: Settings) -> Callable[[PromotionIntent], None] | None:
    """The ``after_alias_moved`` fault the settings ask for (``faults.*``, off in
    production): with ``faults.crash_after_alias_move`` the process is killed (SIGKILL)
    between the alias move and its events."""
    return _sigkill if settings.faults.crash_after_alias_move else None


def rollback_target(registry: ModelRegistry, model: str, to: int | None) -> tuple[int, int]:
    """(current champion, version to restore), back along the promotion history.

    Without ``to``: the champion before the current one; ``to`` must be an earlier
    champion. A rollback never moves forward.
    """
    record = registry.alias_record(model, CHAMPION)
    if record is None:
        raise PromotionError(f"{model} has no champion to roll back")
    current = int(record["version"])
    history = [int(v) for v in record["history"]]
    if not history:
        raise PromotionError(f"{model} v{current} is the oldest champion on record: "
                             "there is nothing older to roll back to")
    if to is None:
        target = history[-1]
    else:
        target = registry.resolve(model, int(to))
        if target == current:
            raise PromotionError(f"{model} v{target} is already champion")
        if target not in history:
            raise PromotionError(
                f"{model} v{target} was not champion before v{current} (earlier champions: "
                f"{', '.join(f'v{v}' for v in history)}); a rollback only goes back")
    return current, target


def check_broker(settings: Settings, timeout_s: float) -> None:
    """Raise BrokerUnavailableError unless the broker answers and has the promotions topic."""
    from streams.admin import admin_client

    topic = settings.topic("models.promotions")
    try:
        metadata = admin_client(settings).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise BrokerUnavailableError(
            f"Kafka at {settings.kafka.bootstrap_servers} is unreachable: {exc}") from exc
    if topic not in metadata.topics or metadata.topics[topic].error is not None:
        raise BrokerUnavailableError(
            f"topic {topic} does not exist on {settings.kafka.bootstrap_servers} "
            "(driftloop topics create)")
