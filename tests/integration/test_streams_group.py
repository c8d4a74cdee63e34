"""Two loops in one consumer group split the partitions and together see everything once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from streams.consumer import ConsumerLoop, Inbound
from streams.contracts import LabelEvent, new_event_id
from streams.producer import EventProducer
from streams.settings import Settings

pytestmark = pytest.mark.integration


def test_two_members_split_partitions_and_cover_each_event_once(settings: Settings) -> None:
    topic = settings.topic("labels")
    events = [LabelEvent(event_id=new_event_id(), model="fraud", label=1.0,
                         event_time=datetime.now(UTC)) for _ in range(300)]
    seen: dict[str, list[tuple[int, str]]] = {"a": [], "b": []}
    loops: dict[str, ConsumerLoop] = {}
    lock = threading.Lock()

    def handler(name: str):  # type: ignore[no-untyped-def]
        def handle(batch: list[Inbound[Any]]) -> None:
            with lock:
                seen[name].extend((i.partition, i.event.event_id) for i in batch)
            return None
        return handle

    for name in seen:
        loops[name] = ConsumerLoop(settings, group_id="pair", topics={topic: LabelEvent},
                                   handle_batch=handler(name), service_name=name, batch_size=20)

    def total() -> int:
        with lock:
            return len(seen["a"]) + len(seen["b"])

    threads = [threading.Thread(target=loops[n].run,
                                kwargs={"until": lambda: total() >= len(events),
                                        "idle_timeout_s": 60}) for n in seen]
    for t in threads:
        t.start()
    # Produce only once both members joined, so the split is visible in what they read.
    deadline = threading.Event()
    for _ in range(200):
        if loops["a"].assignment and loops["b"].assignment:
            break
        deadline.wait(0.1)
    assert loops["a"].assignment and loops["b"].assignment, "both members should own partitions"
    assert not loops["a"].assignment & loops["b"].assignment
    with EventProducer(settings, "test") as producer:
        for e in events:
            producer.send(topic, e, key=e.event_id)
    for t in threads:
        t.join(90)
    ids = [eid for name in seen for _, eid in seen[name]]
    assert sorted(ids) == sorted(e.event_id for e in events)
    partitions_a = {p for p, _ in seen["a"]}
    partitions_b = {p for p, _ in seen["b"]}
    assert partitions_a and partitions_b and not partitions_a & partitions_b
