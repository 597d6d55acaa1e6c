"""The audit trail (OBS-2): content-free JSON lines, user ids as HMAC-SHA256 with a pepper."""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

PEPPER_FILE = ".audit-pepper"

log = logging.getLogger(__name__)


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
    """Appends one JSON object per event to a file, from a writer thread of its own; never
    receives message text.

    Why a thread of its own: `emit` is called on the event loop (the graph's `audit` node
    runs there: the hop to LangGraph's thread pool cost more than the write, PERF-1), and
    an append can stall on a full or hung disk. The writer takes that wait; the loop and
    the pool never do. Events wait in order in a bounded queue (`max_pending`; beyond it an
    event is dropped and counted in `dropped`). A write that fails is tried again every
    `retry_interval` seconds, resuming after the last whole line that reached the disk, so
    a disk that comes back loses nothing and duplicates nothing. The writer stops after
    `idle_seconds` without work and the next `emit` starts it again. `flush` waits for what
    was emitted; every sink is flushed at interpreter exit and when `serve` stops
    (`flush_audit_files`)."""

    def __init__(self, path: Path, *, max_pending: int = 10_000, retry_interval: float = 1.0,
                 idle_seconds: float = 5.0) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._torn = _ends_mid_line(path)
        """A crash or a full disk cut the last line short: the next event starts a new line
        instead of being glued to it and lost (found by the fault campaign)."""
        self._max_pending = max_pending
        self._retry_interval = retry_interval
        self._idle_seconds = idle_seconds
        self._pending: deque[str] = deque()
        self._changed = threading.Condition()
        self._writer: threading.Thread | None = None
        self.dropped = 0
        """Events refused because `max_pending` were waiting for the disk."""

    def emit(self, event: Mapping[str, Any]) -> None:
        line = json.dumps({"ts": round(time.time(), 3), **event}, separators=(",", ":"),
                          ensure_ascii=True)
        with self._changed:
            dropped = 0
            if len(self._pending) >= self._max_pending:
                self.dropped += 1
                dropped = self.dropped
            else:
                self._pending.append(line)
                if self._writer is None:
                    self._writer = threading.Thread(target=self._write_pending, daemon=True,
                                                    name="audit-writer")
                    self._writer.start()
                    _WRITING.add(self)
                self._changed.notify_all()
        if dropped % 1000 == 1:  # the first drop, then one in 1,000; outside the lock
            log.error("audit_events_dropped", extra={"dropped": dropped,
                                                     "pending": self._max_pending})

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event emitted so far is on disk (or `timeout` s passed);
        whether it is."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._pending, timeout)

    @property
    def pending(self) -> int:
        """Events emitted and not yet on disk."""
        with self._changed:
            return len(self._pending)

    def _write_pending(self) -> None:
        failing = False
        while True:
            if failing:
                time.sleep(self._retry_interval)
            with self._changed:
                if not self._changed.wait_for(lambda: self._pending, self._idle_seconds):
                    self._writer = None
                    _WRITING.discard(self)
                    return
                batch = list(self._pending)
            try:
                written, error = self._append(batch)
            except Exception as exc:  # noqa: BLE001 - the events must not wait for a writer that died
                written, error = 0, exc
            if error is not None and not failing:
                log.error("audit_write_failed", extra={"error": type(error).__name__,
                                                       "pending": len(batch) - written})
            elif error is None and failing:
                log.warning("audit_write_recovered")
            failing = error is not None
            with self._changed:  # after the report: a flush that returns has seen it
                for _ in range(written):
                    self._pending.popleft()
                self._changed.notify_all()

    def _append(self, lines: list[str]) -> tuple[int, Exception | None]:
        """Append `lines` (ASCII) in one write: how many reached the disk whole, and the
        error that stopped the rest. A line cut short leaves the file torn."""
        data = (("\n" if self._torn else "") + "".join(line + "\n" for line in lines)).encode()
        done = 0
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                while done < len(data):
                    done += os.write(fd, data[done:])
            finally:
                os.close(fd)
        except OSError as exc:
            whole = data.count(b"\n", 1 if self._torn else 0, done)  # each line ends in one
            if done:
                self._torn = data[done - 1] != ord("\n")
            return whole, exc
        self._torn = False
        return len(lines), None


_WRITING: weakref.WeakSet[JsonLinesAuditSink] = weakref.WeakSet()
"""File sinks whose writer thread is running."""


def flush_audit_files(timeout: float = 5.0) -> int:
    """Wait (up to `timeout` s in all) for every file sink's events to reach the disk; how
    many events are still waiting (logged: a stalled disk keeps them)."""
    deadline = time.monotonic() + timeout
    left = 0
    for sink in list(_WRITING):
        sink.flush(max(0.0, deadline - time.monotonic()))
        left += sink.pending
    if left:
        log.error("audit_events_unwritten", extra={"pending": left})
    return left


atexit.register(flush_audit_files)


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
