"""Durable inbox and outbox in SQLite: every message answered exactly once (SIG-2, SIG-4, RES-2).

Why it exists: the bot must survive `kill -9` at any point without losing a message or
answering one twice. Every incoming message is written here before any work starts, and
its reply parts are written here before any is sent; both live in one SQLite file so
the step from "being answered" to "answered" is one transaction. stdlib `sqlite3` is
enough: one process owns the file, and no queue library gives this two-table transaction.

State machine (one inbox row per message, keyed by (sender UUID, message timestamp)):

    accept ─► pending ─claim─► processing ─record_reply─► answered   (payload deleted)
    admit ─────────────────────►┘  (accept + claim in one statement)
                 │                 │  ▲
                 │                 └──┘ claim again after a restart (attempts + 1)
                 └── mark_ignored ─┴────────────────────► ignored    (payload deleted)

    One outbox row per reply part, created only by `record_reply`, in the transaction
    that closes the inbox row:

    pending ─mark_sent─► sent               (text deleted; sent timestamp kept)
      │  ▲
      │  └─ mark_retry: attempts + 1, next_attempt_at, last error class
      └─mark_failed─► failed_permanent      (text deleted)

Where a `kill -9` can land, and what happens on restart:

- before `accept` commits: the message never reached us; the transport owns that window
  (signal-cli in manual receive mode, SIG-2). After it commits, a redelivery of the same
  (sender, timestamp) is ignored: `accept` returns False.
- after `accept`, before `record_reply` commits: the row is pending or processing with its
  payload; `claim_pending` hands it out again, the graph runs again, nothing was sent yet.
- after `record_reply`: the inbox row is answered, so it is never processed again; its
  parts are pending in the outbox and `due_outbox` hands them out.
- between the daemon accepting a send and `mark_sent` committing: that part is still
  pending and is sent again — the one duplicate a kill can cause. The sender sends one
  part at a time per chat and marks each before the next, so one kill duplicates at most
  one part per chat that was being sent to (never two parts of one reply).
- `record_reply` on a row that is no longer pending/processing does nothing and returns
  False, so two concurrent handlers cannot give one message two answers.

Durability: WAL journal with `synchronous=FULL`. WAL with NORMAL already survives a
process kill; FULL also fsyncs the WAL on every commit, so a power cut or kernel crash
cannot roll back a committed `accept` (a lost message: signal-cli has already acknowledged
it to Signal's servers) or a `mark_sent` (a duplicate). The cost is one fsync per commit,
three writes per answered message (`admit`, `record_reply`, `mark_sent`).

Group commit (PERF-2): the writes of the state machine (`accept`, `admit`, `claim`,
`record_reply`, `mark_ignored`, `mark_sent`, `mark_retry`, `mark_failed`) made by other
threads while one commits wait, then go together in the next transaction: one fsync for
all of them (on a busy disk an fsync took ~4 ms, and one commit at a time capped the bot
near 80 answers/s). Each call still returns only once its own write is committed, so what
a caller does next (send a part, answer a message) never runs ahead of the disk, and a
`kill -9` leaves each write either committed or not, as before. Each write runs inside a
savepoint: one that fails (a constraint) is undone alone and raises in its own caller; a
transaction that cannot commit (disk full, I/O error) raises in every caller of the
group, none of whose writes was kept.

Dedupe horizon: redeliveries are recognised while the inbox row exists, so
`purge_answered` must keep rows longer than any redelivery can arrive (days, not minutes).

Concurrency: one `Store` holds one connection and a lock that serialises its use, so it
may be shared by the asyncio tasks of one event loop (calls block for about one fsync)
or by threads (e.g. `asyncio.to_thread`; writes from several threads are group-committed,
see above). One process owns a database file.

Privacy: payloads and reply texts are deleted as soon as they are no longer needed;
`forget_user` deletes all rows of a sender. This module logs nothing, and its errors
never carry message text.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Generic, Literal, NamedTuple, TypeVar

SCHEMA_VERSION = 2
MAX_ERROR_CLASS_CHARS = 100

InboxStatus = Literal["pending", "processing", "answered", "ignored"]
OutboxStatus = Literal["pending", "sent", "failed_permanent"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    sender_uuid   TEXT    NOT NULL,
    msg_timestamp INTEGER NOT NULL,
    chat_id       TEXT    NOT NULL,
    received_at   REAL    NOT NULL,
    status        TEXT    NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'processing', 'answered', 'ignored')),
    payload       TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    closed_at     REAL,
    PRIMARY KEY (sender_uuid, msg_timestamp)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS inbox_open ON inbox (status, received_at);
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    sender_uuid     TEXT    NOT NULL,
    msg_timestamp   INTEGER NOT NULL,
    part            INTEGER NOT NULL,
    recipient       TEXT,
    group_id        TEXT,
    text            TEXT,
    quote_author    TEXT,
    quote_timestamp INTEGER,
    status          TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'failed_permanent')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL    NOT NULL,
    sent_timestamp  INTEGER,
    last_error      TEXT,
    created_at      REAL    NOT NULL,
    closed_at       REAL,
    trace           TEXT,
    UNIQUE (sender_uuid, msg_timestamp, part),
    CHECK ((recipient IS NULL) <> (group_id IS NULL)),
    CHECK (status <> 'pending' OR text IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
"""

