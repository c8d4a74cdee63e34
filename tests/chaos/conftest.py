"""Chaos fixtures: a durable broker on a loopback S3 server, and the reliability ledger.

``s3_storage`` (one per session, from ``tests/conftest.py``) is a ``weed mini`` S3
server; ``durable_broker`` is a
fresh embedded broker per test whose log lives in that bucket, so a test may
``kill -9`` it and start it again on the same port. ``ledger`` records what a test
injected; the session hooks in ``tests/conftest.py`` write ``docs/RELIABILITY.md`` from
it at the end (see :mod:`chaos.ledger`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.ledger import LEDGER_KEY, FaultRecorder
from streams.broker import EmbeddedBroker, free_port
from streams.durable import SeaweedS3
from streams.durable import durable_broker as make_durable_broker
from streams.settings import Settings, load_settings


@pytest.fixture
def ledger(request: pytest.FixtureRequest) -> FaultRecorder:
    """Records faults for this test: ``ledger.fault(kind, injected=, survived=, lost=)``."""
    return request.config.stash[LEDGER_KEY].recorder(request.node.nodeid)


@pytest.fixture
def durable_broker(s3_storage: SeaweedS3, tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A started broker on a free port whose records live in ``s3_storage``."""
    broker = make_durable_broker(tmp_path / "broker", free_port(), s3_storage)
    broker.start()
    yield broker
    broker.stop(kill=True)  # durable storage: nothing to flush, and SIGTERM waits on clients


@pytest.fixture
def durable_settings(durable_broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    """Settings for the durable broker with this test's own topics (labels, dead letters)."""
    from streams.admin import create_topics

    settings = load_settings(
        kafka={"bootstrap_servers": durable_broker.address},
        topics={"prefix": f"c{uuid.uuid4().hex[:10]}.", "partitions": 3},
        state_dir=tmp_path / "state",
        registry_uri=str(tmp_path / "registry"),
    )
    create_topics(settings, topics=[settings.topic("labels"), settings.topic("deadletter")])
    return settings


WORKER_MODULES = ["chaos.workers.drift", "chaos.workers.train", "chaos.workers.shadow",
                  "chaos.workers.online", "chaos.workers.ingest"]


@pytest.fixture(scope="session")
def spawner(pytestconfig: pytest.Config) -> float:
    """The fork server the service lives are forked from (services imported once).

    Returns the seconds its start took (imports of torch, feast, river and the services).
    """
    from chaos.kills import start_fork_server

    root = pytestconfig.rootpath
    return start_fork_server(WORKER_MODULES, [str(root), str(root / "tests")])
