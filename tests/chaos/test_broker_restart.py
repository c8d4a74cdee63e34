"""Broker ``kill -9`` mid-stream: every acknowledged event is still consumed.

One producer sends numbered events at a steady rate (``acks=all``) while a consumer
loop in a thread records what it gets. At three seeded random points the broker is
killed with SIGKILL, left down for a seeded moment (the producer keeps queueing),
and started again on the same port over the same S3 bucket. Neither client is
restarted; they must reconnect by themselves. Every delivery must succeed (the
outages are far shorter than the producer's ``message.timeout.ms``), and at the end
every acknowledged event must have been consumed; duplicates are allowed and counted,
both re-reads of one offset and the same event stored at two offsets.

Known broker defect (tansu 0.6.0 on S3): with ``enable.idempotence=true`` a batch in
flight at the kill is retried after the restart and answered DUPLICATE_SEQUENCE_NUMBER,
which the client reports as delivered, although the broker had not stored it (about
1 to 2 acknowledged events lost per kill here). So the guarantee is asserted for a
plain ``acks=all`` producer, the product's ``kafka.idempotence: false`` setting for this
broker (a retry writes again: duplicates, no loss); the idempotent case runs only with
``DRIFTLOOP_CHAOS_IDEMPOTENT=1``, to check a newer broker.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from chaos.ledger import FaultRecorder
from streams.broker import EmbeddedBroker
from streams.consumer import ConsumerLoop, Inbound
from streams.contracts import LabelEvent
from streams.producer import DeliveryError, EventProducer
from streams.settings import Settings

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

SEED = int(os.environ.get("DRIFTLOOP_CHAOS_SEED", "20261124"))
TOTAL_EVENTS = 3_000
RATE_PER_S = 250.0
KILLS = 3
OUTAGE_S = (0.3, 1.5)  # kill points are >= 400 events (1.6 s) apart, so outages never overlap
BUDGET_S = 75.0  # the whole test stays under its 90 s timeout
STALL_S = 15.0  # stop waiting for the consumer when nothing new arrives for this long
PRODUCERS = {
    # mode: (the kafka.idempotence setting, ledger fault name, note for the ledger)
    "acks-all": (False,
                 "broker kill -9 mid-stream, S3 storage, acks=all producer",
                 "producer with kafka.idempotence=false (acks=all)"),
    "idempotent": (True, "broker kill -9 mid-stream, S3 storage, idempotent producer",
                   "intermittent broker defect (0 to 6 acknowledged events lost per run, "
                   "most runs lose some): after the restart the broker may answer a retried "
                   "in-flight batch DUPLICATE_SEQUENCE_NUMBER without having stored it, and "
                   "the client then reports it delivered"),
}
IDEMPOTENT_DEFECT = (
    "tansu 0.6.0 acknowledges retried idempotent batches as duplicates without storing "
    "them after kill -9; set DRIFTLOOP_CHAOS_IDEMPOTENT=1 to run it"
)


def kill_points(seed: int, total: int, kills: int, margin: int) -> list[int]:
    """One seeded event index in the middle half of each equal slice of the stream."""
    rng = random.Random(seed)
    width = (total - 2 * margin) // kills
    return [margin + k * width + rng.randrange(width // 4, 3 * width // 4) for k in range(kills)]


def event_id(i: int) -> str:
    return f"ev-{i:06d}"


@dataclass(frozen=True, slots=True)
class Seen:
    """One consumed record."""

    at: float
    event_id: str
    partition: int
    offset: int


@dataclass
class Recorder:
    """The consumer's handler: remembers every record it was given, duplicates included."""

    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, batch: list[Inbound[Any]]) -> None:
        now = time.monotonic()
        with self.lock:
            self.seen.extend(Seen(now, i.event.event_id, i.partition, i.offset) for i in batch)

    def snapshot(self) -> list[Seen]:
        with self.lock:
            return list(self.seen)


@dataclass(slots=True)
class Kill:
    """One injected kill and where the clients stood at that moment."""

    index: int
    outage_s: float
    killed_at: float
    sent: int
    acknowledged: int
    consumed: int
    restarted_at: float = 0.0


