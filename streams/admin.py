"""Topic administration: create every driftloop topic, idempotently."""

from __future__ import annotations

import time
from concurrent.futures import Future

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.settings import Settings


def admin_client(settings: Settings) -> AdminClient:
    """An admin client with the same connection settings as the services."""
    return AdminClient(settings.kafka.client_config())


def create_topics(
    settings: Settings,
    *,
    partitions: int | None = None,
    topics: list[str] | None = None,
    timeout: float = 30.0,
) -> dict[str, str]:
    """Create ``topics`` (default: all of them); returns ``{topic: "created"|"exists"}``.

    Existing topics are left as they are, so running it twice is harmless.
    """
    client = admin_client(settings)
    names = topics or settings.all_topics()
    count = partitions or settings.topics.partitions
    futures = client.create_topics(
        [
            NewTopic(name, num_partitions=count,
                     replication_factor=settings.topics.replication_factor)
            for name in names
        ],
        request_timeout=timeout,
    )
    result = _outcomes(futures, timeout, ("created", "exists"), KafkaError.TOPIC_ALREADY_EXISTS)
    wait_for_topics(settings, names, timeout=timeout)
    return result


def wait_for_topics(settings: Settings, names: list[str], *, timeout: float = 30.0) -> None:
    """Block until the broker's metadata lists every topic in ``names``."""
    client = admin_client(settings)
    deadline = time.monotonic() + timeout
    missing = set(names)
    while time.monotonic() < deadline:
        metadata = client.list_topics(timeout=5)
        missing = {n for n in names if n not in metadata.topics}
        if not missing:
            return
        time.sleep(0.1)
    raise TimeoutError(f"topics not visible after {timeout:.0f}s: {sorted(missing)}")


def list_topics(settings: Settings, timeout: float = 10.0) -> dict[str, int]:
    """Topic name to partition count, as the broker reports them."""
    metadata = admin_client(settings).list_topics(timeout=timeout)
    return {name: len(t.partitions) for name, t in metadata.topics.items()}


def delete_topics(settings: Settings, names: list[str], timeout: float = 30.0) -> dict[str, str]:
    """Delete ``names``; returns ``{topic: "deleted"|"absent"}``."""
    client = admin_client(settings)  # kept alive until every future has its answer
    futures = client.delete_topics(names, request_timeout=timeout)
    return _outcomes(futures, timeout, ("deleted", "absent"), KafkaError.UNKNOWN_TOPIC_OR_PART)


def _outcomes(
    futures: dict[str, Future[None]], timeout: float, words: tuple[str, str], harmless: int
) -> dict[str, str]:
    """Each topic's answer: ``words[0]`` when done, ``words[1]`` when the broker answered
    the ``harmless`` error code (already there, already gone); any other error raises."""
    result: dict[str, str] = {}
    for name, future in futures.items():
        try:
            future.result(timeout)
            result[name] = words[0]
        except KafkaException as exc:
            if exc.args[0].code() != harmless:
                raise
            result[name] = words[1]
    return result
