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

from agent.store import DamagedStoreError, open_or_set_aside

_SCHEMA = """
CREATE TABLE IF NOT EXISTS activated (user TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    sent_ts INTEGER PRIMARY KEY, user TEXT NOT NULL, chat TEXT NOT NULL, at REAL NOT NULL,
    sources TEXT NOT NULL, route TEXT, trace TEXT, facts TEXT, question TEXT);
CREATE INDEX IF NOT EXISTS answers_by_user ON answers (user, chat, at);
CREATE TABLE IF NOT EXISTS threads (
    user TEXT NOT NULL, chat TEXT NOT NULL, last_at REAL NOT NULL,
    expires INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (user, chat));
CREATE TABLE IF NOT EXISTS feedback (
    user TEXT NOT NULL, sent_ts INTEGER NOT NULL, emoji TEXT NOT NULL, at REAL NOT NULL,
    chat TEXT, reaction TEXT, route TEXT, facts TEXT, question TEXT,
    PRIMARY KEY (user, sent_ts));
"""
_ADDED_COLUMNS = {
    "threads": ("expires INTEGER NOT NULL DEFAULT 0",),  # SIG-7
    "answers": ("route TEXT", "trace TEXT", "facts TEXT", "question TEXT"),  # EV-4
    "feedback": ("chat TEXT", "reaction TEXT", "route TEXT", "facts TEXT",  # EV-4
                 "question TEXT"),
}
"""Columns added after the first release: a directory written before them gets them on
open (NULL in old rows, which the readers treat as unknown)."""
_INDEXES = """
CREATE INDEX IF NOT EXISTS answers_pending_question ON answers (at)
    WHERE question IS NOT NULL;
"""
"""Indexes on added columns: created once those exist."""
PENDING_QUESTION_S = 24 * 3600.0
"""With FEEDBACK__KEEP_TEXT, how long an answer's question waits for a reaction before it
is cleared (also cleared with its thread, /reset and /forget)."""


class AnsweredFor(NamedTuple):
    """What a reaction refers to: one of the bot's answers and the facts kept with it."""

    chat: str
    route: str | None
    trace: str | None
    """The answer's W3C trace context (the JSON that agent.observability.tracing.inject
    writes), so the reaction links to the answer's trace."""


class FeedbackRow(NamedTuple):
    """One stored reaction, for aggregation and export."""

    emoji: str
    reaction: str | None
    """`helpful` / `not_helpful` (None in rows written before EV-4)."""
    route: str | None
    facts: dict[str, Any]
    question: str | None
    """Only with FEEDBACK__KEEP_TEXT."""


class Thread(NamedTuple):
    """One user's conversation in one chat."""

    user: str
    chat: str
    expires: int
    """The chat's disappearing-message timer in seconds (0: off), SIG-7."""


