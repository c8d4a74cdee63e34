"""One typed configuration for every driftloop process.

Sources, highest priority first: explicit arguments, ``DRIFTLOOP_*`` environment
variables (nested with ``__``, e.g. ``DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS``), the YAML
file named by ``DRIFTLOOP_CONFIG`` (or passed to :func:`load_settings`), defaults.

Kafka client keys are librdkafka's own: the common ones are typed fields, anything
else goes through ``kafka.extra`` unchanged (``socket.keepalive.enable``,
``ssl.endpoint.identification.algorithm``, ...). Secrets are ``SecretStr`` and are
only revealed when the client configuration is built, never in ``repr`` or logs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

TOPIC_NAMES: tuple[str, ...] = (
    "features",
    "labels",
    "drift.reports",
    "retrain.requests",
    "models.candidates",
    "models.verdicts",
    "models.promotions",
    "deadletter",
)

_SECRET_MARKERS = ("password", "secret", "token", "private.key")


def is_secret_key(key: str) -> bool:
    """Whether a librdkafka key holds a credential (so it must never be printed)."""
    lowered = key.lower()
    return any(marker in lowered for marker in _SECRET_MARKERS)


class KafkaSettings(BaseModel):
    """Client settings shared by every producer and consumer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str = "127.0.0.1:19092"
    client_id: str = "driftloop"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    # Group timing: fine for Apache Kafka and quick on the embedded broker, whose
    # group joins wait session.timeout.ms / 2.
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    # librdkafka pauses fetching for this long when its local queue is full; the
    # 1,000 ms default stalls batched consumers (DESIGN.md, throughput notes).
    fetch_queue_backoff_ms: int = 10
    # Idempotent producers (exactly one copy per retry) on Apache Kafka. Turn off for
    # the embedded broker on S3 storage: tansu 0.6 acknowledges a batch retried across
    # its kill -9 as a duplicate without having stored it (docs/DECISIONS.md); without
    # idempotence a retry may store a copy, which every consumer drops by event id.
    idempotence: bool = True
    extra: dict[str, str | int | float | bool | SecretStr] = Field(default_factory=dict)

    @field_validator("extra", mode="before")
    @classmethod
    def _wrap_secret_extras(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: SecretStr(v) if is_secret_key(k) and isinstance(v, str) else v
                for k, v in value.items()
            }
        return value

    def client_config(self) -> dict[str, str | int | float | bool]:
        """The librdkafka configuration common to producers and consumers, secrets revealed."""
        config: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
            "log.connection.close": False,
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password,
        }
        for key, value in optional.items():
            if value is not None:
                config[key] = _reveal(value)
        for key, value in self.extra.items():
            config[key] = _reveal(value)
        return config

    def consumer_config(self, group_id: str) -> dict[str, str | int | float | bool]:
        """Consumer configuration: manual commits, earliest reset, group timing."""
        config = {
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": self.heartbeat_interval_ms,
            "fetch.queue.backoff.ms": self.fetch_queue_backoff_ms,
            "enable.partition.eof": False,
        }
        config.update(self.client_config())
        return config

    def producer_config(self) -> dict[str, str | int | float | bool]:
        """Producer configuration: idempotent (unless turned off), acks from all replicas."""
        config: dict[str, str | int | float | bool] = {
            "enable.idempotence": self.idempotence,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": 30_000,
        }
        config.update(self.client_config())
        return config

    def redacted(self) -> dict[str, Any]:
        """Client configuration safe to log: every secret replaced by ``**********``."""
        return {
            k: "**********" if is_secret_key(k) else v for k, v in self.client_config().items()
        }


def _reveal(value: str | int | float | bool | SecretStr) -> str | int | float | bool:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


class TopicSettings(BaseModel):
    """Topic naming and creation defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prefix: str = ""
    partitions: int = Field(default=3, ge=1)
    replication_factor: int = Field(default=1, ge=1)


class BrokerSettings(BaseModel):
    """The embedded broker used for local runs and tests."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=19092, ge=1, le=65535)
    storage_engine: str = "memory://tansu/"


class ValidationSettings(BaseModel):
    """Semantic limits checked at the contract edge, right after decoding (``invalid_value``).

    Event times must be timezone-aware and within ``[event_time_min, event_time_max)``;
    every number finite, and feature values and labels within ``max_abs_value``; ids and
    names free of control characters (checked in ``streams.validation``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_time_min: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    event_time_max: datetime = datetime(2100, 1, 1, tzinfo=UTC)
    max_abs_value: float = Field(default=1e12, gt=0)

    @field_validator("event_time_min", "event_time_max")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must be timezone-aware (e.g. 2000-01-01T00:00:00Z)")
        return value


class ResilienceSettings(BaseModel):
    """How a consumer loop survives poison messages and unlucky group joins."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # A handler that raises for one message gets this many tries before that message is
    # dead-lettered as ``handler_error``.
    handler_attempts: int = Field(default=3, ge=1)
    # This many handler failures in a row, with no message handled in between, is a
    # broken handler (not poison input): the loop stops with an error instead.
    max_consecutive_handler_errors: int = Field(default=20, ge=1)
    # A member still without partitions this long after subscribing, while its topics
    # have partitions, leaves and rejoins its group (logged). 0 turns the watch off.
    assignment_timeout_s: float = Field(default=30.0, ge=0)


