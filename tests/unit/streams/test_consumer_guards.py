"""Pure parts of the consumer loop's guards: merged commit plans, the stalled-join watch."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from streams.broker import free_port
from streams.consumer import ConsumerLoop, Inbound, _merge_plans
from streams.contracts import LabelEvent
from streams.settings import load_settings


class _Msg:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._t, self._p, self._o = topic, partition, offset

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


def _inbound(partition: int, offset: int) -> Inbound[Any]:
    return Inbound(None, _Msg("t", partition, offset))  # type: ignore[arg-type]


def test_sub_batches_answered_none_are_durable_to_their_last_message() -> None:
    first = [_inbound(0, 10), _inbound(1, 4)]
    second = [_inbound(0, 11), _inbound(0, 12)]
    assert _merge_plans([(first, None), (second, None)]) is None
    # A windowed handler's plan for a later sub-batch wins for its partition.
    assert _merge_plans([(first, None), (second, {("t", 0): 5})]) == {("t", 0): 5,
                                                                       ("t", 1): 5}
    assert _merge_plans([(first, {("t", 0): 3}), (second, None)]) == {("t", 0): 13}


def test_a_member_without_any_assignment_logs_and_reports_a_stalled_join(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = load_settings(
        kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}", "session_timeout_ms": 1000},
        resilience={"assignment_timeout_s": 0.5},
    )
    loop = ConsumerLoop(settings, group_id="g", topics={"labels": LabelEvent},
                        handle_batch=lambda batch: None, service_name="svc")
    assert loop.join_stalled_s is None
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="streams.consumer"):
        loop.run(until=lambda: loop.join_stalled_s is not None, idle_timeout_s=10)
    stalled = loop.join_stalled_s
    assert stalled is not None and stalled >= 0.5
    assert any("no partitions assigned" in r.getMessage() for r in caplog.records)
    # Leaving waited (bounded by the 1 s session timeout) for a join that never came.
    assert time.monotonic() - started < 6
