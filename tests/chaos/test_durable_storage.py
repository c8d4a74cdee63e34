"""The loopback S3 server: only its keys get in, and records outlive a restart of everything."""

from __future__ import annotations

import http.client
import socket
import time
from datetime import UTC, datetime

import pytest

from streams.broker import EmbeddedBroker
from streams.contracts import LabelEvent
from streams.durable import GRPC_OFFSET, SeaweedS3, StorageError, choose_ports
from streams.producer import EventProducer
from streams.settings import Settings
from streams.tail import TopicTail


def test_chosen_ports_are_distinct_with_their_grpc_twins() -> None:
    ports = choose_ports()
    every = ports.all_ports()
    assert len(set(every)) == 10
    assert every[5:] == [p + GRPC_OFFSET for p in every[:5]]
    assert choose_ports(s3=ports.s3).s3 == ports.s3
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.s3))
        taken.listen()
        with pytest.raises(StorageError):
            choose_ports(s3=ports.s3)


@pytest.mark.integration
def test_bucket_answers_only_signed_requests_with_its_keys(s3_storage: SeaweedS3) -> None:
    assert s3_storage.bucket_ready()
    impostor = SeaweedS3(s3_storage.state_dir, secret_key="not-the-secret")
    assert impostor.ports == s3_storage.ports
    assert not impostor.bucket_ready()
    conn = http.client.HTTPConnection(s3_storage.host, s3_storage.s3_port, timeout=2)
    try:
        conn.request("HEAD", f"/{s3_storage.bucket}")
        assert conn.getresponse().status == 403
    finally:
        conn.close()


@pytest.mark.integration
def test_records_survive_restarting_broker_and_storage(
    s3_storage: SeaweedS3, durable_broker: EmbeddedBroker, durable_settings: Settings
) -> None:
    topic = durable_settings.topic("labels")
    sent = [f"keep-{i:03d}" for i in range(60)]
    with EventProducer(durable_settings, "durable-test") as producer:
        for event_id in sent:
            producer.send(topic, LabelEvent(event_id=event_id, model="m", label=1.0,
                                            event_time=datetime.now(UTC)), key=event_id)
    endpoint = s3_storage.endpoint
    durable_broker.stop(kill=True)
    assert s3_storage.stop()
    s3_storage.start()
    assert s3_storage.endpoint == endpoint  # same ports, so the broker's settings still hold
    durable_broker.start()

    got: set[str] = set()
    with TopicTail(durable_settings, {topic: None}, name="durable-read") as tail:
        deadline = time.monotonic() + 30
        while got != set(sent) and time.monotonic() < deadline:
            got |= {r.key.decode() for r in tail.poll(timeout=0.5) if r.key is not None}
    assert got == set(sent)
