"""TopicTail without a broker: which topics are assigned, and the rule for each kind of
message (a stand-in consumer replaces confluent-kafka's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError

import streams.tail as tail_module
from streams.codec import encode
from streams.contracts import LabelEvent
from streams.settings import load_settings
from streams.tail import TopicTail, assignable

SETTINGS = load_settings(kafka={"bootstrap_servers": "127.0.0.1:1"})


@dataclass
class _Topic:
    partitions: dict[int, Any]
    error: Any = None


@dataclass
class _Metadata:
    topics: dict[str, _Topic]


class _Msg:
    def __init__(self, topic: str, value: bytes | None = None, error: Any = None,
                 headers: list[tuple[str, bytes]] | None = None) -> None:
        self._topic, self._value, self._error, self._headers = topic, value, error, headers

    def error(self) -> Any:
        return self._error

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers


@dataclass
class _Consumer:
    """Answers ``list_topics`` from ``metadata`` and ``consume`` from ``batches``."""

    metadata: _Metadata
    batches: list[list[_Msg]] = field(default_factory=list)
    assigned: list[list[tuple[str, int, int]]] = field(default_factory=list)
    metadata_reads: int = 0
    closed: int = 0

    def list_topics(self, timeout: float) -> _Metadata:
        self.metadata_reads += 1
        return self.metadata

    def incremental_assign(self, partitions: list[Any]) -> None:
        self.assigned.append([(tp.topic, tp.partition, tp.offset) for tp in partitions])

    def consume(self, num_messages: int, timeout: float) -> list[_Msg]:
        return self.batches.pop(0) if self.batches else []

    def close(self) -> None:
        self.closed += 1


def _label(event_id: str) -> bytes:
    return encode(LabelEvent(event_id=event_id, model="m", label=1.0,
                             event_time=datetime(2026, 1, 1, tzinfo=UTC)))


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> _Consumer:
    fake = _Consumer(_Metadata({"labels": _Topic({1: None, 0: None}), "raw": _Topic({0: None})}))
    monkeypatch.setattr(tail_module, "Consumer", lambda config: fake)
    return fake


def test_only_listed_healthy_topics_are_assigned_every_partition_from_the_start() -> None:
    # Bugs caught: assigning a topic the broker answers with an error (a topic being
    # created) or without partitions, so that it is never looked for again; starting
    # anywhere but the beginning; forgetting a partition.
    metadata = {"a": _Topic({2: None, 0: None, 1: None}),
                "creating": _Topic({0: None}, error="LEADER_NOT_AVAILABLE"),
                "empty": _Topic({})}
    partitions, missing = assignable(["a", "creating", "empty", "absent"], metadata)
    assert [(tp.topic, tp.partition, tp.offset) for tp in partitions] == [
        ("a", 0, OFFSET_BEGINNING), ("a", 1, OFFSET_BEGINNING), ("a", 2, OFFSET_BEGINNING)]
    assert missing == ["creating", "empty", "absent"]


def test_partition_eof_is_skipped_other_errors_and_bad_messages_are_counted(
    consumer: _Consumer,
) -> None:
    # Bugs caught: a consume error or an undecodable message raised out of drain (the
    # demo's and the benchmark's copies raised on a bad message), EOF counted as an
    # error, a raw topic's message dropped or decoded.
    consumer.batches = [[
        _Msg("labels", error=KafkaError(KafkaError._PARTITION_EOF)),
        _Msg("labels", error=KafkaError(KafkaError._TRANSPORT)),
        _Msg("labels", b"{not json"),
        _Msg("labels", _label("ok")),
        _Msg("raw", b"anything", headers=[("traceparent", b"00-abc")]),
    ]]
    with TopicTail(SETTINGS, {"labels": LabelEvent, "raw": None}) as tail:
        records = tail.drain_records()
    assert [(r.topic, r.event.event_id if r.event else None) for r in records] == [
        ("labels", "ok"), ("raw", None)]
    assert records[1].value == b"anything"
    assert records[1].headers == [("traceparent", b"00-abc")]
    assert (tail.messages, tail.undecodable, tail.errors) == (3, 1, 1)


def test_drain_goes_on_past_a_batch_without_a_good_event(consumer: _Consumer) -> None:
    # Bug caught: stopping when a fetch brings no decodable event (only a poison message)
    # instead of when it brings no message at all, leaving the rest of the history
    # for a later call.
    consumer.batches = [[_Msg("labels", b"poison")], [_Msg("labels", _label("after"))]]
    with TopicTail(SETTINGS, {"labels": LabelEvent}) as tail:
        assert [e.event_id for e in tail.drain()] == ["after"]
        assert tail.drain() == []


def test_a_missing_topic_is_assigned_once_it_exists_and_rechecked_at_most_every_recheck_s(
    consumer: _Consumer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Bugs caught: a topic missing at the start never assigned (the control reader's old
    # copy); assigning everything again when it appears (the partitions already read
    # would start over); asking the broker for metadata on every poll.
    now = [100.0]
    monkeypatch.setattr(tail_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    tail = TopicTail(SETTINGS, {"labels": LabelEvent, "late": LabelEvent}, recheck_s=1.0)
    assert tail.missing == ["late"]
    assert consumer.assigned == [[("labels", 0, OFFSET_BEGINNING), ("labels", 1, OFFSET_BEGINNING)]]
    consumer.metadata.topics["late"] = _Topic({0: None})
    now[0] += 0.5
    tail.drain()
    assert (consumer.metadata_reads, tail.missing) == (1, ["late"])
    now[0] += 0.6
    tail.drain()
    assert (consumer.metadata_reads, tail.missing) == (2, [])
    assert consumer.assigned[1:] == [[("late", 0, OFFSET_BEGINNING)]]
    now[0] += 5
    tail.drain()
    assert consumer.metadata_reads == 2  # nothing missing: no more metadata reads
    tail.close()
    tail.close()
    assert consumer.closed == 1


def test_a_broker_without_metadata_fails_the_start_and_closes_the_consumer(
    consumer: _Consumer,
) -> None:
    # Bug caught: a tail that cannot start leaking its consumer (its threads and sockets).
    from confluent_kafka import KafkaException

    def refuse(timeout: float) -> None:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT))

    consumer.list_topics = refuse  # type: ignore[method-assign]
    with pytest.raises(KafkaException):
        TopicTail(SETTINGS, {"labels": LabelEvent})
    assert consumer.closed == 1
