"""Settings from the environment (prefix SIGNAL_RAG_, nested with __) and Docker secrets.

Built once at start-up by `load_settings`, never at import. Invalid or missing values
raise `ConfigError` whose message names the environment variable to fix.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

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
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

ENV_PREFIX = "SIGNAL_RAG_"
DEFAULT_SECRETS_DIR = Path("/run/secrets")
# A field's `json_schema_extra` key for its documented default, where the real default is
# derived at load time (e.g. `$SIGNAL_RAG_DATA_DIR/index`); see agent/config_doc.py.
DOC_DEFAULT = "doc_default"


class ConfigError(ValueError):
    """A configuration value is invalid or missing; the CLI exits with code 2."""


class LLMSettings(BaseModel):
    """With no model configured, the offline extractive answerer replies from the passages."""

    model_config = ConfigDict(title="Chat model (`generate`)")

    base_url: str | None = Field(
        None, description="any OpenAI-compatible endpoint, e.g. `http://127.0.0.1:11434/v1`",
        json_schema_extra={DOC_DEFAULT: "OpenAI's API"})
    api_key: SecretStr | None = Field(
        None, description="required for OpenAI's own API, optional for a local server",
        json_schema_extra={DOC_DEFAULT: "`OPENAI_API_KEY`"})
    model: str | None = Field(None, description="model name; setting it turns the model on")
    timeout: float = Field(30.0, gt=0, le=600, description="seconds per model call")
    max_attempts: int = Field(3, ge=1, le=10,
                              description="attempts per question (the only retry layer)")
    retry_initial_interval: float = Field(
        0.5, gt=0, le=60,
        description="first backoff in seconds, doubled per attempt, plus jitter")
    max_retry_after: float = Field(
        30.0, ge=0, le=600,
        description="longest server `Retry-After` honoured; longer goes to the fallback")
    temperature: float = Field(0.0, ge=0, le=2, description="sampling temperature")
    max_tokens: int = Field(512, ge=16, le=8192, description="answer length cap")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class EmbeddingSettings(BaseModel):
    """Changing the embedding model requires `signal-rag ingest PATH --rebuild`; the bot
    refuses an index built with another model."""

    model_config = ConfigDict(title="Embeddings")

    provider: Literal["local", "openai"] = Field(
        "local", description="`local` (an ONNX export of all-MiniLM-L6-v2, offline) or "
                             "`openai`")
    model: str = Field(
        "all-MiniLM-L6-v2",
        description="for `local`: the exported model's name, which its `manifest.json` must "
                    "give (see `signal-rag model export`); for `openai`: the endpoint's "
                    "model (required)")
    model_dir: Path | None = Field(
        None, description="for `local`: the directory `signal-rag model export` wrote; "
                          "checked by sha256 at start, never downloaded",
        json_schema_extra={DOC_DEFAULT: "`<python environment>/share/signal-rag/models/"
                                        "<model>` (where `make install` exports it)"})
    threads: int = Field(
        1, ge=0, le=256,
        description="for `local`: ONNX Runtime threads per embedding call, a query or one "
                    "batch of documents (0: one per core); one is fastest for a query and "
                    "the cheapest in CPU per document")
    parallel_batches: int = Field(
        0, ge=0, le=256,
        description="for `local`: batches of documents (ingest) embedded side by side, "
                    "sharing the calls' `THREADS` (0: the usable cores divided by "
                    "`THREADS`, at most 2, at least 1; each batch in flight keeps its "
                    "buffers, so more costs memory)")
    base_url: str | None = Field(None, description="embeddings endpoint for `openai`",
                                 json_schema_extra={DOC_DEFAULT: "`SIGNAL_RAG_LLM__BASE_URL`"})
    api_key: SecretStr | None = Field(None, description="for the embeddings endpoint",
                                      json_schema_extra={DOC_DEFAULT: "`SIGNAL_RAG_LLM__API_KEY`"})
    batch_size: int = Field(64, ge=1, le=4096, description="texts per embedding call")


class RetrievalSettings(BaseModel):
    model_config = ConfigDict(title="Retrieval and chunking")

    mode: Literal["hybrid", "dense", "bm25"] = Field(
        "hybrid", description="`hybrid` (dense + BM25, score fusion; see docs/evals.md), "
                              "`dense` or `bm25`")
    top_k: int = Field(4, ge=1, le=20, description="passages given to the answerer")
    candidates: int = Field(50, ge=1, le=1000, description="depth of each ranking before fusion")
    min_similarity: float = Field(0.3, ge=-1, le=1,
                                  description="relevance floor on cosine similarity")
    min_coverage: float = Field(
        0.6, ge=0, le=1,
        description="or: share of the question's content words a passage must contain")
    chunk_size: int = Field(1000, ge=100, le=20000,
                            description="characters per chunk (used by `ingest`)")
    chunk_overlap: int = Field(200, ge=0,
                               description="overlap between chunks; must be below the size")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> RetrievalSettings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self


class BreakerSettings(BaseModel):
    model_config = ConfigDict(title="Circuit breaker")

    failure_threshold: int = Field(
        5, ge=1, description="failures within the window that open the circuit")
    window: float = Field(60.0, gt=0, description="window in seconds")
    cooldown: float = Field(30.0, gt=0, description="seconds open before one trial call")


class AuditSettings(BaseModel):
    model_config = ConfigDict(title="Audit")

    pepper: SecretStr | None = Field(
        None,
        description="HMAC key for user ids (at least 16 bytes). `serve` refuses to start "
                    "without it (exit 2), so every replica and restart keys users the same "
                    "way; `ask`/`chat` generate one into `$SIGNAL_RAG_DATA_DIR/.audit-pepper` "
                    "(mode 0600) when unset",
        json_schema_extra={DOC_DEFAULT: "required by `serve`; generated for the other commands"})


class GuardsSettings(BaseModel):
    """Prompt hardening and the output guard (SEC-3, SEC-4)."""

    model_config = ConfigDict(title="Guards")

    canary: SecretStr | None = Field(
        None,
        description="marker in the system prompt (at least 16 characters); a reply "
                    "containing it is never sent. When unset, one is generated into "
                    "`$SIGNAL_RAG_DATA_DIR/.prompt-canary` (mode 0600) and kept; replicas "
                    "must share it (same data dir or this setting)",
        json_schema_extra={DOC_DEFAULT: "generated"})
    max_reply_chars: int = Field(
        8000, ge=200, le=100_000,
        description="output guard length cap on a whole reply, sources included (about four "
                    "Signal messages); a longer reply is replaced by a safe refusal. Raise it "
                    "with `SIGNAL_RAG_LLM__MAX_TOKENS` (a token is about 4 characters)")

    encoder: bool = Field(
        False,
        description="also run the fine-tuned injection encoder (guards/encoder.py) on every "
                    "message that the rules and the n-gram model pass (about 3-6 ms of CPU). "
                    "Build it with `make encoder` into "
                    "`<venv>/share/signal-rag/models/injection-encoder`; when it is on and the "
                    "model is missing or damaged, every message is refused (fail closed)")

    @field_validator("canary")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 16:
            raise ValueError("must be at least 16 characters (a random string)")
        return value


class SignalSettings(BaseModel):
    """The signal-cli daemon the `serve` command talks to. State lives in
    `$SIGNAL_RAG_DATA_DIR`: `inbox.sqlite3` (durable inbox/outbox), `users.sqlite3`
    (activations, answer timestamps for reactions, feedback, active chats) and
    `memory.sqlite3` (conversation memory: the last 5 exchanges per user and chat, deleted
    after 24 h of inactivity, by `/reset` for one chat and by `/forget` for all)."""

    model_config = ConfigDict(title="Signal service (`signal-rag serve`)")

    url: str = Field(
        "http://127.0.0.1:8080",
        description="the signal-cli daemon: `http://host:port` (`daemon --http`), "
                    "`tcp://host:port` (`--tcp`) or `unix:///path` (`--socket`)")
    account: str | None = Field(
        None, description="the bot's number; sent with every call (needed for multi-account "
                          "daemons)")
    bot_uuid: str | None = Field(
        None, description="the bot's service id, to recognise @-mentions and quotes of the bot "
                          "in groups")
    receive_mode: Literal["manual", "on-start"] = Field(
        "manual", description="for `tcp://`/`unix://`: the daemon's `--receive-mode` (it must "
                              "be started with the same one); `manual` subscribes after every "
                              "connect")
    stale_after: float = Field(
        35.0, gt=0, description="seconds without any byte (keep-alives arrive every 15 s) "
                                "before reconnecting")
    queue_retention_hours: float = Field(
        168.0, gt=0, le=24 * 90,
        description="hours a closed inbox/outbox row (sender id, chat id, timestamp; never "
                    "text) is kept to recognise a redelivered message, then deleted")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "tcp://", "unix://")):
            raise ValueError("must start with http://, https://, tcp:// or unix://")
        return value


def _split(value: str) -> frozenset[str]:
    return frozenset(item.strip() for item in value.split(",") if item.strip())


class AccessSettings(BaseModel):
    """Who may use the bot (ACC-1, ACC-2). `serve` refuses to start without a passphrase or
    an allow list: the bot never answers strangers."""

    model_config = ConfigDict(title="Access")

    passphrase: SecretStr | None = Field(
        None, description="users must send it before anything else is answered; 5 wrong "
                          "tries lock a sender out for 1 hour")
    allowed: str = Field(
        "", description="comma-separated service UUIDs or E.164 numbers allowed to use the bot",
        json_schema_extra={DOC_DEFAULT: "empty (anyone who activates)"})
    admins: str = Field(
        "", description="comma-separated UUIDs or numbers allowed to use `/status`; they also "
                        "get the operator alerts over Signal "
                        "(`SIGNAL_RAG_ALERTS__SIGNAL_ADMINS`)")
    command_prefix: str = Field("/", min_length=1, max_length=3,
                                description="command prefix; in groups it also addresses the "
                                            "bot")

    @property
    def allowed_set(self) -> frozenset[str]:
        return _split(self.allowed)

    @property
    def admin_set(self) -> frozenset[str]:
        return _split(self.admins)


class LimitsSettings(BaseModel):
    model_config = ConfigDict(title="Rate limits")

    storage_url: str = Field(
        "memory://",
        description="rate-limit storage: `memory://` (one process) or `redis://host:port` "
                    "(`rediss://` with TLS; shared by replicas). Limits are keyed by the HMAC "
                    "of the user id, so replicas must share `SIGNAL_RAG_AUDIT__PEPPER` for "
                    "their limits to add up")
    rates: str = Field("10/minute;100/hour",
                       description="per-user message limits, checked before any model call")

    @field_validator("storage_url")
    @classmethod
    def _known_storage(cls, value: str) -> str:
        if not value.startswith(("memory://", "redis://", "rediss://")):
            raise ValueError("must be memory://, redis:// or rediss://")
        return value


class DependencySettings(BaseModel):
    """`serve` starts and reports not ready, instead of failing, while the embedding endpoint
    (`openai` provider), the chat model server or Redis is down, probes each in the
    background and recovers on its own (docs/operations.md, "Dependencies")."""

    model_config = ConfigDict(title="Dependencies (embedding endpoint, model server, Redis)")

    probe_interval: float = Field(
        30.0, gt=0, le=3600,
        description="seconds between probes of a dependency that is up; one that is down is "
                    "probed again after 1, 2, 4 … s, up to 30 s or this interval if shorter")
    probe_timeout: float = Field(5.0, gt=0, le=120, description="seconds per probe")
    alert_minutes: float = Field(
        2.0, gt=0, le=1440,
        description="`embeddings_unreachable`, `model_unreachable` and "
                    "`limits_storage_unreachable` fire once a dependency has been down this "
                    "long")
    hold: float = Field(
        300.0, ge=0, le=86_400,
        description="seconds a message that needs a dependency that is down (a question "
                    "while the embedding endpoint is down, an activation while Redis is "
                    "down) waits in the inbox for it; then it gets the \"temporarily "
                    "unavailable\" reply")


class HealthSettings(BaseModel):
    model_config = ConfigDict(title="Health and metrics server")

    addr: str = Field(
        "127.0.0.1:8787",
        description="`host:port` where `serve` answers `/healthz`, `/readyz` and `/metrics` "
                    "(Prometheus); loopback unless you publish it. `signal-rag health` reads "
                    "the same setting. A port that is taken stops `serve` with exit code 2")
    enabled: bool = Field(
        True, description="`false`: no health server (then nothing answers `signal-rag health`)")

    @field_validator("addr")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"must be host:port, got {value!r}")
        return value


class LogSettings(BaseModel):
    model_config = ConfigDict(title="Log file")

    file: Path | None = Field(
        None, description="the rotating log file (mode 0600), the same redacted JSON lines",
        json_schema_extra={DOC_DEFAULT: "`$SIGNAL_RAG_DATA_DIR/logs/signal-rag.log`"})
    file_enabled: bool = Field(
        True, description="`false`: logs go to the stream only (e.g. when the container "
                          "runtime collects stdout)")
    max_bytes: int = Field(100 * 1024 * 1024, ge=1024,
                           description="size at which the log file rotates")
    backups: int = Field(7, ge=0, le=1000,
                         description="rotated files kept (`signal-rag.log.1` … `.7`)")


class AlertSettings(BaseModel):
    """Operator alerts: where they go and when they fire. Conditions, their meaning and
    what to do: docs/operations.md, "Alerts". Every alert is also an `operator_alert` log
    event (level `error` when firing, `warning` when resolved)."""

    model_config = ConfigDict(title="Alerts (OBS-6)")

    webhook_url: SecretStr | None = Field(
        None,
        description="`http://` or `https://` URL that receives each alert as a JSON `POST` "
                    "(`condition`, `status` `firing`/`resolved`, `fields`, `at`, `service`); "
                    "10 s timeout, one retry on a network error, 429 or 5xx. Proxy variables "
                    "are not used. Never logged (such URLs often carry a token)")
    cooldown: float = Field(
        900.0, ge=0, le=86_400,
        description="seconds: at most one notification per condition in this time (repeats "
                    "are counted and reported with the next one)")
    signal_admins: bool = Field(
        True,
        description="send alerts to every `SIGNAL_RAG_ACCESS__ADMINS` entry over Signal (not "
                    "`signal_cli_unreachable` or `signal_rate_limited`, which Signal cannot "
                    "carry: use the webhook for those)")
    min_free_disk_mb: int = Field(
        1024, ge=0, description="`disk_space_low` fires below this many MB free on the data "
                                "directory's file system")
    unreachable_minutes: float = Field(
        5.0, gt=0, le=1440, description="`signal_cli_unreachable` fires when the daemon has not "
                                        "answered for this long")
    signal_cli_check_interval: float = Field(
        30.0, gt=0, le=3600,
        description="seconds between the checks of the signal-cli daemon behind "
                    "`signal_cli_unreachable` (so it fires up to this long after the "
                    "minutes above)")
    disk_check_interval: float = Field(
        60.0, gt=0, le=3600,
        description="seconds between the free-space checks behind `disk_space_low`")
    error_rate: float = Field(
        0.10, gt=0, lt=1, description="`error_rate_high` fires when more than this share of "
                                      "messages fail…")
    error_window: float = Field(
        300.0, ge=10, le=86_400,
        description="…within this many seconds (and at least 20 messages were seen)")

    @field_validator("webhook_url")
    @classmethod
    def _webhook_http(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("http://",
                                                                          "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class AnomalySettings(BaseModel):
    """Each anomaly is an audit event (`"event": "anomaly"`) and a count in the
    `signal_rag_anomalies_total{kind=...}` metric; see docs/operations.md, "Anomalies", and
    agent/anomaly_rules.py. Each kind of anomaly is reported at most once per 10 minutes per user
    (globally for the global kinds); the detector keeps at most 10,000 users in memory, the
    least recently seen forgotten first (with their mute)."""

    model_config = ConfigDict(title="Anomalies (OBS-7)")

    enabled: bool = Field(True, description="`false`: no anomaly detection")
    long_message_chars: int = Field(
        1500, ge=1, description="a message at least this long is reported (`long_message`, "
                                "`over_threshold`)")
    median_factor: float = Field(
        5.0, gt=1, description="…or one at least this many times the sender's median length "
                               "(over their last 25 messages, from the 6th on, and at least "
                               "300 characters)")
    burst_messages: int = Field(8, ge=2, description="this many messages from one user…")
    burst_window: float = Field(
        30.0, gt=0, description="…within this many seconds is a `burst` (all users together: "
                                "300 in 60 s is a `global_burst`)")
    off_hours: str = Field(
        "", description="hours such as `22-06` (22:00 to 05:59, may wrap midnight) in which "
                        "any message is reported as `off_hours`",
        json_schema_extra={DOC_DEFAULT: "empty (off)"})
    timezone: str = Field(
        "UTC", description="IANA time zone of the off hours, e.g. `Europe/Berlin` (checked at "
                           "start)")
    block_count: int = Field(
        3, ge=1, description="this many guard-blocked messages from one user…")
    block_window: float = Field(
        600.0, gt=0, description="…within this many seconds are `repeated_blocks`")
    mute: bool = Field(
        False, description="`true`: `repeated_blocks` also mutes the user (no answers) for "
                           "`MUTE_MINUTES`. Off by default: someone rephrasing a question that "
                           "trips a rule would be silenced")
    mute_minutes: float = Field(30.0, gt=0, le=10_080, description="length of a mute")
    probe_users: int = Field(
        5, ge=1, description="this many new users whose first message was blocked…")
    probe_window: float = Field(
        600.0, gt=0, description="…within this many seconds is `probing` (global), which also "
                                 "raises the `attack_probing` alert")

    @field_validator("off_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        from agent.anomaly_rules import parse_off_hours

        parse_off_hours(value)
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from agent.anomaly_rules import load_timezone

        load_timezone(value)
        return value


class FeedbackSettings(BaseModel):
    """Reactions on answers (EV-4): 👍 counts as helpful and 👎 as not helpful, from the
    person who asked; other emoji are ignored. By default only content-free facts are kept
    (route, cited sources and chunk ids, top similarity); see docs/evals.md, "Feedback"."""

    model_config = ConfigDict(title="Feedback (EV-4)")

    keep_text: bool = Field(
        False, description="`true`: a 👍 or 👎 also keeps the question it answers, so "
                           "`signal-rag eval feedback --export` can write an eval dataset; "
                           "/info tells users, /forget and the disappearing-message timer "
                           "delete it")


class Settings(BaseSettings):
    """Every setting, read once at start-up by `load_settings`; the top level holds the
    paths and what applies to every command, each group is a nested model."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__",
                                      secrets_nested_delimiter="__",
                                      extra="ignore", validate_default=True,
                                      title="Paths and general")

    data_dir: Path = Field(Path("data"),
                           description="all state: index, audit log, generated audit pepper",
                           json_schema_extra={DOC_DEFAULT: "`./data`"})
    index_dir: Path | None = Field(
        None, description="the index directory; `<dir>.last-good` is kept beside it",
        json_schema_extra={DOC_DEFAULT: "`$SIGNAL_RAG_DATA_DIR/index`"})
    max_input_chars: int = Field(
        2000, ge=1, le=100_000,
        description="longer messages are refused before any model call")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO",
        description="`DEBUG`, `INFO`, `WARNING` or `ERROR`; logs are JSON lines, on stdout for "
                    "`serve` and on stderr for the other commands (their stdout carries "
                    "answers and reports)")
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
    dependencies: DependencySettings = DependencySettings()
    alerts: AlertSettings = AlertSettings()
    anomalies: AnomalySettings = AnomalySettings()
    feedback: FeedbackSettings = FeedbackSettings()

    @classmethod
    def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Docker secrets may set nested values too: a file `signal_rag_llm__api_key`."""
        return (init_settings, env_settings, dotenv_settings,
                OwnSecretsSource(file_secret_settings))

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


class OwnSecretsSource(NestedSecretsSettingsSource):
    """Docker secrets, reading only our own files (`signal_rag_*`, any case) from the folder.

    pydantic-settings reads every file below the secrets folder, but `/run/secrets` or a
    mounted Kubernetes secret may hold other programs' secrets, binary keys among them: those
    are none of our business and must neither be read nor stop the bot. A file of ours that
    is not UTF-8 text, or cannot be read, is named in the error (its name, never its bytes).
    """

    @classmethod
    def load_secrets(cls, path: Path) -> dict[str, str]:
        secrets: dict[str, str] = {}
        for entry in sorted(path.iterdir()):
            if not entry.name.lower().startswith(ENV_PREFIX.lower()) or not entry.is_file():
                continue
            try:
                secrets[entry.name] = entry.read_text(encoding="utf-8").strip()
            except UnicodeDecodeError:
                raise ConfigError(f"{ENV_PREFIX}SECRETS_DIR: the secret file {entry} is not "
                                  "UTF-8 text") from None
            except OSError as exc:
                raise ConfigError(f"{ENV_PREFIX}SECRETS_DIR: cannot read the secret file "
                                  f"{entry} ({exc.strerror or type(exc).__name__})") from None
        return secrets


def _unparsable(exc: SettingsError) -> str:
    """pydantic-settings reads a whole group of settings (`SIGNAL_RAG_LLM`, or a secret file
    `signal_rag_llm`) as a JSON object; name it without quoting its value (found by
    tests/fuzz/test_fuzz_settings.py: it escaped as a SettingsError)."""
    match = re.search(r'field "([^"]+)" from source "(\w+)"', str(exc))
    if match is None:
        return "invalid configuration: a value could not be parsed"
    where = "a secret file" if "Secret" in match[2] else "the environment"
    return (f"{ENV_PREFIX}{match[1].upper()}: not a JSON object (in {where}); set the "
            f"group's settings one by one, e.g. {ENV_PREFIX}{match[1].upper()}__<NAME>")


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
    except SettingsError as exc:  # a group (e.g. SIGNAL_RAG_LLM) set to a value, not JSON
        raise ConfigError(_unparsable(exc)) from None
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            if error["loc"]:
                problems.append(f"{env_name(error['loc'])}: {message}")
            else:
                problems.append(message)
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
