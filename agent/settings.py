"""Settings from the environment (prefix SIGNAL_RAG_, nested with __) and Docker secrets.

Built once at start-up by `load_settings`, never at import. Invalid or missing values
raise `ConfigError` whose message names the environment variable to fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "SIGNAL_RAG_"
DEFAULT_SECRETS_DIR = Path("/run/secrets")


class ConfigError(ValueError):
    """A configuration value is invalid or missing; the CLI exits with code 2."""


class LLMSettings(BaseModel):
    """The chat model. With no `model`, the offline extractive answerer is used."""

    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str | None = None
    timeout: float = Field(30.0, gt=0, le=600)
    max_attempts: int = Field(3, ge=1, le=10)
    retry_initial_interval: float = Field(0.5, gt=0, le=60)
    max_retry_after: float = Field(30.0, ge=0, le=600)
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(512, ge=16, le=8192)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class EmbeddingSettings(BaseModel):
    provider: Literal["local", "openai"] = "local"
    model: str = "all-MiniLM-L6-v2"
    base_url: str | None = None
    api_key: SecretStr | None = None
    batch_size: int = Field(64, ge=1, le=4096)


class RetrievalSettings(BaseModel):
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    top_k: int = Field(4, ge=1, le=20)
    candidates: int = Field(50, ge=1, le=1000)
    min_similarity: float = Field(0.3, ge=-1, le=1)
    min_coverage: float = Field(0.6, ge=0, le=1)
    chunk_size: int = Field(1000, ge=100, le=20000)
    chunk_overlap: int = Field(200, ge=0)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> RetrievalSettings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self


class BreakerSettings(BaseModel):
    failure_threshold: int = Field(5, ge=1)
    window: float = Field(60.0, gt=0)
    cooldown: float = Field(30.0, gt=0)


class AuditSettings(BaseModel):
    pepper: SecretStr | None = None
    """HMAC key for user ids; generated and kept in the data dir when not set."""


class GuardsSettings(BaseModel):
    """Prompt hardening and the output guard (SEC-3, SEC-4)."""

    canary: SecretStr | None = None
    """The system prompt's canary; generated once and kept in the data dir when not set."""
    max_reply_chars: int = Field(8000, ge=200, le=100_000)
    """Output guard cap on a whole reply; keep it above what `llm.max_tokens` can produce."""

    @field_validator("canary")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 16:
            raise ValueError("must be at least 16 characters (a random string)")
        return value


class SignalSettings(BaseModel):
    """The signal-cli daemon the `serve` command talks to."""

    url: str = "http://127.0.0.1:8080"
    account: str | None = None
    """The bot's number; sent with every call (required for multi-account daemons)."""
    bot_uuid: str | None = None
    """The bot's service id, to recognise @-mentions and quotes of the bot in groups."""
    receive_mode: Literal["manual", "on-start"] = "manual"
    """For tcp:// and unix:// daemons started with the same --receive-mode."""
    stale_after: float = Field(35.0, gt=0)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "tcp://", "unix://")):
            raise ValueError("must start with http://, https://, tcp:// or unix://")
        return value


def _split(value: str) -> frozenset[str]:
    return frozenset(item.strip() for item in value.split(",") if item.strip())


class AccessSettings(BaseModel):
    """Who may use the bot (ACC-1, ACC-2)."""

    passphrase: SecretStr | None = None
    allowed: str = ""
    """Comma-separated service UUIDs or E.164 numbers; empty means anyone who activates."""
    admins: str = ""
    command_prefix: str = Field("/", min_length=1, max_length=3)

    @property
    def allowed_set(self) -> frozenset[str]:
        return _split(self.allowed)

    @property
    def admin_set(self) -> frozenset[str]:
        return _split(self.admins)


class LimitsSettings(BaseModel):
    storage_url: str = "memory://"
    """`memory://` for one process, `redis://host:port` shared by several replicas."""
    rates: str = "10/minute;100/hour"

    @field_validator("storage_url")
    @classmethod
    def _known_storage(cls, value: str) -> str:
        if not value.startswith(("memory://", "redis://", "rediss://")):
            raise ValueError("must be memory://, redis:// or rediss://")
        return value


class HealthSettings(BaseModel):
    addr: str = "127.0.0.1:8787"
    """host:port of /healthz, /readyz and /metrics; loopback unless you publish it."""
    enabled: bool = True

    @field_validator("addr")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"must be host:port, got {value!r}")
        return value


class LogSettings(BaseModel):
    file: Path | None = None
    """Default: `$SIGNAL_RAG_DATA_DIR/logs/signal-rag.log`."""
    file_enabled: bool = True
    max_bytes: int = Field(100 * 1024 * 1024, ge=1024)
    backups: int = Field(7, ge=0, le=1000)


