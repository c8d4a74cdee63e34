"""The typed sections of the configuration and the old environment names.

Old names keep working for one release with a warning that names the new variable,
the new one wins when both are set, and a refused name stops the load with a message
naming its successor.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.settings import (
    LEGACY_ENV,
    REFUSED_ENV,
    LegacyEnvError,
    Settings,
    UnknownSettingError,
    env_name,
    load_settings,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("DRIFTLOOP_", "OTEL_")):
            monkeypatch.delenv(name)


def test_every_old_name_points_at_a_real_setting() -> None:
    for old, path in LEGACY_ENV.items():
        section = Settings.model_fields[path[0]].annotation
        assert path[1] in section.model_fields, old  # type: ignore[union-attr]
        assert env_name(path) != old


def test_an_old_name_still_works_with_a_warning_naming_the_new_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DRIFTLOOP_FEAST_REPO", str(tmp_path / "repo"))
    monkeypatch.setenv("DRIFTLOOP_FEAST_VARIANT", "real")
    monkeypatch.setenv("DRIFTLOOP_PROGRESS", "log")
    with pytest.warns(FutureWarning, match="DRIFTLOOP_FEAST_REPO .* DRIFTLOOP_FEAST__REPO"):
        s = load_settings()
    assert s.feast.repo == tmp_path / "repo"
    assert s.feast.variant == "real"
    assert s.observability.progress == "log"


def test_the_new_name_wins_over_the_old_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DRIFTLOOP_OTEL_FILE", str(tmp_path / "old.jsonl"))
    monkeypatch.setenv("DRIFTLOOP_OBSERVABILITY__OTEL_FILE", str(tmp_path / "new.jsonl"))
    with pytest.warns(FutureWarning, match="DRIFTLOOP_OBSERVABILITY__OTEL_FILE"):
        s = load_settings()
    assert s.observability.otel_file == tmp_path / "new.jsonl"


def test_an_old_name_under_yaml_beats_the_file_but_not_the_new_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "driftloop.yaml"
    path.write_text("feast:\n  repo: from-yaml\n  project: p1\n")
    monkeypatch.setenv("DRIFTLOOP_FEAST_REPO", "from-old-env")
    with pytest.warns(FutureWarning):
        s = load_settings(path)
    assert (s.feast.repo, s.feast.project) == (Path("from-old-env"), "p1")


def test_a_refused_name_stops_the_load_and_names_its_successor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for old, new in REFUSED_ENV.items():
        monkeypatch.setenv(old, "1")
        with pytest.raises(LegacyEnvError, match=new):
            load_settings()
        monkeypatch.delenv(old)


def test_otel_variables_are_read_once_into_the_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "file")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "svc")
    monkeypatch.setenv("NOT_OTEL_X", "y")
    s = load_settings()
    assert s.observability.otel == {"OTEL_TRACES_EXPORTER": "file", "OTEL_SERVICE_NAME": "svc"}
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")  # later changes are not seen
    assert s.observability.otel["OTEL_TRACES_EXPORTER"] == "file"


def test_the_fault_switch_is_read_from_its_new_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not load_settings().faults.crash_after_alias_move
    monkeypatch.setenv("DRIFTLOOP_FAULTS__CRASH_AFTER_ALIAS_MOVE", "1")
    assert load_settings().faults.crash_after_alias_move


def test_the_old_feature_repo_key_maps_to_feast_repo(tmp_path: Path) -> None:
    path = tmp_path / "driftloop.yaml"
    path.write_text("feature_repo: /app/feature_repo\n")
    with pytest.warns(FutureWarning, match="feast.repo"):
        s = load_settings(path)
    assert s.feast.repo == Path("/app/feature_repo")


def test_model_sections_are_typed_and_strict(tmp_path: Path) -> None:
    path = tmp_path / "driftloop.yaml"
    path.write_text(
        "models:\n  fraud:\n"
        "    drift: {window_events: 1000, critical_features: [channel], cooldown: PT5M}\n"
        "    training: {max_steps: 50, optimizer: {lr: 0.01}}\n"
        "    retrain: {min_fresh_rows: 10}\n"
        "    shadow: {min_pairs: 100, look_every: 100}\n"
        "    rollback: {window: 3000}\n"
        "    online: false\n")
    fraud = load_settings(path).model("fraud")
    assert fraud.drift.window_events == 1000 and fraud.drift.cooldown.total_seconds() == 300
    assert fraud.drift.critical_features == frozenset({"channel"})
    assert fraud.training.max_steps == 50 and fraud.training.optimizer.lr == 0.01
    assert fraud.training.batch_size == load_settings().model("x").training.batch_size
    assert fraud.retrain.min_fresh_rows == 10 and fraud.retrain.attempts == 3
    assert (fraud.shadow.min_pairs, fraud.rollback.window) == (100, 3000)
    assert not fraud.online.enabled
    for section, bad in [("training", "{optimiser: {lr: 1}}"), ("retrain", "{min_rows: 1}"),
                         ("shadow", "{min_pair: 1}"), ("rollback", "{windw: 1}"),
                         ("online", "{estimater: x}"), ("drift", "{window_event: 1}")]:
        path.write_text(f"models:\n  fraud:\n    {section}: {bad}\n")
        with pytest.raises(UnknownSettingError, match=rf"'models\.fraud\.{section}\."):
            load_settings(path)
