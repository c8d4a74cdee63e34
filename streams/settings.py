"""One typed configuration for every driftloop process.

Sources, highest priority first: explicit arguments, ``DRIFTLOOP_*`` environment
variables (nested with ``__``, e.g. ``DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS``), the
``OTEL_*`` variables (as ``observability.otel``), the YAML file named by
``DRIFTLOOP_CONFIG`` (or passed to :func:`load_settings`), defaults.

This is the one module that reads the process environment: the ``DRIFTLOOP_*``
settings, the standard ``OTEL_*`` variables (kept verbatim in
``observability.otel`` for the telemetry setup) and torchrun's ``LOCAL_RANK``.
Everything else receives a :class:`Settings` (or one of its sections) as an argument.

An unknown key is an error at every level, the top one included: a key in the YAML file
or a ``DRIFTLOOP_*`` variable that names no setting stops the load with a message naming
it, its source and the closest known key (:mod:`streams.settings_keys`). The few
``DRIFTLOOP_*`` names that other readers own are listed in :data:`NOT_SETTINGS_ENV`.

Kafka client keys are librdkafka's own: the common ones are typed fields, anything
else goes through ``kafka.extra`` unchanged (``socket.keepalive.enable``,
``ssl.endpoint.identification.algorithm``, ...). Secrets are ``SecretStr`` and are
only revealed when the client configuration is built, never in ``repr`` or logs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from services.model_settings import ModelSettings
from streams.settings_keys import (
    ConfigurationError,
    UnknownSettingError,
    environment_problems,
    file_problems,
)

TOPIC_NAMES: tuple[str, ...] = (
    "features",
    "labels",
    "drift.reports",
    "retrain.requests",
    "retrain.episodes",
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
    # librdkafka's own log threshold (syslog levels, 7 = debug). The command line lowers
    # it so an unreachable broker is one error line, not a stream of connection logs.
    log_level: int = Field(default=6, ge=0, le=7)
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
            "log_level": self.log_level,
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


class FeastSettings(BaseModel):
    """Where the Feast repository is and which of its store variants to use.

    ``variant`` picks the repository's YAML: ``embedded`` is ``feature_store.yaml``,
    any other name ``feature_store.<variant>.yaml`` (``real``: Redis online store and a
    SQL registry). ``project``, ``registry_url`` and ``redis`` override that YAML's
    project, SQL registry path and Redis connection string.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    repo: Path = Path("feature_repo")
    variant: str = Field(default="embedded", pattern=r"^[a-z][a-z0-9_-]*$")
    project: str | None = None
    registry_url: SecretStr | None = None
    redis: SecretStr | None = None

    def yaml_path(self) -> Path:
        """The ``feature_store*.yaml`` of the chosen variant."""
        name = "feature_store.yaml" if self.variant == "embedded" else (
            f"feature_store.{self.variant}.yaml")
        return self.repo / name


ProgressMode = Literal["auto", "bar", "json", "log", "none"]


class ObservabilitySettings(BaseModel):
    """Telemetry and progress output.

    ``otel`` holds the standard ``OTEL_*`` variables as OpenTelemetry defines them,
    read once with the rest of the configuration; the OTLP exporters still read their
    own endpoint, header and timeout variables, as the SDK specifies.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    otel_file: Path = Path(".driftloop/otel.jsonl")  # where the ``file`` exporter appends
    progress: ProgressMode = "auto"  # auto: a bar on a terminal, JSON lines otherwise
    otel: dict[str, str] = Field(default_factory=dict)


class OnlineServiceSettings(BaseModel):
    """The online learner's process-wide settings (per-model ones: ``models.<m>.online``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    snapshot_key_file: Path | None = None  # HMAC key of the learner's snapshots


class FaultSettings(BaseModel):
    """Fault injection for the reliability tests; every switch is off in production."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    crash_after_alias_move: bool = False  # SIGKILL between the champion move and its event


class Settings(BaseSettings):
    """Everything a driftloop process needs to know about its surroundings."""

    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )
    _file_values: ClassVar[dict[str, Any]] = {}

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    state_dir: Path = Path(".driftloop")
    registry_uri: str = ".driftloop/registry"
    feast: FeastSettings = Field(default_factory=FeastSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    online: OnlineServiceSettings = Field(default_factory=OnlineServiceSettings)
    faults: FaultSettings = Field(default_factory=FaultSettings)
    models: dict[str, ModelSettings] = Field(default_factory=dict)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    _process_values: ClassVar[dict[str, Any]] = {}

    def model(self, name: str) -> ModelSettings:
        """The typed settings of model ``name`` (defaults when it has no section)."""
        configured = self.models.get(name)
        return configured if configured is not None else ModelSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _FixedSource(settings_cls, cls._process_values),
                _FixedSource(settings_cls, cls._file_values), file_secret_settings)

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


class _FixedSource(PydanticBaseSettingsSource):
    """A settings source holding a prepared (nested) dict: the YAML file, or values read
    from the process environment outside ``DRIFTLOOP_*`` (``OTEL_*``)."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