class HttpSettings(BaseModel):
    """The one HTTP endpoint per process (``/healthz``, ``/metrics``, service routes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "0.0.0.0"
    port: int = Field(default=0, ge=0, le=65535)  # 0: no endpoint
    # A whole request (headers and body) must arrive within this many seconds.
    request_deadline_s: float = Field(default=10.0, gt=0)
    # Connections served at once; more are refused (closed) until one ends.
    max_connections: int = Field(default=64, ge=1)


class ModelSettings(BaseModel):
    """One model's overrides under ``models.<name>``.

    The section names are fixed here, so a misspelt one fails at load time; the keys
    inside a section are checked by the service that owns it when it starts (drift
    policy, training config, retrain limits, shadow and rollback policies, online spec).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    drift: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    retrain: dict[str, Any] | None = None
    shadow: dict[str, Any] | None = None
    rollback: dict[str, Any] | None = None
    online: dict[str, Any] | bool | None = None  # false: this model is not learned online


class Settings(BaseSettings):
    """Everything a driftloop process needs to know about its surroundings."""

    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_",
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
    )
    _yaml_path: ClassVar[Path | None] = None

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    state_dir: Path = Path(".driftloop")
    registry_uri: str = ".driftloop/registry"
    feature_repo: Path = Path("feature_repo")
    models: dict[str, ModelSettings] = Field(default_factory=dict)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._yaml_path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=cls._yaml_path))
        sources.append(file_secret_settings)
        return tuple(sources)

    @model_validator(mode="before")
    @classmethod
    def _health_port_env(cls, data: Any) -> Any:
        """``DRIFTLOOP_HEALTH_PORT``/``_HOST`` (the deployed names) fill ``http`` when unset."""
        legacy = {"port": os.environ.get("DRIFTLOOP_HEALTH_PORT"),
                  "host": os.environ.get("DRIFTLOOP_HEALTH_HOST")}
        legacy = {k: v for k, v in legacy.items() if v}
        if not legacy or not isinstance(data, dict):
            return data
        http = data.get("http")
        if http is None:
            http = {}
        elif isinstance(http, BaseModel):
            return data
        return {**data, "http": {**legacy, **dict(http)}}

    def topic(self, name: str) -> str:
        """The full (prefixed) name of one of :data:`TOPIC_NAMES`."""
        if name not in TOPIC_NAMES:
            raise KeyError(f"unknown topic {name!r}; known: {', '.join(TOPIC_NAMES)}")
        return f"{self.topics.prefix}{name}"

    def all_topics(self) -> list[str]:
        """Every topic driftloop uses, prefixed."""
        return [self.topic(name) for name in TOPIC_NAMES]

    def with_models(self, models: Mapping[str, Mapping[str, Any]]) -> Settings:
        """A copy whose ``models`` section is ``models`` (validated like a loaded one)."""
        checked = {name: ModelSettings.model_validate(dict(options))
                   for name, options in models.items()}
        return self.model_copy(update={"models": checked})

    def model_options(self, model: str) -> dict[str, Any]:
        """Per-model overrides (drift policy, training, shadow...): the sections that are set."""
        configured = self.models.get(model)
        if configured is None:
            return {}
        return {name: dict(section) if isinstance(section, dict) else section
                for name, section in configured if section is not None}


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load settings from ``path`` (or ``$DRIFTLOOP_CONFIG``), the environment and overrides.

    A path that is given but missing is an error: a typo must not silently fall back
    to defaults.
    """
    chosen = path if path is not None else os.environ.get("DRIFTLOOP_CONFIG")
    yaml_path: Path | None = None
    if chosen:
        yaml_path = Path(chosen)
        if not yaml_path.is_file():
            raise FileNotFoundError(f"configuration file not found: {yaml_path}")
    Settings._yaml_path = yaml_path
    try:
        return Settings(**overrides)
    finally:
        Settings._yaml_path = None


def settings_errors(error: ValidationError) -> list[str]:
    """One ``path: problem`` line per invalid setting (values left out: they may be secrets)."""
    return [f"{'.'.join(str(part) for part in e['loc']) or '(root)'}: {e['msg']}"
            for e in error.errors()]
