"""A key the configuration does not define is refused at every level, never ignored.

The error names the key (its full path), where it came from (the YAML file, or the
environment variable) and the closest known key; the CLI prints it as one ``error:``
line. Each test names, in a comment, the bug it catches.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streams.settings import NOT_SETTINGS_ENV, Settings, UnknownSettingError, load_settings
from streams.settings_keys import variable_path

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(("DRIFTLOOP_", "OTEL_")):
            monkeypatch.delenv(name)


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "driftloop.yaml"
    path.write_text(text)
    return path


def test_a_top_level_typo_in_the_file_names_the_key_the_file_and_the_key_meant(
    tmp_path: Path,
) -> None:
    # catches: the top level ignoring unknown keys (``extra="ignore"``), which loaded the
    # defaults and sent every command to 127.0.0.1:19092
    path = _yaml(tmp_path, "kafak:\n  bootstrap_servers: kafka-a:9092\n")
    with pytest.raises(UnknownSettingError) as caught:
        load_settings(path)
    assert str(caught.value) == (
        f"unknown setting 'kafak' in {path} (did you mean 'kafka'?)")


def test_a_nested_typo_names_its_whole_path_and_the_file(tmp_path: Path) -> None:
    # catches: a nested unknown key reported by pydantic without its source (the file),
    # or the walk stopping at ``models.<name>`` (a user-chosen key, not a typo)
    path = _yaml(tmp_path, "models:\n  fraud:\n    drift:\n      windw_events: 500\n")
    with pytest.raises(UnknownSettingError) as caught:
        load_settings(path)
    assert str(caught.value) == (
        f"unknown setting 'models.fraud.drift.windw_events' in {path} "
        "(did you mean 'models.fraud.drift.window_events'?)")


def test_every_typo_of_a_file_is_named_and_a_misplaced_key_points_to_its_section(
    tmp_path: Path,
) -> None:
    # catches: only the first problem reported (one fix, one rerun per typo), and a key
    # put in the wrong section getting no hint
    path = _yaml(tmp_path, "state_dri: /x\nbootstrap_servers: k:9092\n"
                           "models:\n  fraud:\n    online:\n      spec:\n"
                           "        features: [{name: a, knd: numeric}]\n")
    with pytest.raises(UnknownSettingError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert "'state_dri' in " in message and "(did you mean 'state_dir'?)" in message
    assert "(did you mean 'kafka.bootstrap_servers'?)" in message
    assert "'models.fraud.online.spec.features.0.knd'" in message


def test_an_unknown_driftloop_variable_names_the_variable_and_the_one_meant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # catches: the environment source reading only the names it knows, so a misspelt
    # override was dropped in silence
    monkeypatch.setenv("DRIFTLOOP_STATE_DRI", "/var/lib/driftloop")
    with pytest.raises(UnknownSettingError) as caught:
        load_settings()
    assert str(caught.value) == (
        "unknown setting 'state_dri' in environment variable DRIFTLOOP_STATE_DRI "
        "(did you mean DRIFTLOOP_STATE_DIR?)")
    monkeypatch.delenv("DRIFTLOOP_STATE_DRI")
    monkeypatch.setenv("DRIFTLOOP_MODELS__FRAUD__DRIFT__WINDW_EVENTS", "500")
    with pytest.raises(UnknownSettingError, match=re.escape(
            "(did you mean DRIFTLOOP_MODELS__FRAUD__DRIFT__WINDOW_EVENTS?)")):
        load_settings()


def test_a_section_given_as_json_in_one_variable_has_its_keys_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # catches: a whole section set as JSON (``DRIFTLOOP_KAFKA='{...}'``) bypassing the
    # check, its typo then reported without the variable that holds it
    monkeypatch.setenv("DRIFTLOOP_KAFKA", '{"bootstrap_server": "kafka-a:9092"}')
    with pytest.raises(UnknownSettingError, match=re.escape(
            "'kafka.bootstrap_server' in environment variable DRIFTLOOP_KAFKA "
            "(did you mean 'kafka.bootstrap_servers'?)")):
        load_settings()
    monkeypatch.setenv("DRIFTLOOP_KAFKA", '{"bootstrap_servers": "kafka-a:9092"}')
    assert load_settings().kafka.bootstrap_servers == "kafka-a:9092"


def test_a_correct_file_and_known_variables_still_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # catches: a check that refuses what is valid: free keys (kafka.extra,
    # observability.otel, online params), model names, shorthands (online: false), a
    # list of models, the loader's DRIFTLOOP_CONFIG and the test suite's variables
    path = _yaml(tmp_path, (
        "kafka:\n  bootstrap_servers: kafka-a:9092\n  extra:\n    socket.keepalive.enable: true\n"
        "state_dir: /var/lib/driftloop\n"
        "models:\n  fraud:\n    task: binary\n    online: false\n"
        "    drift: {window_events: 500}\n"
        "  churn:\n    online:\n      params: {l2: 0.1}\n"
        "      spec: {features: [{name: a}, {name: b, kind: categorical}]}\n"))
    monkeypatch.setenv("DRIFTLOOP_CONFIG", str(path))
    monkeypatch.setenv("DRIFTLOOP_MODELS__FRAUD__DRIFT__PSI_THRESHOLD", "0.3")
    monkeypatch.setenv("DRIFTLOOP_KAFKA__EXTRA", '{"socket.keepalive.enable": false}')
    monkeypatch.setenv("OTEL_SERVICE_NAME", "svc")
    for name in NOT_SETTINGS_ENV:
        monkeypatch.setenv(name, str(path) if name == "DRIFTLOOP_CONFIG" else "1")
    s = load_settings()
    assert s.kafka.bootstrap_servers == "kafka-a:9092"
    assert s.kafka.extra == {"socket.keepalive.enable": False}
    assert s.model("fraud").drift.window_events == 500
    assert s.model("fraud").drift.psi_threshold == 0.3
    assert [f.name for f in s.model("churn").online.spec.features] == ["a", "b"]  # type: ignore[union-attr]
    assert s.observability.otel == {"OTEL_SERVICE_NAME": "svc"}


def test_an_unknown_keyword_from_code_is_refused_too() -> None:
    # catches: the top level ignoring unknown keys given as arguments (extra="ignore")
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="kafak"):
        load_settings(kafak={"bootstrap_servers": "x"})


def _driftloop(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``driftloop ARGS`` as a user runs it: a child process, this checkout's code."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOOP_", "OTEL_"))}
    base.update(env, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "services.cli.main", *args], env=base,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_the_cli_prints_one_error_line_for_each_kind_of_typo(tmp_path: Path) -> None:
    # catches: the CLI letting UnknownSettingError out as a traceback, or printing it
    # as the multi-line "invalid settings" report without the source
    _yaml(tmp_path, "kafak:\n  bootstrap_servers: kafka-a:9092\n")
    in_file = _driftloop(tmp_path, "--config", "driftloop.yaml", "topics", "list")
    assert _one_error_line(in_file) == (
        "error: unknown setting 'kafak' in driftloop.yaml (did you mean 'kafka'?)")
    in_env = _driftloop(tmp_path, "topics", "list", DRIFTLOOP_STATE_DRI="/x")
    assert _one_error_line(in_env) == (
        "error: unknown setting 'state_dri' in environment variable DRIFTLOOP_STATE_DRI "
        "(did you mean DRIFTLOOP_STATE_DIR?)")
    (tmp_path / "bad.yaml").write_text("kafka: [\n")
    not_yaml = _driftloop(tmp_path, "--config", "bad.yaml", "topics", "list")
    assert "bad.yaml is not valid YAML" in _one_error_line(not_yaml)


_READS = re.compile(
    r"""(?:environ(?:\.get)?[\[(]\s*|getenv\(\s*|_ENV\s*=\s*|export\s+)["']?(DRIFTLOOP_\w+)""")


def _read_names() -> dict[str, list[str]]:
    """Every DRIFTLOOP_* name the code reads or exports, and where."""
    found: dict[str, list[str]] = {}
    files = [p for d in ("services", "streams", "tests", "benchmarks")
             for p in (ROOT / d).rglob("*.py")] + [ROOT / ".ci" / "run", ROOT / "Makefile"]
    for path in files:
        if path.is_file():
            for name in _READS.findall(path.read_text(errors="replace")):
                found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


def test_every_driftloop_variable_the_code_reads_is_a_setting_or_owned_by_a_reader() -> None:
    # catches: a new test-suite variable (exported by .ci/run, inherited by every command
    # a test starts) that the loader would refuse, and a listed name nobody reads anymore
    read = _read_names()
    assert {"DRIFTLOOP_REQUIRE_SERVICES", "DRIFTLOOP_CHAOS_SEED"} <= set(read)  # the scan works
    strays = []
    for name, where in read.items():
        if name in NOT_SETTINGS_ENV:
            continue
        try:
            variable_path(Settings, name)
        except UnknownSettingError as exc:
            strays.append(f"{where}: {exc}")
    assert strays == []
    assert sorted(set(NOT_SETTINGS_ENV) - set(read)) == []