class AlertSettings(BaseModel):
    """Operator alerts (OBS-6): where they go and when they fire."""

    webhook_url: SecretStr | None = None
    """POST target for alerts (JSON); a secret because such URLs often carry a token."""
    cooldown: float = Field(900.0, ge=0, le=86_400)
    """Least seconds between two notifications of one condition."""
    signal_admins: bool = True
    """Send alerts to the admins (`access.admins`) over Signal."""
    min_free_disk_mb: int = Field(1024, ge=0)
    unreachable_minutes: float = Field(5.0, gt=0, le=1440)
    error_rate: float = Field(0.10, gt=0, lt=1)
    error_window: float = Field(300.0, ge=10, le=86_400)

    @field_validator("webhook_url")
    @classmethod
    def _webhook_http(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("http://",
                                                                          "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class AnomalySettings(BaseModel):
    """Anomaly rules (OBS-7); see guards/anomaly.py and docs/operations.md."""

    enabled: bool = True
    long_message_chars: int = Field(1500, ge=1)
    median_factor: float = Field(5.0, gt=1)
    burst_messages: int = Field(8, ge=2)
    burst_window: float = Field(30.0, gt=0)
    off_hours: str = ""
    """`22-06`: messages from 22:00 to 05:59 in `timezone` are reported; empty: off."""
    timezone: str = "UTC"
    block_count: int = Field(3, ge=1)
    block_window: float = Field(600.0, gt=0)
    mute: bool = False
    mute_minutes: float = Field(30.0, gt=0, le=10_080)
    probe_users: int = Field(5, ge=1)
    probe_window: float = Field(600.0, gt=0)

    @field_validator("off_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        from guards.anomaly import parse_off_hours

        parse_off_hours(value)
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from guards.anomaly import load_timezone

        load_timezone(value)
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__",
                                      secrets_nested_delimiter="__",
                                      extra="ignore", validate_default=True)

    data_dir: Path = Path("data")
    index_dir: Path | None = None
    max_input_chars: int = Field(2000, ge=1, le=100_000)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log: LogSettings = LogSettings()
    health: HealthSettings = HealthSettings()
    llm: LLMSettings = LLMSettings()
    embeddings: EmbeddingSettings = EmbeddingSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    breaker: BreakerSettings = BreakerSettings()
    audit: AuditSettings = AuditSettings()
    guards: GuardsSettings = GuardsSettings()
    signal: SignalSettings = SignalSettings()
    access: AccessSettings = AccessSettings()
    limits: LimitsSettings = LimitsSettings()
    alerts: AlertSettings = AlertSettings()
    anomalies: AnomalySettings = AnomalySettings()

    @classmethod
    def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Docker secrets may set nested values too: a file `signal_rag_llm__api_key`."""
        return (init_settings, env_settings, dotenv_settings,
                NestedSecretsSettingsSource(file_secret_settings))

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if self.index_dir is None:
            self.index_dir = self.data_dir / "index"
        if self.log.file is None:
            self.log.file = self.data_dir / "logs" / "signal-rag.log"
        if self.llm.api_key is None and os.environ.get("OPENAI_API_KEY"):
            self.llm.api_key = SecretStr(os.environ["OPENAI_API_KEY"])
        if self.llm.model and self.llm.base_url is None and self.llm.api_key is None:
            raise ValueError(
                "SIGNAL_RAG_LLM__MODEL is set for the OpenAI API but no key is configured: "
                "set SIGNAL_RAG_LLM__API_KEY (or OPENAI_API_KEY), or set "
                "SIGNAL_RAG_LLM__BASE_URL for a local server")
        if self.embeddings.provider == "openai":
            if self.embeddings.api_key is None:
                self.embeddings.api_key = self.llm.api_key
            if self.embeddings.base_url is None:
                self.embeddings.base_url = self.llm.base_url
            if self.embeddings.model == EmbeddingSettings().model:
                raise ValueError("SIGNAL_RAG_EMBEDDINGS__MODEL must name the endpoint's "
                                 "embedding model when SIGNAL_RAG_EMBEDDINGS__PROVIDER=openai")
        return self

    @property
    def index_path(self) -> Path:
        assert self.index_dir is not None  # set by _derive
        return self.index_dir


def env_name(location: tuple[int | str, ...]) -> str:
    """Map a pydantic error location to the environment variable a user would set."""
    parts = [str(p) for p in location if not isinstance(p, int)]
    return ENV_PREFIX + "__".join(p.upper() for p in parts) if parts else ENV_PREFIX + "*"


def load_settings(secrets_dir: Path | None = None, **overrides: Any) -> Settings:
    """Read settings from the environment and Docker secrets files, or raise ConfigError."""
    directory = secrets_dir
    if directory is None:
        configured = os.environ.get(ENV_PREFIX + "SECRETS_DIR")
        directory = Path(configured) if configured else DEFAULT_SECRETS_DIR
    kwargs: dict[str, Any] = dict(overrides)
    if directory.is_dir():
        kwargs["_secrets_dir"] = directory
    elif os.environ.get(ENV_PREFIX + "SECRETS_DIR"):
        raise ConfigError(f"{ENV_PREFIX}SECRETS_DIR: {directory} is not a directory")
    try:
        return Settings(**kwargs)
    except (UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{ENV_PREFIX}SECRETS_DIR: cannot read the secrets files in "
                          f"{directory} ({type(exc).__name__})") from None
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            if error["loc"]:
                problems.append(f"{env_name(error['loc'])}: {message}")
            else:
                problems.append(message)
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