def _produce_through_kills(
    producer: EventProducer, topic: str, broker: EmbeddedBroker, recorder: Recorder,
    points: list[int], rng: random.Random,
) -> list[Kill]:
    """Send the numbered stream at ``RATE_PER_S``, killing and restarting the broker."""
    kills: list[Kill] = []
    restart_at: float | None = None
    started = time.monotonic()
    event_time = datetime.now(UTC)
    for i in range(TOTAL_EVENTS):
        delay = started + i / RATE_PER_S - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if restart_at is not None and time.monotonic() >= restart_at:
            broker.start()
            kills[-1].restarted_at = time.monotonic()
            restart_at = None
        if i in points:
            assert restart_at is None, "kill points closer than an outage"
            outage = rng.uniform(*OUTAGE_S)
            broker.stop(kill=True)
            kills.append(Kill(i, outage, time.monotonic(), producer.sent, producer.acknowledged,
                              len(recorder.snapshot())))
            restart_at = time.monotonic() + outage
        producer.send(topic, LabelEvent(event_id=event_id(i), model="chaos", label=float(i),
                                        event_time=event_time), key=event_id(i))
    if restart_at is not None:
        time.sleep(max(0.0, restart_at - time.monotonic()))
        broker.start()
        kills[-1].restarted_at = time.monotonic()
    return kills


def _wait_for(recorder: Recorder, wanted: set[str], deadline: float,
              errors: list[BaseException]) -> None:
    """Until ``wanted`` was consumed, the deadline passes, or the consumer stalls or dies."""
    count, moved = -1, time.monotonic()
    while time.monotonic() < deadline and not errors:
        seen = recorder.snapshot()
        if wanted <= {s.event_id for s in seen}:
            return
        if len(seen) != count:
            count, moved = len(seen), time.monotonic()
        elif time.monotonic() - moved > STALL_S:
            return
        time.sleep(0.2)