_OTEL_NAME = re.compile(r"^OTEL_[A-Z0-9_]+$")


def otel_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The standard ``OTEL_*`` variables of ``env`` (default: this process's)."""
    env = os.environ if env is None else env
    return {k: v for k, v in env.items() if _OTEL_NAME.match(k)}


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment for a child process (a broker, an S3 server): this one's plus ``extra``."""
    return {**os.environ, **extra}


def torchrun_local_rank(default: int = 0) -> int:
    """``LOCAL_RANK``, set by torch's launcher for each process it starts on a node."""
    return int(os.environ.get("LOCAL_RANK", default))


NOT_SETTINGS_ENV: dict[str, str] = {
    "DRIFTLOOP_CONFIG": "the YAML file load_settings reads",
    "DRIFTLOOP_REQUIRE_SERVICES": "tests: a missing PostgreSQL or Redis fails (.ci/run sets it)",
    "DRIFTLOOP_REQUIRE_BROWSER": "tests: a missing Chromium fails (.ci/run sets it)",
    "DRIFTLOOP_REQUIRE_PROMTOOL": "tests: a missing promtool fails (.ci/run sets it)",
    "DRIFTLOOP_CHROMIUM": "tests: the Chromium binary of the report's browser check",
    "DRIFTLOOP_REPORT_SCREENSHOT": "tests: keep the report's screenshot there",
    "DRIFTLOOP_RELIABILITY_DOC": "chaos tests: where the reliability ledger is written",
    "DRIFTLOOP_CHAOS_SEED": "chaos tests: the seed of the kill schedules",
    "DRIFTLOOP_CHAOS_IDEMPOTENT": "chaos tests: run the idempotent broker-restart case",
}
"""``DRIFTLOOP_*`` names that are not settings: the loader's own and the test suite's.

Every other ``DRIFTLOOP_*`` variable must name a setting. The test suite's are here
because the commands it starts inherit them (``.ci/run`` exports two); a test checks
that each is still read.
"""


def read_settings_file(path: Path) -> dict[str, Any]:
    """The YAML mapping in ``path``, its unknown keys refused."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigurationError(
            f"configuration file {path} is not valid YAML{line}: "
            f"{getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"configuration file {path} must hold a mapping of settings, "
            f"not a {type(data).__name__}")
    problems = file_problems(Settings, data, str(path))
    if problems:
        raise UnknownSettingError("; ".join(problems))
    return data


def check_environment(env: Mapping[str, str]) -> None:
    """Refuse every ``DRIFTLOOP_*`` variable of ``env`` that names no setting."""
    problems = environment_problems(Settings, env, "DRIFTLOOP_", NOT_SETTINGS_ENV)
    if problems:
        raise UnknownSettingError("; ".join(problems))


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load settings from ``path`` (or ``$DRIFTLOOP_CONFIG``), the environment and overrides.

    A path that is given but missing is an error, and so is a key in it or a
    ``DRIFTLOOP_*`` variable that names no setting (:class:`UnknownSettingError`): a typo
    must not silently fall back to defaults.
    """
    chosen = path if path is not None else os.environ.get("DRIFTLOOP_CONFIG")
    file_values: dict[str, Any] = {}
    if chosen:
        yaml_path = Path(chosen)
        if not yaml_path.is_file():
            raise FileNotFoundError(f"configuration file not found: {yaml_path}")
        file_values = read_settings_file(yaml_path)
    check_environment(os.environ)
    otel = otel_environment()
    Settings._file_values = file_values
    Settings._process_values = {"observability": {"otel": otel}} if otel else {}
    try:
        return Settings(**overrides)
    finally:
        Settings._file_values = {}
        Settings._process_values = {}


def config_source_name(path: str | Path | None) -> str:
    """Where settings came from, for error messages: the file, or the environment."""
    return str(path or os.environ.get("DRIFTLOOP_CONFIG") or "DRIFTLOOP_* variables")


def settings_errors(error: ValidationError) -> list[str]:
    """One ``path: problem`` line per invalid setting (values left out: they may be secrets)."""
    return [f"{'.'.join(str(part) for part in e['loc']) or '(root)'}: {e['msg']}"
            for e in error.errors()]