log = logging.getLogger(__name__)


T = TypeVar("T")


class _Write(Generic[T]):
    """One caller's write waiting for (or done by) a group commit."""

    __slots__ = ("done", "error", "op", "result")

    def __init__(self, op: Callable[[sqlite3.Connection], T]) -> None:
        self.op = op
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None


class StoreError(RuntimeError):
    """The database cannot be used as this module needs it (wrong mode, newer schema)."""


class InboxKey(NamedTuple):
    """Signal identifies a message by its sender and the sender's timestamp (ms)."""

    sender_uuid: str
    msg_timestamp: int


@dataclass(frozen=True, slots=True)
class InboxMessage:
    key: InboxKey
    chat_id: str
    received_at: float
    status: InboxStatus
    attempts: int
    """How many times it has been claimed, this claim included (poison-message guard)."""
    payload: dict[str, Any] | None
    """The message content; None once answered or ignored."""


@dataclass(frozen=True, slots=True)
class ReplyPart:
    """One message to send; exactly one of `recipient` (a UUID) and `group_id` is set."""

    text: str
    recipient: str | None = None
    group_id: str | None = None
    quote_author: str | None = None
    quote_timestamp: int | None = None
    trace: str | None = None
    """W3C trace context of the message (OBS-3), so its send continues the trace."""

    def __post_init__(self) -> None:
        if (self.recipient is None) == (self.group_id is None):
            raise ValueError("exactly one of recipient and group_id must be set")


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    key: InboxKey
    part: int
    text: str
    recipient: str | None
    group_id: str | None
    quote_author: str | None
    quote_timestamp: int | None
    attempts: int
    """Send attempts that already failed transiently."""
    trace: str | None = None


@dataclass(frozen=True, slots=True)
class StoreCounts:
    """Row counts by status, for /readyz, /status and metrics."""

    inbox: dict[str, int]
    outbox: dict[str, int]
    oldest_unanswered_age: float | None
    """Seconds since the oldest pending/processing message arrived (None when none)."""


