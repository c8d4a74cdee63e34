"""``driftloop bootstrap`` the way a deployment runs it: a subprocess, twice.

Real parts: the embedded broker, a Feast repository (the embedded variant) in a temp
directory, the file registry and torch training. The first run creates the topics,
loads generated history, takes a snapshot and trains champion v1; the second finds the
champion and changes nothing (no second history load, no v2). Both run with an empty
working directory and HOME, which must stay empty: the containers have a read-only root
filesystem and may write only to their volumes (state dir, Feast data, registry).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest

from services.cli.context import UserError
from services.features.feast_repo import copy_repo, open_store
from services.registry.store import ModelRegistry
from streams.admin import list_topics
from streams.broker import EmbeddedBroker
from streams.settings import TOPIC_NAMES, load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _env(broker: EmbeddedBroker, root: Path, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOOP_", "OTEL_"))}
    env.update({
        "DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS": broker.address,
        "DRIFTLOOP_TOPICS__PREFIX": prefix,
        "DRIFTLOOP_FEAST__REPO": str(root / "feature_repo"),
        "DRIFTLOOP_STATE_DIR": str(root / "state"),
        "DRIFTLOOP_REGISTRY_URI": str(root / "registry"),
        "DRIFTLOOP_OBSERVABILITY__PROGRESS": "none",
        "HOME": str(root / "home"),
        "PYTHONWARNINGS": "ignore",
        "COLUMNS": "200",
    })
    return env


def _driftloop(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    driftloop = Path(sys.executable).parent / "driftloop"
    return subprocess.run([str(driftloop), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240, check=False)


def _label_rows(repo: Path) -> int:
    from services.cli.bootstrap import history_rows

    return history_rows(open_store(load_settings(feast={"repo": repo})), "fraud")


def test_bootstrap_twice_trains_v1_once_and_writes_only_its_volumes(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    copy_repo(tmp_path / "feature_repo")
    repo_files = sorted(p.name for p in (tmp_path / "feature_repo").iterdir())
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    prefix = f"b{uuid.uuid4().hex[:10]}."
    env = _env(broker, tmp_path, prefix)

    waited = _driftloop(env, cwd, "bootstrap", "--model", "fraud", "--wait", "--timeout", "0")
    assert waited.returncode == 1, waited.stderr  # what a service's initContainer sees
    assert "fraud has no champion" in waited.stderr

    bootstrap = ("bootstrap", "--model", "fraud", "--generate", "2000", "--max-steps", "30")
    first = _driftloop(env, cwd, *bootstrap)
    assert first.returncode == 0, first.stderr[-3000:]
    n = len(TOPIC_NAMES)
    for step in (f"topics: {n} ready ({n} created", "champion: none yet",
                 "history: 2000 labelled events loaded", "snapshot: fraud-",
                 "done: champion v1"):
        assert f"bootstrap fraud: {step}" in first.stderr, (step, first.stderr[-3000:])
    registry = ModelRegistry(str(tmp_path / "registry"))
    assert registry.get_alias("fraud", "champion") == 1
    settings = load_settings(kafka={"bootstrap_servers": broker.address},
                             topics={"prefix": prefix})
    assert set(settings.all_topics()) <= set(list_topics(settings))
    rows = _label_rows(tmp_path / "feature_repo")
    assert rows == 2000

    second = _driftloop(env, cwd, *bootstrap)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"topics: {n} ready (0 created, {n} already there" in second.stderr
    assert "champion: v1 already; nothing else to do" in second.stderr
    assert "history:" not in second.stderr and "train:" not in second.stderr
    assert registry.get_alias("fraud", "champion") == 1
    assert registry.list_versions("fraud") == [1]
    assert _label_rows(tmp_path / "feature_repo") == rows  # history not loaded twice

    # read-only root filesystem: nothing outside the configured state, data and registry
    assert list(cwd.iterdir()) == [] and list(home.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "feature_repo").iterdir()) == repo_files  # data/


# ---------------------------------------------------------------- history, in process

@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object]:
    """An applied Feast repository with no history, and its settings."""
    from services.cli.bootstrap import ensure_feast

    root = tmp_path_factory.mktemp("bootstrap-history")
    copy_repo(root / "feature_repo")
    settings = load_settings(feast={"repo": root / "feature_repo"}, state_dir=root / "state")
    store, _ = ensure_feast(settings)
    return store, settings


def _history(rows: int = 50) -> pd.DataFrame:
    from services.features.generate import Generator, GeneratorConfig, now_utc

    return Generator(GeneratorConfig(seed=3)).history(now_utc(), rows)


def test_no_history_and_no_source_is_one_clear_error(empty_store: tuple) -> None:
    from services.cli.bootstrap import HistorySource, ensure_history

    store, settings = empty_store
    with pytest.raises(UserError, match="no history for fraud: give --history FILE or "
                                        "--generate N"):
        ensure_history(store, settings, "fraud", HistorySource())


def test_a_history_file_must_fit_the_views_and_the_task(
    empty_store: tuple, tmp_path: Path
) -> None:
    from services.cli.bootstrap import history_rows, load_history_file

    store, settings = empty_store
    frame = _history()
    missing = tmp_path / "missing.parquet"
    frame.drop(columns=["amount"]).to_parquet(missing)
    with pytest.raises(UserError, match=r"missing column 'amount'"):
        load_history_file(store, settings, "fraud", str(missing))
    bad = tmp_path / "bad.csv"
    frame.assign(is_fraud=frame["is_fraud"].where(frame.index != 7, 5)).to_csv(bad, index=False)
    with pytest.raises(UserError, match=r"is_fraud.*\(invalid_value\)"):
        load_history_file(store, settings, "fraud", str(bad))
    assert history_rows(store, "fraud") == 0  # nothing written by a refused file
    good = tmp_path / "good.csv"
    frame.to_csv(good, index=False)
    assert load_history_file(store, settings, "fraud", str(good)) == len(frame)
    assert history_rows(store, "fraud") == len(frame)
