"""``data generate`` and ``snapshot create`` through the CLI, on the real broker."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
from confluent_kafka import Consumer
from typer.testing import CliRunner

from services.cli.data import data_app, snapshot_app
from services.features.feast_repo import (
    copy_repo,
    drop_project,
    open_repo,
)
from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::RuntimeWarning")]


def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(data_app, name="data")
    app.add_typer(snapshot_app, name="snapshot")
    return app


def _count(settings: Settings, topic: str, expected: int, timeout: float = 30) -> int:
    consumer = Consumer(settings.kafka.consumer_config(f"count-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + timeout
    try:
        while seen < expected and time.monotonic() < deadline:
            seen += sum(1 for m in consumer.consume(500, timeout=0.5) if m.error() is None)
    finally:
        consumer.close()
    return seen


@pytest.mark.parametrize("variant", ["embedded", pytest.param("real", marks=pytest.mark.services)])
def test_generate_then_snapshot(
    variant: str,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    real: dict[str, str] = {}
    if variant == "real":
        dsn = request.getfixturevalue("postgres_dsn")
        real = {"registry_url": f"{dsn}?sslmode=disable",
                "redis": request.getfixturevalue("redis_url")}
        monkeypatch.setenv("DRIFTLOOP_FEAST__REGISTRY_URL", real["registry_url"])
        monkeypatch.setenv("DRIFTLOOP_FEAST__REDIS", real["redis"])
    project = f"t_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("DRIFTLOOP_FEAST__PROJECT", project)
    monkeypatch.setenv("DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS", settings.kafka.bootstrap_servers)
    monkeypatch.setenv("DRIFTLOOP_TOPICS__PREFIX", settings.topics.prefix)
    repo = copy_repo(tmp_path / "repo")
    runner = CliRunner()
    common = ["--repo", str(repo), "--variant", variant]
    store: Any = None
    try:
        result = runner.invoke(
            _app(),
            [
                "data",
                "generate",
                "--seed",
                "3",
                "--history-rows",
                "3000",
                "--live-events",
                "200",
                "--history-end",
                "2026-06-01T00:00:00",
                "--covariate-features",
                "amount",
                "--covariate-at",
                "1",
                "--mean-shift",
                "1.5",
                *common,
            ],
        )
        assert result.exit_code == 0, result.output
        store = open_repo(variant, repo_path=repo, project=project, **real)
        labels = pd.read_parquet(repo / "data" / "offline" / "fraud_labels")
        assert len(labels) == 3000
        assert _count(settings, settings.topic("features"), 200) == 200
        assert _count(settings, settings.topic("labels"), 200) == 200

        args = [
            "snapshot",
            "create",
            "--model",
            "fraud",
            "--start",
            "2026-05-31T00:00:00",
            "--end",
            "2026-06-01T00:00:00",
            "--no-profile",
            *common,
        ]
        first = runner.invoke(_app(), args)
        assert first.exit_code == 0, first.output
        snapshot_id = first.stdout.strip().splitlines()[-1]
        assert snapshot_id.startswith("fraud-")
        again = runner.invoke(_app(), args)
        assert again.stdout.strip().splitlines()[-1] == snapshot_id
        assert "already there" in again.output

        bad = runner.invoke(
            _app(),
            ["data", "generate", "--covariate-features", "nope", "--covariate-at", "0", *common],
        )
        assert bad.exit_code == 2 and "unknown feature" in bad.output
    finally:
        if store is not None:
            drop_project(store)


def test_data_compact_merges_parts_and_keeps_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime, timedelta

    from services.features.feast_repo import apply_repo, load_layout
    from services.features.generate import Generator, GeneratorConfig
    from services.features.history import write_history
    from services.features.parts import list_parts, partitions
    from services.features.snapshot import build_training_frame

    project = f"t_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("DRIFTLOOP_FEAST__PROJECT", project)
    repo = copy_repo(tmp_path / "repo")
    store = open_repo("embedded", repo_path=repo, project=project)
    apply_repo(store)
    end = datetime(2026, 5, 2, 0, 0, 10, tzinfo=UTC)  # 3,000 rows at 100/s: two dates
    for seed, mode in ((1, "overwrite"), (2, "append"), (3, "append")):
        write_history(store, Generator(GeneratorConfig(seed=seed)).history(end, 3000),
                      mode=mode)  # type: ignore[arg-type]
    layout = load_layout(store, "fraud")
    views = (*layout.views, layout.labels)
    assert all(len(list_parts(v.path)) == 6 for v in views)
    window = (end - timedelta(days=1), end + timedelta(days=1))
    before, labelled = build_training_frame(store, layout, *window)
    assert labelled == 9000 and len(before) == 9000

    result = CliRunner().invoke(
        _app(), ["data", "compact", "--model", "fraud", "--before", "2026-05-02",
                 "--repo", str(repo), "--variant", "embedded"])
    assert result.exit_code == 0, result.output
    assert "fraud_card: 1 dates compacted, 6 -> 4 parts (6000 rows merged)" in result.output
    for view in views:  # the closed date is one part; the open one is left as it was
        counts = [len(list(d.glob("part-*.parquet"))) for d in partitions(view.path)]
        assert counts == [1, 3], view.name
    after, _ = build_training_frame(store, layout, *window)
    pd.testing.assert_frame_equal(after, before, check_exact=True)

    unknown = CliRunner().invoke(_app(), ["data", "compact", "--model", "nope",
                                          "--repo", str(repo), "--variant", "embedded"])
    assert unknown.exit_code == 2 and "error:" in unknown.output
    drop_project(store)
