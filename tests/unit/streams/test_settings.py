"""Settings: YAML, environment overrides, pass-through client keys, secrets kept secret."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from streams.settings import TOPIC_NAMES, load_settings


def test_defaults_suit_the_embedded_broker() -> None:
    s = load_settings()
    config = s.kafka.consumer_config("g")
    assert config["session.timeout.ms"] == 6000
    assert config["heartbeat.interval.ms"] == 1000
    assert config["enable.auto.commit"] is False
    assert s.kafka.producer_config()["acks"] == "all"
    assert s.kafka.producer_config()["enable.idempotence"] is True


def test_idempotence_can_be_turned_off_for_the_s3_backed_embedded_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFTLOOP_KAFKA__IDEMPOTENCE", "false")
    config = load_settings().kafka.producer_config()
    assert config["enable.idempotence"] is False and config["acks"] == "all"


def test_yaml_then_environment_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "driftloop.yaml"
    path.write_text(
        "kafka:\n  bootstrap_servers: kafka-a:9092\n  extra:\n    socket.keepalive.enable: true\n"
        "topics:\n  prefix: prod.\n  partitions: 12\n"
    )
    s = load_settings(path)
    assert s.kafka.bootstrap_servers == "kafka-a:9092"
    assert s.topic("features") == "prod.features"
    assert s.kafka.client_config()["socket.keepalive.enable"] is True
    monkeypatch.setenv("DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS", "kafka-b:9093")
    monkeypatch.setenv("DRIFTLOOP_TOPICS__PARTITIONS", "6")
    s = load_settings(path)
    assert s.kafka.bootstrap_servers == "kafka-b:9093"
    assert s.topics.partitions == 6
    assert s.topics.prefix == "prod."


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_settings(tmp_path / "nope.yaml")


def test_security_settings_pass_through_and_secrets_stay_hidden(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = load_settings(kafka={
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "svc", "sasl_password": "hunter2-secret",
        "ssl_ca_location": "/etc/ca.pem",
        "extra": {
            "sasl.oauthbearer.client.secret": "oauth-s3cret",
            "ssl.endpoint.identification.algorithm": "https",
        },
    })
    config = s.kafka.client_config()
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.password"] == "hunter2-secret"
    assert config["sasl.oauthbearer.client.secret"] == "oauth-s3cret"
    assert config["ssl.endpoint.identification.algorithm"] == "https"
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("settings %s %s", s, s.kafka.redacted())
    for text in (repr(s), str(s.model_dump()), caplog.text, str(s.kafka.redacted())):
        assert "hunter2" not in text
        assert "oauth-s3cret" not in text


def test_topic_names_are_prefixed_and_checked() -> None:
    s = load_settings(topics={"prefix": "x."})
    assert s.all_topics() == [f"x.{n}" for n in TOPIC_NAMES]
    with pytest.raises(KeyError, match="unknown topic"):
        s.topic("nope")


def test_a_misspelt_model_section_fails_at_load_time(tmp_path: Path) -> None:
    from streams.settings import UnknownSettingError

    path = tmp_path / "driftloop.yaml"
    path.write_text("models:\n  fraud:\n    drfit:\n      ks_floor: 0.2\n")
    with pytest.raises(UnknownSettingError, match=r"'models\.fraud\.drfit'"):
        load_settings(path)
    path.write_text("models:\n  fraud:\n    drift:\n      ks_floor: 0.2\n")
    with pytest.raises(UnknownSettingError, match=r"'models\.fraud\.drift\.ks_floor'"):
        load_settings(path)  # a misspelt key inside a section fails too
    path.write_text("models:\n  fraud:\n    drift:\n      psi_threshold: 0.3\n    shadow: {}\n")
    fraud = load_settings(path).model("fraud")
    assert fraud.drift.psi_threshold == 0.3
    assert fraud.drift.min_window_events == 200  # the other numbers keep their defaults
    assert load_settings(path).model("other").drift.psi_threshold == 0.2


def test_the_cli_names_each_invalid_setting_without_values_or_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from services.cli.main import app

    path = tmp_path / "driftloop.yaml"
    path.write_text("kafka:\n  sasl_password: s3cret-value\n  session_timeout_ms: soon\n"
                    "models:\n  fraud:\n    drift: {window_events: 0}\n")
    result = CliRunner().invoke(app, ["--config", str(path), "topics", "create"])
    assert result.exit_code == 2
    assert "kafka.session_timeout_ms: Input should be a valid integer" in result.output
    assert "models.fraud.drift.window_events: Input should be greater" in result.output
    assert "s3cret-value" not in result.output and "Traceback" not in result.output


def test_http_section_is_set_by_its_own_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_HTTP__PORT", "8081")
    monkeypatch.setenv("DRIFTLOOP_HTTP__HOST", "127.0.0.1")
    http = load_settings().http
    assert (http.host, http.port, http.request_deadline_s) == ("127.0.0.1", 8081, 10.0)


def test_validation_limits_must_be_timezone_aware() -> None:
    from pydantic import ValidationError

    from streams.settings import ValidationSettings

    with pytest.raises(ValidationError, match="timezone-aware"):
        ValidationSettings(event_time_max="2100-01-01T00:00:00")
