"""The typed sections of the configuration, and the names used before it existed.

Nothing was released under the old names, so none is read: each is refused like any
unknown ``DRIFTLOOP_*`` variable, with the new name as the suggestion.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.settings import UnknownSettingError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("DRIFTLOOP_", "OTEL_")):
            monkeypatch.delenv(name)


OLD_NAMES = {  # the names used before this configuration, and what replaced them
    "DRIFTLOOP_FEAST_REPO": "DRIFTLOOP_FEAST__REPO",
    "DRIFTLOOP_FEATURE_REPO": "DRIFTLOOP_FEAST__REPO",
    "DRIFTLOOP_FEAST_VARIANT": "DRIFTLOOP_FEAST__VARIANT",
    "DRIFTLOOP_FEAST_PROJECT": "DRIFTLOOP_FEAST__PROJECT",
    "DRIFTLOOP_FEAST_REGISTRY_URL": "DRIFTLOOP_FEAST__REGISTRY_URL",
    "DRIFTLOOP_FEAST_REDIS": "DRIFTLOOP_FEAST__REDIS",
    "DRIFTLOOP_OTEL_FILE": "DRIFTLOOP_OBSERVABILITY__OTEL_FILE",
    "DRIFTLOOP_PROGRESS": "DRIFTLOOP_OBSERVABILITY__PROGRESS",
    "DRIFTLOOP_ONLINE_SNAPSHOT_KEY": "DRIFTLOOP_ONLINE__SNAPSHOT_KEY_FILE",
    "DRIFTLOOP_HEALTH_PORT": "DRIFTLOOP_HTTP__PORT",
    "DRIFTLOOP_HEALTH_HOST": "DRIFTLOOP_HTTP__HOST",
    "DRIFTLOOP_TEST_CRASH_AFTER_ALIAS": "DRIFTLOOP_FAULTS__CRASH_AFTER_ALIAS_MOVE",
}


def test_an_old_name_is_refused_and_the_new_one_suggested(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # catches: an old name read (or dropped in silence) instead of refused, and a
    # suggestion that does not lead to the name that replaced it
    for old, new in OLD_NAMES.items():
        monkeypatch.setenv(old, str(tmp_path / "x"))
        with pytest.raises(UnknownSettingError) as caught:
            load_settings()
        assert str(caught.value).endswith(f"environment variable {old} (did you mean {new}?)")
        monkeypatch.delenv(old)
        valid = {"PORT": "1", "MOVE": "1", "PROGRESS": "log", "VARIANT": "real"}
        monkeypatch.setenv(new, next((v for k, v in valid.items() if new.endswith(k)), "x"))
        load_settings()  # the new name is read
        monkeypatch.delenv(new)


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


def test_the_old_feature_repo_key_is_refused_pointing_at_feast_repo(tmp_path: Path) -> None:
    # catches: the old top-level key mapped to feast.repo, or ignored, instead of refused
    path = tmp_path / "driftloop.yaml"
    path.write_text("feature_repo: /app/feature_repo\n")
    with pytest.raises(UnknownSettingError,
                       match=r"'feature_repo' in .* \(did you mean 'feast\.repo'\?\)"):
        load_settings(path)


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
