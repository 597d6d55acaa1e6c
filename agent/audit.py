"""The audit trail (OBS-2): content-free JSON lines, user ids as HMAC-SHA256 with a pepper."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

PEPPER_FILE = ".audit-pepper"


class UserHasher:
    """Keyed hash of Signal ids: stable per deployment, useless without the pepper."""

    def __init__(self, pepper: bytes) -> None:
        if len(pepper) < 16:
            raise ValueError("the audit pepper must be at least 16 bytes")
        # Only the keyed state is kept, not the pepper's bytes: no attribute, repr or
        # traceback of this object can show the key.
        self._keyed = hmac.new(pepper, digestmod=hashlib.sha256)

    def __call__(self, user_id: str) -> str:
        mac = self._keyed.copy()
        mac.update(user_id.encode())
        return mac.hexdigest()


def load_or_create_pepper(data_dir: Path, configured: SecretStr | str | None) -> bytes:
    """The configured pepper, else one generated once and kept (0600) in the data dir."""
    if isinstance(configured, SecretStr):
        configured = configured.get_secret_value()
    if configured:
        return configured.encode()
    path = data_dir / PEPPER_FILE
    if path.exists():
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    pepper = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pepper)
    return pepper


class JsonLinesAuditSink:
    """Appends one JSON object per event; thread-safe; never receives message text."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._torn = _ends_mid_line(path)
        """A crash or a full disk cut the last line short: the next event starts a new line
        instead of being glued to it and lost (found by the fault campaign)."""

    def emit(self, event: Mapping[str, Any]) -> None:
        line = json.dumps({"ts": round(time.time(), 3), **event}, separators=(",", ":"),
                          ensure_ascii=True)
        with self._lock:
            try:
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(("\n" if self._torn else "") + line + "\n")
            except OSError:
                self._torn = True  # part of the line may be on disk
                raise
            self._torn = False


def _ends_mid_line(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"
    except OSError:  # no file yet, or an empty one
        return False


class MemoryAuditSink:
    """Keeps events in a list (tests, benchmarks)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: Mapping[str, Any]) -> None:
        self.events.append(dict(event))