class Store:
    """The inbox and outbox of one bot process, in one SQLite file."""

    def __init__(self, path: str | os.PathLike[str],
                 clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        """Held by whoever uses the connection: a group commit, a read, a maintenance call."""
        self._queue = threading.Condition(threading.Lock())
        self._queued: list[_Write[Any]] = []
        """Writes waiting for the next group commit (see the module docstring)."""
        self._leading = False
        """A writer is committing a group: the others wait on `_queue`, not on `_lock`."""
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # Message content lives here: create the file owner-only. SQLite gives the -wal
        # and -shm files the database file's permissions.
        self._db, self.damaged_aside = open_or_set_aside(self._path, self._open, clock)
        """`damaged_aside`: where a damaged file was moved at open (None: it opened)."""

    def _open(self) -> sqlite3.Connection:
        os.close(os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600))
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE) where they matter.
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        self._db = db
        try:
            self._configure()
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise DamagedStoreError("quick_check failed")
        except BaseException:
            db.close()
            raise
        return db

    def _configure(self) -> None:
        db = self._db
        db.execute("PRAGMA busy_timeout = 5000")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"SQLite refused WAL mode (got {mode!r}); use a local disk")
        db.execute("PRAGMA synchronous = FULL")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(f"database schema {version} is newer than this code "
                             f"({SCHEMA_VERSION}); refusing to touch it")
        if version < SCHEMA_VERSION:
            with self._tx():
                if version == 0:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                if version == 1:  # 2 adds the trace context of each reply part (OBS-3)
                    db.execute("ALTER TABLE outbox ADD COLUMN trace TEXT")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE takes the write lock up front (no upgrade
        deadlock with another connection)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            # SQLite rolls some failures back itself (SQLITE_FULL, SQLITE_IOERR): a ROLLBACK
            # then would fail and hide the original error, which callers classify.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run `op` in a write transaction, together with the writes other threads queue
        meanwhile (group commit); return its result once committed, or raise its error."""
        write = _Write(op)
        with self._queue:
            self._queued.append(write)
            while self._leading and not write.done:  # woken when that group is committed
                self._queue.wait()
            lead = not write.done
            if lead:
                self._leading = True
        if lead:  # no commit took it along: this caller commits everything queued
            try:
                with self._lock:
                    with self._queue:
                        group, self._queued = self._queued, []
                    self._commit(group)
            finally:
                with self._queue:
                    self._leading = False
                    self._queue.notify_all()  # done writers return, one of the rest leads
        if write.error is not None:
            raise write.error
        return write.result  # type: ignore[return-value]  # set: `op` returned

    def _commit(self, group: list[_Write[Any]]) -> None:
        """One transaction for `group` (the caller holds `_lock`); a savepoint per write
        when there are several, so one that fails is undone alone."""
        db = self._db
        try:
            with self._tx():
                if len(group) == 1:
                    group[0].result = group[0].op(db)
                else:
                    for write in group:
                        db.execute("SAVEPOINT grouped_write")
                        try:
                            write.result = write.op(db)
                        except Exception as exc:  # raised in its own caller, or by the group
                            if not db.in_transaction:
                                # SQLite rolled the whole transaction back (disk full, I/O
                                # error): the earlier writes are gone too, so the group
                                # fails with this error, which every caller classifies.
                                raise
                            db.execute("ROLLBACK TO grouped_write")
                            write.error = exc
                        db.execute("RELEASE grouped_write")
        except BaseException as exc:  # noqa: BLE001 - handed to every caller, who raises it
            # Nothing of the group was kept: every caller gets the error (its own copy, as
            # the callers raise it in their own threads).
            if db.in_transaction:  # a COMMIT that failed can leave the transaction open
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            for index, write in enumerate(group):
                write.result = None
                write.error = exc if index == 0 else _copy_error(exc)
        finally:
            for write in group:
                write.done = True

    # --- inbox ------------------------------------------------------------------------

    def accept(self, sender_uuid: str, msg_timestamp: int, chat_id: str,
               payload: Mapping[str, Any]) -> bool:
        """Persist an incoming message; False if this (sender, timestamp) is already known."""
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))

        def insert(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "INSERT OR IGNORE INTO inbox (sender_uuid, msg_timestamp, chat_id, "
                "received_at, payload) VALUES (?, ?, ?, ?, ?)",
                (sender_uuid, msg_timestamp, chat_id, self._clock(), body))
            return cursor.rowcount == 1

        return self._write(insert)

    def admit(self, sender_uuid: str, msg_timestamp: int, chat_id: str,
              payload: Mapping[str, Any]) -> InboxMessage | None:
        """`accept` and `claim` in one statement (one fsync instead of two): the message,
        already processing; None if this (sender, timestamp) is already known."""
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))

        def insert(db: sqlite3.Connection) -> Any:
            return db.execute(
                "INSERT OR IGNORE INTO inbox (sender_uuid, msg_timestamp, chat_id, "
                "received_at, payload, status, attempts) "
                "VALUES (?, ?, ?, ?, ?, 'processing', 1) "
                "RETURNING sender_uuid, msg_timestamp, chat_id, received_at, status, "
                "attempts, payload",
                (sender_uuid, msg_timestamp, chat_id, self._clock(), body)).fetchone()

        row = self._write(insert)
        return None if row is None else _inbox_message(row)

    def claim(self, key: InboxKey) -> InboxMessage | None:
        """Mark one open message processing and return it; None if closed or unknown."""
        row = self._write(lambda db: db.execute(
            "UPDATE inbox SET status = 'processing', attempts = attempts + 1 "
            "WHERE sender_uuid = ? AND msg_timestamp = ? "
            "AND status IN ('pending', 'processing') "
            "RETURNING sender_uuid, msg_timestamp, chat_id, received_at, status, "
            "attempts, payload", tuple(key)).fetchone())
        return None if row is None else _inbox_message(row)

    def claim_pending(self, limit: int | None = None) -> list[InboxMessage]:
        """Claim every open message, oldest first: recovery after a restart, or a work loop."""
        with self._lock, self._tx() as db:
            keys = db.execute(
                "SELECT sender_uuid, msg_timestamp FROM inbox "
                "WHERE status IN ('pending', 'processing') "
                "ORDER BY received_at, msg_timestamp LIMIT ?",
                (-1 if limit is None else limit,)).fetchall()
            rows = [db.execute(
                "UPDATE inbox SET status = 'processing', attempts = attempts + 1 "
                "WHERE sender_uuid = ? AND msg_timestamp = ? "
                "RETURNING sender_uuid, msg_timestamp, chat_id, received_at, status, "
                "attempts, payload", tuple(key)).fetchone() for key in keys]
        return [_inbox_message(row) for row in rows]

    def record_reply(self, key: InboxKey, parts: Sequence[ReplyPart]) -> bool:
        """Queue the reply parts and close the message (content deleted), atomically.

        False, with nothing written, when the message is not open (already answered,
        ignored, forgotten or unknown): a message never gets a second answer.
        """
        if not parts:
            raise ValueError("a reply needs at least one part; use mark_ignored for silence")
        now = self._clock()

        def close_and_queue(db: sqlite3.Connection) -> bool:
            if not self._close(db, key, "answered", now):
                return False
            db.executemany(
                "INSERT INTO outbox (sender_uuid, msg_timestamp, part, recipient, group_id, "
                "text, quote_author, quote_timestamp, next_attempt_at, created_at, trace) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(key.sender_uuid, key.msg_timestamp, index, part.recipient, part.group_id,
                  part.text, part.quote_author, part.quote_timestamp, now, now, part.trace)
                 for index, part in enumerate(parts)])
            return True

        return self._write(close_and_queue)

    def mark_ignored(self, key: InboxKey) -> bool:
        """Close a message on purpose without a reply (non-activated user, silent refusal)."""
        return self._write(lambda db: self._close(db, key, "ignored", self._clock()))

    @staticmethod
    def _close(db: sqlite3.Connection, key: InboxKey, status: InboxStatus,
               now: float) -> bool:
        cursor = db.execute(
            "UPDATE inbox SET status = ?, payload = NULL, closed_at = ? "
            "WHERE sender_uuid = ? AND msg_timestamp = ? "
            "AND status IN ('pending', 'processing')", (status, now, *key))
        return cursor.rowcount == 1

    def get(self, key: InboxKey) -> InboxMessage | None:
        with self._lock:
            row = self._db.execute(
                "SELECT sender_uuid, msg_timestamp, chat_id, received_at, status, attempts, "
                "payload FROM inbox WHERE sender_uuid = ? AND msg_timestamp = ?",
                tuple(key)).fetchone()
        return None if row is None else _inbox_message(row)

    # --- outbox -----------------------------------------------------------------------

    def due_outbox(self, now: float | None = None, limit: int = 100) -> list[OutboxItem]:
        """Pending parts whose time has come, oldest first. A part waits while an earlier
        part of the same reply is still pending, so a reply never arrives out of order.

        A part created "in the future" is due too: the wall clock stepped back (NTP, a VM
        resumed), and its retry time, on the old clock, could be days away (found by the
        fault campaign). A smaller step back delays a retry by at most the step."""
        at = self._clock() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT id, sender_uuid, msg_timestamp, part, text, recipient, group_id, "
                "quote_author, quote_timestamp, attempts, trace FROM outbox AS o "
                "WHERE status = 'pending' AND (next_attempt_at <= ? OR created_at > ?) "
                "AND NOT EXISTS ("
                "  SELECT 1 FROM outbox AS e WHERE e.sender_uuid = o.sender_uuid "
                "  AND e.msg_timestamp = o.msg_timestamp AND e.part < o.part "
                "  AND e.status = 'pending') "
                "ORDER BY id LIMIT ?", (at, at, limit)).fetchall()
        return [OutboxItem(id=row[0], key=InboxKey(row[1], row[2]), part=row[3], text=row[4],
                           recipient=row[5], group_id=row[6], quote_author=row[7],
                           quote_timestamp=row[8], attempts=row[9], trace=row[10])
                for row in rows]

    def next_due_at(self) -> float | None:
        """When the earliest pending part is due (for the sender's sleep), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending'").fetchone()
        return None if row[0] is None else float(row[0])

    def mark_sent(self, item_id: int, sent_timestamp: int) -> bool:
        """The daemon accepted the part: close it, delete its text, keep its timestamp
        (reactions refer to it, SIG-6). False if it was not pending."""
        return self._write(lambda db: db.execute(
            "UPDATE outbox SET status = 'sent', sent_timestamp = ?, text = NULL, "
            "attempts = attempts + 1, closed_at = ? WHERE id = ? AND status = 'pending'",
            (sent_timestamp, self._clock(), item_id)).rowcount == 1)

    def mark_retry(self, item_id: int, next_at: float, error_class: str) -> bool:
        """A transient failure: try again at `next_at` (the caller computes the backoff)."""
        return self._write(lambda db: db.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, "
            "last_error = ? WHERE id = ? AND status = 'pending'",
            (next_at, _error_class(error_class), item_id)).rowcount == 1)

    def mark_failed(self, item_id: int, error_class: str) -> bool:
        """A permanent failure: stop trying and delete the text. Later parts still go."""
        return self._write(lambda db: db.execute(
            "UPDATE outbox SET status = 'failed_permanent', text = NULL, "
            "attempts = attempts + 1, last_error = ?, closed_at = ? "
            "WHERE id = ? AND status = 'pending'",
            (_error_class(error_class), self._clock(), item_id)).rowcount == 1)

    # --- housekeeping -----------------------------------------------------------------

    def purge_answered(self, older_than: float) -> int:
        """Delete closed rows closed more than `older_than` seconds ago; returns how many.

        Open rows and inbox rows with parts still pending are kept. A purged message is no
        longer recognised as a redelivery, so keep this longer than redeliveries can come.
        """
        cutoff = self._clock() - older_than
        with self._lock, self._tx() as db:
            outbox = db.execute(
                "DELETE FROM outbox WHERE status IN ('sent', 'failed_permanent') "
                "AND closed_at < ?", (cutoff,)).rowcount
            inbox = db.execute(
                "DELETE FROM inbox WHERE status IN ('answered', 'ignored') AND closed_at < ? "
                "AND NOT EXISTS (SELECT 1 FROM outbox AS o WHERE o.status = 'pending' "
                "AND o.sender_uuid = inbox.sender_uuid "
                "AND o.msg_timestamp = inbox.msg_timestamp)", (cutoff,)).rowcount
        return int(outbox) + int(inbox)

    def forget_user(self, sender_uuid: str, *, keep: InboxKey | None = None) -> int:
        """Delete every row about this sender (/forget), including unsent replies to them;
        returns how many. `keep` spares one message and its reply — the /forget request
        itself, so it can still be answered."""
        kept = (None, None) if keep is None else tuple(keep)
        with self._lock, self._tx() as db:
            outbox = db.execute(
                "DELETE FROM outbox WHERE (sender_uuid = ? OR recipient = ?) "
                "AND NOT (sender_uuid IS ? AND msg_timestamp IS ?)",
                (sender_uuid, sender_uuid, *kept)).rowcount
            inbox = db.execute(
                "DELETE FROM inbox WHERE sender_uuid = ? "
                "AND NOT (sender_uuid IS ? AND msg_timestamp IS ?)",
                (sender_uuid, *kept)).rowcount
        return int(outbox) + int(inbox)

    def counts(self) -> StoreCounts:
        with self._lock:
            inbox = dict.fromkeys(("pending", "processing", "answered", "ignored"), 0)
            inbox.update(self._db.execute(
                "SELECT status, COUNT(*) FROM inbox GROUP BY status").fetchall())
            outbox = dict.fromkeys(("pending", "sent", "failed_permanent"), 0)
            outbox.update(self._db.execute(
                "SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())
            oldest = self._db.execute(
                "SELECT MIN(received_at) FROM inbox "
                "WHERE status IN ('pending', 'processing')").fetchone()[0]
        age = None if oldest is None else max(0.0, self._clock() - float(oldest))
        return StoreCounts(inbox=inbox, outbox=outbox, oldest_unanswered_age=age)


DAMAGE_CODES: Final[frozenset[int]] = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
"""SQLite's primary result codes for a file that is not (or no longer) a database."""


class DamagedStoreError(sqlite3.DatabaseError):
    """A database file that opens but fails its `PRAGMA quick_check`."""


def is_damage(exc: sqlite3.DatabaseError) -> bool:
    """Only a damaged file is set aside: an integrity or programming error, a lock or a full
    disk says nothing about the file, and moving a good one aside loses its rows."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, DamagedStoreError) or (
        isinstance(code, int) and code & 0xFF in DAMAGE_CODES)


def open_or_set_aside(path: Path, open_db: Callable[[], sqlite3.Connection],
                      clock: Callable[[], float] = time.time,
                      ) -> tuple[sqlite3.Connection, Path | None]:
    """`open_db()`, or, when the file at `path` is damaged (not a database, failing its
    quick check), keep it aside as `<name>.damaged-<time>` (with its -wal and -shm) and
    open a fresh one: a damaged file would stop every start (a crash loop) and its rows
    cannot be read anyway. Returns the connection and where the damaged file went (None
    when it opened cleanly); the caller raises the `store_damaged` alert."""
    try:
        return open_db(), None
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise  # locked, read-only, disk full, or our own bug: the file may be fine
    aside = path.with_name(f"{path.name}.damaged-{int(clock())}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(aside.with_name(aside.name + suffix))
    log.error("store_damaged", extra={"file": path.name, "kept_as": aside.name})
    return open_db(), aside


def _copy_error(exc: BaseException) -> BaseException:
    """A copy of `exc` for another caller: sqlite3 errors keep their error code, and the
    copy keeps the original's cause and context, which callers also classify."""
    try:
        duplicate = copy.copy(exc)
    except Exception:  # noqa: BLE001 - an exception that cannot be copied is shared
        return exc
    duplicate.__cause__ = exc.__cause__
    duplicate.__context__ = exc.__context__
    duplicate.__suppress_context__ = exc.__suppress_context__
    return duplicate


def _error_class(name: str) -> str:
    # A class name, never an error message: messages can echo recipients or text.
    return name[:MAX_ERROR_CLASS_CHARS]


def _inbox_message(row: tuple[Any, ...]) -> InboxMessage:
    sender, timestamp, chat_id, received_at, status, attempts, payload = row
    return InboxMessage(key=InboxKey(sender, timestamp), chat_id=chat_id,
                        received_at=received_at, status=status, attempts=attempts,
                        payload=None if payload is None else json.loads(payload))
