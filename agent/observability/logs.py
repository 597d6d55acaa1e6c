"""Structured JSON logs with redaction, to a stream and a rotating file (OBS-1).

Every event passes `Redactor` last, whatever its source (our structlog calls, stdlib
`extra={...}` fields, libraries' own log records): fields that carry content by name
(text, question, reply, passphrase, ...) are dropped, and in every other string phone
numbers, API keys and tokens are masked, Signal service ids (UUIDs) become their HMAC,
and CR/LF/ANSI and other control characters are escaped so a value cannot forge a log
line or a terminal sequence. The rule for callers stays: log ids, counts and timings,
never message text; this is the net under it.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, TextIO

import structlog

DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_BACKUPS = 7
NOISY_LOGGERS = ("httpx", "httpcore", "openai", "sentence_transformers", "transformers",
                 "faiss", "bm25s", "langgraph", "guardrails", "opentelemetry", "urllib3")
"""Capped at WARNING: some log request URLs or, like langgraph, retried exceptions' text."""

CONTENT_KEYS = frozenset({
    "text", "message_text", "question", "answer", "reply", "body", "content", "prompt",
    "completion", "passphrase", "password", "api_key", "apikey", "token", "secret",
    "authorization", "canary", "quote", "number", "phone", "source_number", "recipient",
})
"""Fields whose value is dropped outright: they hold content or identities by name."""
REDACTED = "[redacted]"

_SECRETS = re.compile(
    r"sk-[A-Za-z0-9_-]{16,}"                                   # OpenAI-style keys
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{12,}"                  # bearer tokens
    r"|gh[pousr]_[A-Za-z0-9]{20,}"                             # GitHub tokens
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"                          # Slack tokens
    r"|AKIA[0-9A-Z]{16}"                                       # AWS access key ids
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWTs
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----")
_PHONE = re.compile(r"\+[1-9]\d{6,14}\b")
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}\b")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(char: str) -> str:
    code = ord(char)
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or \
        (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


class Redactor:
    """A structlog processor; `hasher` turns a service id into its HMAC (given to
    `configure_logging` by `serve`, which has the pepper; without one ids are masked)."""

    def __init__(self, hasher: Callable[[str], str] | None = None) -> None:
        self.hasher = hasher

    def __call__(self, _logger: Any, _name: str, event: Mapping[str, Any]) -> dict[str, Any]:
        return {key: REDACTED if key.lower() in CONTENT_KEYS else self._value(value)
                for key, value in event.items()}

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.clean(value)
        if isinstance(value, Mapping):
            return {str(k): REDACTED if str(k).lower() in CONTENT_KEYS else self._value(v)
                    for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._value(item) for item in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.clean(repr(value))

    def clean(self, text: str) -> str:
        text = _SECRETS.sub("[secret]", text)
        text = _PHONE.sub("[phone]", text)
        text = _UUID.sub(self._uuid, text)
        text = _ANSI.sub("", text)
        return _CONTROL.sub(lambda m: _escape(m.group()), text)

    def _uuid(self, match: re.Match[str]) -> str:
        if self.hasher is None:
            return "[uuid]"
        return "user:" + self.hasher(match.group().lower())[:16]


REDACTOR = Redactor()
"""The one redactor of this process (logging is process-wide)."""


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Rotating log files created owner-only (0600): even redacted logs stay private."""

    def _open(self) -> TextIO:  # type: ignore[override]  # stdlib stubs say TextIOWrapper
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        descriptor = os.open(self.baseFilename, flags, 0o600)
        return open(descriptor, "a", encoding=self.encoding or "utf-8",
                    errors=self.errors)

    failed_writes = 0
    """Lines the file did not take (disk full, I/O error): the stream still has them."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - stdlib name
        """A write the disk refused drops this line from the file, quietly: the default
        prints a traceback to stderr for every line while the disk is full (found by the
        fault campaign), and the same line went to the stream anyway."""
        if isinstance(sys.exc_info()[1], OSError):
            self.failed_writes += 1
            return
        super().handleError(record)


def _shared_processors() -> list[structlog.types.Processor]:
    return [
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),  # stdlib `extra={...}` fields
        structlog.processors.format_exc_info,
    ]


def json_formatter() -> logging.Formatter:
    """What turns any log record into the redacted JSON line operators see."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, REDACTOR,
                    structlog.processors.JSONRenderer()])


def configure_logging(level: str = "INFO", *, stream: IO[str] | None = None,
                      file: Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                      backups: int = DEFAULT_BACKUPS,
                      hasher: Callable[[str], str] | None = None) -> None:
    """JSON lines to `stream` (stderr unless given; `serve` uses stdout) and, when `file`
    is set, to a rotating file of `max_bytes` × `backups`. `hasher`: service ids in any
    line become their HMAC (else they are masked)."""
    REDACTOR.hasher = hasher  # logging is process-wide, and so is its one redactor
    shared = _shared_processors()
    formatter = json_formatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(PrivateRotatingFileHandler(file, maxBytes=max_bytes,
                                                   backupCount=backups, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.setLevel(level)  # some libraries (bm25s) force their own loggers to DEBUG
    root = logging.getLogger()
    for old in root.handlers:
        old.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