def _consume_in_thread(
    loop: ConsumerLoop, done: threading.Event
) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            loop.run(until=done.is_set)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="chaos-consumer", daemon=True)
    thread.start()
    return thread, errors


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", [
    "acks-all",
    pytest.param("idempotent", marks=pytest.mark.skipif(
        os.environ.get("DRIFTLOOP_CHAOS_IDEMPOTENT") != "1", reason=IDEMPOTENT_DEFECT)),
])
def test_acknowledged_events_survive_broker_kill9(
    mode: str, durable_broker: EmbeddedBroker, durable_settings: Settings,
    ledger: FaultRecorder,
) -> None:
    started = time.monotonic()
    idempotence, fault, note = PRODUCERS[mode]
    durable_settings = durable_settings.model_copy(update={
        "kafka": durable_settings.kafka.model_copy(update={"idempotence": idempotence})})
    points = kill_points(SEED, TOTAL_EVENTS, KILLS, margin=TOTAL_EVENTS // 10)
    topic = durable_settings.topic("labels")

    producer = EventProducer(durable_settings, "chaos-producer")
    recorder = Recorder()
    loop = ConsumerLoop(
        durable_settings, group_id="chaos-restart", topics={topic: LabelEvent},
        handle_batch=recorder, service_name="chaos-consumer", batch_size=500,
    )
    done = threading.Event()
    thread, errors = _consume_in_thread(loop, done)
    kills = _produce_through_kills(producer, topic, durable_broker, recorder, points,
                                   random.Random(SEED))

    failed: set[str] = set()
    pending = 0
    try:
        producer.flush(timeout=max(5.0, BUDGET_S - 20 - (time.monotonic() - started)))
    except DeliveryError as error:
        failed = {(f.key or b"").decode() for f in error.failures}
        pending = error.pending
    sent_ids = {event_id(i) for i in range(TOTAL_EVENTS)}
    acked = sent_ids - failed
    _wait_for(recorder, acked, started + BUDGET_S, errors)
    done.set()
    thread.join(timeout=15)

    seen = recorder.snapshot()
    consumed = {s.event_id for s in seen}
    lost = acked - consumed
    offsets: dict[str, set[tuple[int, int]]] = {}
    for s in seen:
        offsets.setdefault(s.event_id, set()).add((s.partition, s.offset))
    reread = len(seen) - sum(len(o) for o in offsets.values())
    duplicated_in_log = sum(len(o) - 1 for o in offsets.values())
    per_kill = _per_kill_figures(kills, seen, acked, consumed)
    survived = sum(1 for k in per_kill if k.survived)
    elapsed = time.monotonic() - started
    for figures in per_kill:
        print(figures)
    print(f"mode={mode} seed={SEED} points={points} sent={producer.sent} acked={len(acked)} "
          f"failed={len(failed)} pending={pending} consumed={len(consumed)} "
          f"records={len(seen)} re-read={reread} duplicated_in_log={duplicated_in_log} "
          f"lost={len(lost)} elapsed={elapsed:.1f}s")
    ledger.fault(
        fault, injected=len(kills), survived=survived, lost=len(lost),
        detail=(
            f"seed {SEED}, kills at events {points}, down "
            f"{', '.join(f'{k.outage_s:.1f}' for k in kills)} s, "
            f"{', '.join(str(k.sent - k.acknowledged) for k in kills)} events in flight: "
            f"{producer.sent} sent, {len(acked)} acknowledged, {len(consumed)} consumed, "
            f"{reread} re-read, {duplicated_in_log} stored twice; the same producer and "
            f"consumer throughout, {elapsed:.0f} s; {note}"
        ),
    )

    assert not errors, f"consumer loop died: {errors[0]!r}"
    assert not thread.is_alive(), "consumer loop did not stop"
    assert len(kills) == KILLS
    assert pending == 0, f"{pending} deliveries never settled"
    # Every outage (at most OUTAGE_S[1]) is far shorter than the producer's
    # message.timeout.ms, so no delivery may fail: a failed event is not "acknowledged",
    # and dropping it from ``acked`` would hide exactly the loss this test looks for.
    assert not failed, f"{len(failed)} deliveries failed, e.g. {sorted(failed)[:5]}"
    assert producer.acknowledged == len(acked), "delivery callbacks and failures disagree"
    assert consumed <= sent_ids, "consumed an event that was never sent"
    assert not lost, f"{len(lost)} acknowledged events lost, e.g. {sorted(lost)[:5]}"
    assert survived == KILLS, [str(k) for k in per_kill]


@dataclass(frozen=True, slots=True)
class KillFigures:
    """What happened around one kill.

    The window is the events sent from this kill to the next; re-reads are offsets
    consumed again between this kill and the next. A kill is survived when the
    consumer got records again after the restart and no acknowledged event sent
    between the previous kill and this one was lost.
    """

    number: int
    index: int
    outage_s: float
    in_flight: int
    window_sent: int
    window_acked: int
    window_consumed: int
    lost_since_last_kill: int
    reread_after: int
    resume_s: float
    survived: bool

    def __str__(self) -> str:
        return (
            f"kill {self.number} at event {self.index} (down {self.outage_s:.2f}s, "
            f"{self.in_flight} in flight): window sent={self.window_sent} "
            f"acked={self.window_acked} consumed={self.window_consumed}; lost since the "
            f"previous kill={self.lost_since_last_kill}; re-read after the restart="
            f"{self.reread_after}; consumer resumed {self.resume_s:.1f}s after the restart"
        )


def _per_kill_figures(
    kills: list[Kill], seen: list[Seen], acked: set[str], consumed: set[str]
) -> list[KillFigures]:
    out: list[KillFigures] = []
    for n, kill in enumerate(kills):
        end = kills[n + 1].index if n + 1 < len(kills) else TOTAL_EVENTS
        window = {event_id(i) for i in range(kill.index, end)}
        since = kills[n - 1].index if n else 0
        lost_before = len(({event_id(i) for i in range(since, kill.index)} & acked) - consumed)
        earlier = {(s.partition, s.offset) for s in seen[: kill.consumed]}
        next_kill = kills[n + 1].killed_at if n + 1 < len(kills) else float("inf")
        later = seen[kill.consumed:]
        reread = sum(1 for s in later if s.at < next_kill and (s.partition, s.offset) in earlier)
        resumed = [s.at for s in later if s.at >= kill.restarted_at]
        resume_s = resumed[0] - kill.restarted_at if resumed else float("nan")
        out.append(KillFigures(
            n + 1, kill.index, kill.outage_s, kill.sent - kill.acknowledged, len(window),
            len(window & acked), len(window & consumed), lost_before, reread, resume_s,
            survived=bool(resumed) and lost_before == 0,
        ))
    return out
