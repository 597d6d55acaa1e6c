"""Per-user state of the Signal service: activation, last answer's sources, feedback.

Keyed by the HMAC of the Signal service id (never the raw id or a phone number), in its
own small SQLite file beside the inbox/outbox. Why not the inbox store: this state lives
as long as the user does, the inbox only until a message is answered.

Durability: WAL with `synchronous=NORMAL`, which survives a killed process; only a power
cut can roll back the last commits (an activation to repeat, a thread's activity time),
which costs nothing that matters. The inbox, where a lost commit loses a message, is FULL.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

_SCHEMA = """
CREATE TABLE IF NOT EXISTS activated (user TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    sent_ts INTEGER PRIMARY KEY, user TEXT NOT NULL, chat TEXT NOT NULL, at REAL NOT NULL,
    sources TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS answers_by_user ON answers (user, chat, at);
CREATE TABLE IF NOT EXISTS threads (
    user TEXT NOT NULL, chat TEXT NOT NULL, last_at REAL NOT NULL,
    expires INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (user, chat));
CREATE TABLE IF NOT EXISTS feedback (
    user TEXT NOT NULL, sent_ts INTEGER NOT NULL, emoji TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (user, sent_ts));
"""


class Thread(NamedTuple):
    """One user's conversation in one chat."""

    user: str
    chat: str
    expires: int
    """The chat's disappearing-message timer in seconds (0: off), SIG-7."""


class UserDirectory:
    """Thread-safe; one connection guarded by a lock (calls are short)."""

    def __init__(self, path: str | os.PathLike[str],
                 clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        if not file.exists():
            file.touch(mode=0o600)
        self._db = sqlite3.connect(file, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(threads)")}
        if "expires" not in columns:  # a directory written before SIG-7
            self._db.execute("ALTER TABLE threads ADD COLUMN expires INTEGER NOT NULL DEFAULT 0")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _one(self, sql: str, *args: Any) -> Any:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _run(self, sql: str, *args: Any) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def is_activated(self, user: str) -> bool:
        return self._one("SELECT 1 FROM activated WHERE user = ?", user) is not None

    def activate(self, user: str) -> None:
        self._run("INSERT OR IGNORE INTO activated (user, at) VALUES (?, ?)", user, self._clock())

    def remember_answer(self, user: str, chat: str, sent_ts: int,
                        sources: list[dict[str, Any]]) -> None:
        """Link a sent answer to its user (for reactions) and keep its sources (/sources)."""
        self._run("INSERT OR REPLACE INTO answers (sent_ts, user, chat, at, sources) "
                  "VALUES (?, ?, ?, ?, ?)", sent_ts, user, chat, self._clock(),
                  json.dumps(sources))

    def last_sources(self, user: str, chat: str) -> list[dict[str, Any]]:
        row = self._one("SELECT sources FROM answers WHERE user = ? AND chat = ? "
                        "ORDER BY at DESC, sent_ts DESC LIMIT 1", user, chat)
        return list(json.loads(row[0])) if row else []

    def touch_thread(self, user: str, chat: str, *, expires: int = 0) -> None:
        """Note that this user's conversation in `chat` was active now (memory expiry), and
        the chat's disappearing-message timer as of this message."""
        self._run("INSERT OR REPLACE INTO threads (user, chat, last_at, expires) "
                  "VALUES (?, ?, ?, ?)", user, chat, self._clock(), max(0, expires))

    def active_users(self, within: float) -> int:
        """How many users had a conversation in the last `within` seconds (a gauge)."""
        row = self._one("SELECT COUNT(DISTINCT user) FROM threads WHERE last_at >= ?",
                        self._clock() - within)
        return int(row[0])

    def chats(self, user: str) -> list[str]:
        with self._lock:
            return [str(r[0]) for r in self._db.execute(
                "SELECT chat FROM threads WHERE user = ?", (user,))]

    def inactive_threads(self, older_than: float) -> list[Thread]:
        """Threads idle for more than `older_than` seconds, or for more than their chat's
        disappearing-message timer when that is shorter."""
        with self._lock:
            return [Thread(str(r[0]), str(r[1]), int(r[2])) for r in self._db.execute(
                "SELECT user, chat, expires FROM threads WHERE last_at < ? - CASE "
                "WHEN expires > 0 AND expires < ? THEN expires ELSE ? END",
                (self._clock(), older_than, older_than))]

    def drop_thread(self, user: str, chat: str, *, purge_answers: bool = False) -> None:
        """Forget the thread; with `purge_answers`, also the chat's answer records (the
        sources of a disappearing chat must disappear with it)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM threads WHERE user = ? AND chat = ?", (user, chat))
            if purge_answers:
                self._db.execute("DELETE FROM answers WHERE user = ? AND chat = ?",
                                 (user, chat))
            self._db.execute("COMMIT")

    def last_answer_timestamp(self, user: str, chat: str) -> int | None:
        row = self._one("SELECT sent_ts FROM answers WHERE user = ? AND chat = ? "
                        "ORDER BY at DESC, sent_ts DESC LIMIT 1", user, chat)
        return int(row[0]) if row else None

    def record_feedback(self, user: str, sent_ts: int, emoji: str, *, removed: bool) -> bool:
        """Store a reaction on one of the bot's answers; False if it is not one of ours."""
        if self._one("SELECT 1 FROM answers WHERE sent_ts = ?", sent_ts) is None:
            return False
        if removed:
            self._run("DELETE FROM feedback WHERE user = ? AND sent_ts = ?", user, sent_ts)
        else:
            self._run("INSERT OR REPLACE INTO feedback (user, sent_ts, emoji, at) "
                      "VALUES (?, ?, ?, ?)", user, sent_ts, emoji, self._clock())
        return True

    def feedback(self) -> list[tuple[int, str]]:
        """(answer timestamp, emoji) pairs, for exporting an eval set later."""
        with self._lock:
            return [(int(r[0]), str(r[1]))
                    for r in self._db.execute("SELECT sent_ts, emoji FROM feedback")]

    def reset(self, user: str, chat: str) -> None:
        self._run("DELETE FROM answers WHERE user = ? AND chat = ?", user, chat)

    def forget(self, user: str) -> None:
        """Everything about the user (/forget); activation too, so they must re-activate."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for table in ("activated", "answers", "feedback", "threads"):
                self._db.execute(f"DELETE FROM {table} WHERE user = ?", (user,))  # noqa: S608
            self._db.execute("COMMIT")
