"""Shared fixtures: one embedded broker per test session, isolated topics per test.

Also the reliability ledger's session hooks (here, not in ``tests/chaos``: under
pytest-xdist the controller collects nothing, so only this conftest is loaded there).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chaos.ledger import LEDGER_KEY, Ledger, session_finished, worker_finished

import services.features  # noqa: F401  # before any test imports Feast: see feast_checks
from streams.broker import EmbeddedBroker, free_port
from streams.durable import SeaweedS3, StorageError, weed_binary
from streams.settings import Settings, load_settings

REQUIRE_SERVICES = os.environ.get("DRIFTLOOP_REQUIRE_SERVICES") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.stash[LEDGER_KEY] = Ledger()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Soak tests (long fuzz budgets) run only when a ``-m`` expression names ``soak``;
    ``make test`` and the other targets never run them."""
    if "soak" in (config.getoption("markexpr", "") or ""):
        return
    soak = [item for item in items if item.get_closest_marker("soak") is not None]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if item.get_closest_marker("soak") is None]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session_finished(session.config)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if path is not None and reporter is not None:
        records = len(session.config.stash[LEDGER_KEY].records)
        reporter.write_line(f"reliability ledger: {records} record(s) -> {path}")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist: a worker ended; keep the ledger records it passed on."""
    worker_finished(node.config, getattr(node, "workeroutput", {}))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A real Kafka-protocol broker (tansu, in memory) on a free loopback port."""
    embedded = EmbeddedBroker(tmp_path_factory.mktemp("broker"), port=free_port())
    embedded.start()
    yield embedded
    embedded.stop()


@pytest.fixture
def settings(broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    """Settings pointing at the session broker, with topics of this test's own prefix."""
    from streams.admin import create_topics

    prefix = f"t{uuid.uuid4().hex[:10]}."
    s = load_settings(
        kafka={"bootstrap_servers": broker.address},
        topics={"prefix": prefix, "partitions": 3},
        state_dir=tmp_path / "state",
        registry_uri=str(tmp_path / "registry"),
    )
    create_topics(s)
    return s


def _reachable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def require_service(name: str, host: str, port: int) -> None:
    """Skip visibly when a local service is missing, or fail when CI requires it."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}, and DRIFTLOOP_REQUIRE_SERVICES=1 requires it")
    pytest.skip(f"{message} (set DRIFTLOOP_REQUIRE_SERVICES=1 to make this a failure)")


@pytest.fixture(scope="session")
def s3_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A loopback S3 server (``weed mini``) with one bucket, for the whole session: the
    durable broker's storage (chaos) and the registry's object store (integration)."""
    try:
        weed_binary()
    except StorageError as exc:
        if REQUIRE_SERVICES:
            pytest.fail(f"{exc}, and DRIFTLOOP_REQUIRE_SERVICES=1 requires it")
        pytest.skip(f"{exc} (set DRIFTLOOP_REQUIRE_SERVICES=1 to make this a failure)")
    storage = SeaweedS3(tmp_path_factory.mktemp("seaweed"))
    storage.start()
    yield storage
    storage.stop()


@pytest.fixture
def postgres_dsn() -> str:
    """The local PostgreSQL (trust auth, database ``test``)."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def redis_url() -> str:
    """The local Redis."""
    require_service("Redis", "127.0.0.1", 6379)
    return "127.0.0.1:6379"
