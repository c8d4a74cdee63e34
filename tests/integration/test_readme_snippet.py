"""The README's client snippet sends events the services accept (the binary example's
model, ``examples/binary``)."""

from __future__ import annotations

import importlib
import re
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer
from samples.examples_loop import ROOT

from services.model.task import Task
from streams.codec import decode
from streams.contracts import FeatureEvent, LabelEvent
from streams.settings import Settings
from streams.validation import validate

pytestmark = [pytest.mark.integration]


def _consume(settings: Settings, topic: str, expected: int, timeout_s: float = 30.0) -> list[Any]:
    consumer = Consumer(settings.kafka.consumer_config(f"snippet-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([settings.topic(topic)])
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            out += [m for m in consumer.consume(10, timeout=0.5) if m.error() is None]
    finally:
        consumer.close()
    return out


def test_the_readme_client_snippet_sends_events_the_services_accept(
    settings: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The README's confluent-kafka snippet, run against the broker, sends valid events."""
    monkeypatch.syspath_prepend(str(ROOT))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- readme-snippet -->\s*\n```python\n(.*?)```", readme,
                        flags=re.DOTALL)
    assert len(blocks) == 1
    code = (blocks[0].replace('"127.0.0.1:19092"', repr(settings.kafka.bootstrap_servers))
            .replace('produce("features"', f'produce({settings.topic("features")!r}')
            .replace('produce("labels"', f'produce({settings.topic("labels")!r}'))
    exec(compile(code, "README.md snippet", "exec"), {})  # the README's own code, as written
    feature_message = _consume(settings, "features", 1)[0]
    label_message = _consume(settings, "labels", 1)[0]
    feature = decode(feature_message.value(), FeatureEvent)
    label = decode(label_message.value(), LabelEvent)
    validate(feature, settings.validation)
    validate(label, settings.validation)
    assert (label.event_id, label.model, feature.model) == (feature.event_id, "phishing",
                                                            "phishing")
    phishing = importlib.import_module("examples.binary.phishing")
    assert set(feature.features) == set(phishing.FEATURES)
    assert dict(feature_message.headers())["event_id"] == feature.event_id.encode()
    assert Task().label_problem(label.label) is None
