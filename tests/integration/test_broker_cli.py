"""The embedded broker and topic commands, through the real CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from streams.admin import create_topics, list_topics
from streams.broker import BrokerError, EmbeddedBroker, free_port, port_accepts
from streams.settings import TOPIC_NAMES, Settings

pytestmark = pytest.mark.integration


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args], capture_output=True, text=True,
        env={**os.environ, **env}, timeout=120,
    )


def test_broker_start_status_stop_through_the_cli(tmp_path: Path) -> None:
    port = free_port()
    env = {"DRIFTLOOP_STATE_DIR": str(tmp_path), "DRIFTLOOP_BROKER__PORT": str(port),
           "DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"}
    started = _cli("broker", "start", env=env)
    try:
        assert started.returncode == 0, started.stderr
        assert port_accepts("127.0.0.1", port)
        assert (tmp_path / f"broker-{port}.pid").exists()
        status = _cli("broker", "status", env=env)
        assert status.returncode == 0 and "running" in status.stderr
        created = _cli("topics", "create", "--partitions", "2", env=env)
        assert created.returncode == 0, created.stderr
        assert created.stdout.count("created") == len(TOPIC_NAMES)
        again = _cli("topics", "create", env=env)
        assert again.returncode == 0 and again.stdout.count("exists") == len(TOPIC_NAMES)
    finally:
        stopped = _cli("broker", "stop", env=env)
    assert stopped.returncode == 0 and "stopped" in stopped.stderr
    assert not port_accepts("127.0.0.1", port)
    status = _cli("broker", "status", env=env)
    assert status.returncode == 1 and "stopped" in status.stderr


def test_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = EmbeddedBroker(tmp_path, port=port)
        with pytest.raises(BrokerError, match="already taken"):
            broker.start()


def test_topics_create_is_idempotent(settings: Settings) -> None:
    again = create_topics(settings)
    assert set(again.values()) == {"exists"}
    topics = list_topics(settings)
    assert all(topics[name] == 3 for name in settings.all_topics())


def test_help_explains_every_command() -> None:
    result = subprocess.run([sys.executable, "-m", "services.cli.main", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("broker", "topics", "run", "demo"):
        assert command in result.stdout
