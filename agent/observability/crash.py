"""What a command prints when something unexpected escapes it: one line, never a dump.

An uncaught exception normally prints a traceback, and Typer's default one shows every
frame's local variables: secrets, phone numbers and message text included, straight into
`docker logs`. The CLI's entry point hands such an exception here instead. Without the
debug switch (`SIGNAL_RAG_DEBUG=1`) the line names the command, the part of the code that
failed (a module of ours) and the error class, never the error's message, which may carry
values. With it, the plain traceback follows (no locals), each line through the log
redactor and with the configured secrets' values masked.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO

from agent.observability.logs import REDACTOR

DEBUG_ENV = "SIGNAL_RAG_DEBUG"
EXIT_INTERNAL = 4
"""Exit code of an unexpected internal error (the documented codes 0-3 are for expected
outcomes)."""
OUR_PACKAGES = ("agent", "graph", "guards", "knowledge", "evals")
SECRET_SUFFIXES = ("PASSPHRASE", "PEPPER", "API_KEY", "CANARY", "WEBHOOK_URL", "STORAGE_URL")
"""Settings whose values are masked in a debug traceback, from the environment or from
the secrets directory (a Redis URL may carry a password)."""
MIN_SECRET_CHARS = 4


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def failing_part(tb: TracebackType | None) -> str:
    """The innermost module of ours in the traceback (`knowledge.embeddings`), else the
    innermost module at all: a code location, never a value."""
    ours, last = None, None
    for frame, _ in traceback.walk_tb(tb):
        module = str(frame.f_globals.get("__name__", "?"))
        last = module
        if module.split(".", maxsplit=1)[0] in OUR_PACKAGES:
            ours = module
    return ours or last or "?"


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and the ones it was raised from or during, outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def summary(exc: BaseException, command: str) -> str:
    """`internal error in serve (knowledge.embeddings): EmbeddingError from ConnectError`."""
    chain = _chain(exc)
    part = failing_part(chain[-1].__traceback__ or exc.__traceback__)
    classes = type(exc).__name__
    if len(chain) > 1:
        classes += f" from {type(chain[-1]).__name__}"
    return f"internal error in {command} ({part}): {classes}"


def _secrets_dir() -> Path:
    return Path(os.environ.get("SIGNAL_RAG_SECRETS_DIR") or "/run/secrets")


def known_secrets(environ: dict[str, str] | None = None,
                  secrets_dir: Path | None = None) -> list[str]:
    """Values of the secret settings this process may hold, longest first."""
    environ = dict(os.environ) if environ is None else environ
    values = {value for name, value in environ.items()
              if (name.startswith("SIGNAL_RAG_") or name == "OPENAI_API_KEY")
              and name.upper().endswith(SECRET_SUFFIXES)}
    directory = secrets_dir or _secrets_dir()
    try:
        files = [f for f in directory.iterdir()
                 if f.is_file() and f.name.lower().startswith("signal_rag_")]
    except OSError:
        files = []
    for file in files:
        try:
            values.add(file.read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError):
            continue
    return sorted((v for v in values if len(v) >= MIN_SECRET_CHARS), key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        text = text.replace(value, "[secret]")
    return REDACTOR.clean(text)


def redacted_traceback(exc: BaseException) -> list[str]:
    """The plain traceback (no locals), line by line, each one redacted."""
    secrets = known_secrets()
    lines = "".join(traceback.format_exception(exc)).splitlines()
    return [scrub(line, secrets) for line in lines]


def report_crash(exc: BaseException, command: str, stream: IO[str] | None = None) -> int:
    """Print the one line (and the redacted traceback in debug mode); the exit code."""
    out = stream or sys.stderr
    hint = "" if debug_enabled() else f"; set {DEBUG_ENV}=1 for the traceback"
    out.write(f"error: {summary(exc, command)}{hint}\n")
    if debug_enabled():
        for line in redacted_traceback(exc):
            out.write(line + "\n")
    out.flush()
    return EXIT_INTERNAL


def install_thread_hook(command: str) -> None:
    """A background thread that dies prints the same one line, not Python's traceback."""

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and not isinstance(args.exc_value, SystemExit):
            report_crash(args.exc_value, f"{command} (thread)")

    threading.excepthook = hook