class UserDirectory:
    """Thread-safe; one connection guarded by a lock (calls are short)."""

    def __init__(self, path: str | os.PathLike[str],
                 clock: Callable[[], float] = time.time, *, set_aside: bool = True) -> None:
        """`set_aside=False` (reports that only read it): a damaged file raises
        `sqlite3.DatabaseError` instead of being moved away from the bot."""
        self._clock = clock
        self._lock = threading.Lock()
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        if set_aside:
            self._db, self.damaged_aside = open_or_set_aside(self._path, self._open, clock)
        else:
            self._db, self.damaged_aside = self._open(), None
        """`damaged_aside`: where a damaged file was moved at open (None: it opened);
        a fresh directory then knows no one: users activate again."""

    def _open(self) -> sqlite3.Connection:
        if not self._path.exists():
            self._path.touch(mode=0o600)
        db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise DamagedStoreError("quick_check failed")
            db.executescript(_SCHEMA)
            for table, added in _ADDED_COLUMNS.items():
                columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                for column in added:
                    if column.split()[0] not in columns:
                        try:
                            db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
                        except sqlite3.OperationalError as exc:  # another process was first
                            if "duplicate column" not in str(exc):
                                raise
            db.executescript(_INDEXES)
        except BaseException:
            db.close()
            raise
        return db

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
                        sources: list[dict[str, Any]], *, route: str | None = None,
                        trace: str | None = None, facts: dict[str, Any] | None = None,
                        question: str | None = None) -> None:
        """Link a sent answer to its user (for reactions) and keep its sources (/sources),
        the route, trace and content-free facts a reaction is counted with (EV-4), and the
        question only when FEEDBACK__KEEP_TEXT is on (cleared by `expire_questions`)."""
        self._run("INSERT OR REPLACE INTO answers (sent_ts, user, chat, at, sources, route, "
                  "trace, facts, question) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  sent_ts, user, chat, self._clock(), json.dumps(sources), route, trace,
                  json.dumps(facts or {}), question)

    def expire_questions(self, older_than: float = PENDING_QUESTION_S) -> int:
        """Clear kept questions whose answer is older than `older_than` seconds; returns
        how many. Run by the housekeeping loop (it used to run on every send, a scan of
        the answers table); the partial index on `at` keeps it to the rows it clears."""
        return self._run("UPDATE answers SET question = NULL WHERE question IS NOT NULL "
                         "AND at < ?", self._clock() - older_than)

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
            # An idle thread's questions no longer wait for a reaction (EV-4).
            self._db.execute("UPDATE answers SET question = NULL WHERE user = ? AND chat = ?",
                             (user, chat))
            if purge_answers:
                self._db.execute("DELETE FROM answers WHERE user = ? AND chat = ?",
                                 (user, chat))
                # Kept feedback text of a disappearing chat disappears with it.
                self._db.execute("UPDATE feedback SET question = NULL "
                                 "WHERE user = ? AND chat = ?", (user, chat))
            self._db.execute("COMMIT")

    def last_answer_timestamp(self, user: str, chat: str) -> int | None:
        row = self._one("SELECT sent_ts FROM answers WHERE user = ? AND chat = ? "
                        "ORDER BY at DESC, sent_ts DESC LIMIT 1", user, chat)
        return int(row[0]) if row else None

    def answered_for(self, user: str, sent_ts: int) -> AnsweredFor | None:
        """The answer `sent_ts` if the bot sent it to `user` (None: unknown, purged, or
        someone else's answer, e.g. another group member's question)."""
        row = self._one("SELECT chat, route, trace FROM answers WHERE sent_ts = ? "
                        "AND user = ?", sent_ts, user)
        return AnsweredFor(str(row[0]), row[1], row[2]) if row else None

    def record_feedback(self, user: str, sent_ts: int, emoji: str, *, reaction: str | None,
                        removed: bool, keep_text: bool = False) -> bool:
        """Store or remove `user`'s reaction on one of the bot's answers to them; False if
        the answer is not theirs (or not known). `reaction` None: an emoji that does not
        count, which replaces (so deletes) a counted one. A removal deletes the stored
        reaction only when it names the same emoji. With `keep_text`, the answer's pending
        question is copied into the feedback row."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                answer = self._db.execute(
                    "SELECT chat, route, facts, question FROM answers WHERE sent_ts = ? "
                    "AND user = ?", (sent_ts, user)).fetchone()
                if answer is None:
                    self._db.execute("ROLLBACK")
                    return False
                if removed:
                    self._db.execute("DELETE FROM feedback WHERE user = ? AND sent_ts = ? "
                                     "AND emoji = ?", (user, sent_ts, emoji))
                elif reaction is None:
                    self._db.execute("DELETE FROM feedback WHERE user = ? AND sent_ts = ?",
                                     (user, sent_ts))
                else:
                    self._db.execute(
                        "INSERT OR REPLACE INTO feedback (user, sent_ts, emoji, at, chat, "
                        "reaction, route, facts, question) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (user, sent_ts, emoji, self._clock(), answer[0], reaction, answer[1],
                         answer[2], answer[3] if keep_text else None))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return True

    def feedback(self) -> list[tuple[int, str]]:
        """(answer timestamp, emoji) pairs."""
        with self._lock:
            return [(int(r[0]), str(r[1]))
                    for r in self._db.execute("SELECT sent_ts, emoji FROM feedback")]

    def feedback_rows(self) -> list[FeedbackRow]:
        """Every stored reaction with its content-free facts (and kept question, if any),
        oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT emoji, reaction, route, facts, question "
                                    "FROM feedback ORDER BY at, sent_ts").fetchall()
        return [FeedbackRow(str(r[0]), r[1], r[2], _json_object(r[3]), r[4]) for r in rows]

    def reset(self, user: str, chat: str) -> None:
        self._run("DELETE FROM answers WHERE user = ? AND chat = ?", user, chat)

    def forget(self, user: str) -> None:
        """Everything about the user (/forget); activation too, so they must re-activate."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for table in ("activated", "answers", "feedback", "threads"):
                self._db.execute(f"DELETE FROM {table} WHERE user = ?", (user,))  # noqa: S608
            self._db.execute("COMMIT")


def _json_object(text: str | None) -> dict[str, Any]:
    """A stored JSON object; an old row's NULL or unreadable value reads as empty."""
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
