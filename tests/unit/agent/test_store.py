"""The durable inbox/outbox: dedupe, the one-transaction reply, retries, forgetting."""

from __future__ import annotations

import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.store import (
    SCHEMA_VERSION,
    InboxKey,
    ReplyPart,
    Store,
    StoreError,
    open_or_set_aside,
)

ALICE = "a1a1a1a1-0000-4000-8000-000000000001"
BOB = "b2b2b2b2-0000-4000-8000-000000000002"
GROUP = "Z3JvdXAtaWQ="


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "bot.sqlite3"


@pytest.fixture
def store(db_path: Path, clock: FakeClock) -> Iterator[Store]:
    with Store(db_path, clock=clock) as opened:
        yield opened


def accept(store: Store, sender: str = ALICE, ts: int = 1, text: str = "hi") -> InboxKey:
    assert store.accept(sender, ts, sender, {"text": text})
    return InboxKey(sender, ts)


def test_pragmas_and_file_mode(store: Store, db_path: Path) -> None:
    db = sqlite3.connect(db_path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_redelivery_is_deduplicated(store: Store) -> None:
    assert store.accept(ALICE, 100, ALICE, {"text": "question"})
    assert not store.accept(ALICE, 100, ALICE, {"text": "question"})
    assert store.accept(ALICE, 101, ALICE, {"text": "another"})
    assert store.accept(BOB, 100, BOB, {"text": "same timestamp, other sender"})
    assert store.counts().inbox["pending"] == 3
    # Still deduplicated once answered: the row outlives its content.
    key = InboxKey(ALICE, 100)
    store.claim(key)
    store.record_reply(key, [ReplyPart("answer", recipient=ALICE)])
    assert not store.accept(ALICE, 100, ALICE, {"text": "question"})


def test_claim_returns_the_payload_and_counts_attempts(store: Store) -> None:
    key = accept(store, text="what is compost?")
    first = store.claim(key)
    assert first is not None
    assert first.payload == {"text": "what is compost?"}
    assert (first.status, first.attempts, first.chat_id) == ("processing", 1, ALICE)
    again = store.claim(key)
    assert again is not None and again.attempts == 2
    assert store.claim(InboxKey(BOB, 9)) is None


def test_claim_pending_recovers_open_messages_oldest_first(store: Store,
                                                           clock: FakeClock) -> None:
    k1 = accept(store, ts=1)
    clock.now += 1
    k2 = accept(store, BOB, ts=2)
    clock.now += 1
    k3 = accept(store, ts=3)
    store.claim(k2)
    store.claim(k3)
    store.record_reply(k3, [ReplyPart("done", recipient=ALICE)])
    recovered = store.claim_pending()
    assert [m.key for m in recovered] == [k1, k2]
    assert [m.attempts for m in recovered] == [1, 2]
    assert all(m.status == "processing" and m.payload for m in recovered)
    assert [m.key for m in store.claim_pending(limit=1)] == [k1]


def test_record_reply_is_one_transaction_and_deletes_the_content(store: Store,
                                                                 clock: FakeClock) -> None:
    key = accept(store, text="secret question")
    store.claim(key)
    parts = [ReplyPart("part one", group_id=GROUP, quote_author=ALICE, quote_timestamp=1),
             ReplyPart("part two", group_id=GROUP)]
    assert store.record_reply(key, parts)
    message = store.get(key)
    assert message is not None
    assert message.status == "answered" and message.payload is None
    due = store.due_outbox()
    assert [(i.part, i.text, i.group_id, i.recipient) for i in due] == [
        (0, "part one", GROUP, None)]  # part two waits for part one
    assert (due[0].quote_author, due[0].quote_timestamp) == (ALICE, 1)
    # A second answer for the same message is refused and writes nothing.
    assert not store.record_reply(key, [ReplyPart("second answer", group_id=GROUP)])
    assert store.counts().outbox["pending"] == 2


def test_record_reply_rolls_back_when_a_part_cannot_be_written(store: Store) -> None:
    key = accept(store)
    store.claim(key)
    with pytest.raises(sqlite3.IntegrityError):
        store.record_reply(key, [ReplyPart("ok", recipient=ALICE),
                                 ReplyPart(None, recipient=ALICE)])  # type: ignore[arg-type]
    message = store.get(key)
    assert message is not None and message.status == "processing" and message.payload
    assert store.counts().outbox["pending"] == 0


def test_reply_part_validation(store: Store) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ReplyPart("x")
    with pytest.raises(ValueError, match="exactly one"):
        ReplyPart("x", recipient=ALICE, group_id=GROUP)
    with pytest.raises(ValueError, match="at least one part"):
        store.record_reply(accept(store), [])


def test_ignored_messages_lose_their_content_and_get_no_reply(store: Store) -> None:
    key = accept(store)
    assert store.mark_ignored(key)
    message = store.get(key)
    assert message is not None and message.status == "ignored" and message.payload is None
    assert not store.record_reply(key, [ReplyPart("late", recipient=ALICE)])
    assert store.claim(key) is None
    assert store.due_outbox() == []


def test_sending_deletes_the_text_and_keeps_the_timestamp(store: Store) -> None:
    key = accept(store)
    store.record_reply(key, [ReplyPart("one", recipient=ALICE),
                             ReplyPart("two", recipient=ALICE)])
    first = store.due_outbox()[0]
    assert store.mark_sent(first.id, 1_700_000_000_123)
    assert not store.mark_sent(first.id, 1)  # only pending rows move
    second = store.due_outbox()
    assert [i.text for i in second] == ["two"]
    store.mark_sent(second[0].id, 1_700_000_000_456)
    assert store.due_outbox() == []
    db = sqlite3.connect(store._path)
    rows = db.execute("SELECT text, status, sent_timestamp, attempts FROM outbox").fetchall()
    db.close()
    assert rows == [(None, "sent", 1_700_000_000_123, 1), (None, "sent", 1_700_000_000_456, 1)]


def test_retry_scheduling_follows_the_clock(store: Store, clock: FakeClock) -> None:
    key = accept(store)
    store.record_reply(key, [ReplyPart("answer", recipient=ALICE)])
    item = store.due_outbox()[0]
    assert store.mark_retry(item.id, clock.now + 30, "ConnectError")
    assert store.due_outbox() == []
    assert store.next_due_at() == clock.now + 30
    assert store.due_outbox(now=clock.now + 29.9) == []
    clock.now += 30
    (again,) = store.due_outbox()
    assert again.id == item.id and again.attempts == 1 and again.text == "answer"
    assert store.mark_retry(again.id, clock.now + 60, "X" * 500)
    clock.now += 60
    assert store.mark_failed(item.id, "UntrustedIdentityError")
    assert store.due_outbox() == [] and store.next_due_at() is None
    counts = store.counts()
    assert counts.outbox == {"pending": 0, "sent": 0, "failed_permanent": 1}
    db = sqlite3.connect(store._path)
    text, error, attempts = db.execute("SELECT text, last_error, attempts FROM outbox").fetchone()
    db.close()
    assert (text, error, attempts) == (None, "UntrustedIdentityError", 3)


def test_a_retry_is_due_at_once_when_the_wall_clock_steps_back(store: Store,
                                                                clock: FakeClock) -> None:
    """Found by the fault campaign: a retry scheduled for "in 2 s" on a clock that then
    stepped back three days waited three days. A part created after "now" is due."""
    key = accept(store)
    store.record_reply(key, [ReplyPart("answer", recipient=ALICE)])
    item = store.due_outbox()[0]
    clock.now += 100  # the part has waited 100 s (signal-cli was down)
    assert store.mark_retry(item.id, clock.now + 2, "SignalNetworkError")
    clock.now -= 50  # a step back smaller than the part's age: the retry keeps its time,
    assert store.due_outbox() == []  # so it comes later by at most the step
    clock.now -= 3 * 86_400
    assert [due.id for due in store.due_outbox()] == [item.id]


def test_a_failed_part_does_not_block_the_next(store: Store) -> None:
    key = accept(store)
    store.record_reply(key, [ReplyPart("one", recipient=ALICE),
                             ReplyPart("two", recipient=ALICE)])
    store.mark_failed(store.due_outbox()[0].id, "SendError")
    assert [i.text for i in store.due_outbox()] == ["two"]


def test_forget_user_deletes_everything_about_them(store: Store) -> None:
    answered = accept(store, ts=1)
    store.record_reply(answered, [ReplyPart("unsent reply", recipient=ALICE)])
    accept(store, ts=2)  # still pending
    in_group = accept(store, ts=3)
    store.record_reply(in_group, [ReplyPart("group reply", group_id=GROUP)])
    request = accept(store, ts=4, text="/forget")
    bob = accept(store, BOB, ts=1)
    store.record_reply(bob, [ReplyPart("bob's reply", recipient=BOB)])

    assert store.forget_user(ALICE, keep=request) == 5  # 3 inbox + 2 outbox rows
    assert store.get(answered) is None and store.get(in_group) is None
    assert store.get(request) is not None
    assert store.record_reply(request, [ReplyPart("forgotten", recipient=ALICE)])
    assert [i.text for i in store.due_outbox()] == ["bob's reply", "forgotten"]
    assert store.forget_user(ALICE) == 2
    assert store.counts().inbox == {"pending": 0, "processing": 0, "answered": 1,
                                    "ignored": 0}
    assert store.get(bob) is not None


def test_purge_keeps_open_rows_and_undelivered_replies(store: Store, clock: FakeClock) -> None:
    done = accept(store, ts=1)
    store.record_reply(done, [ReplyPart("sent", recipient=ALICE)])
    store.mark_sent(store.due_outbox()[0].id, 5)
    undelivered = accept(store, ts=2)
    store.record_reply(undelivered, [ReplyPart("still pending", recipient=ALICE)])
    ignored = accept(store, ts=3)
    store.mark_ignored(ignored)
    still_open = accept(store, ts=4)
    clock.now += 3600
    recent = accept(store, ts=5)
    store.mark_ignored(recent)

    assert store.purge_answered(older_than=1800) == 3  # done + its part, ignored
    assert store.get(done) is None and store.get(ignored) is None
    assert store.get(undelivered) is not None and store.get(still_open) is not None
    assert store.get(recent) is not None
    assert store.counts().outbox["pending"] == 1


def test_counts_for_health(store: Store, clock: FakeClock) -> None:
    assert store.counts().oldest_unanswered_age is None
    accept(store, ts=1)
    clock.now += 12.5
    key = accept(store, ts=2)
    store.claim(key)
    counts = store.counts()
    assert counts.inbox["pending"] == 1 and counts.inbox["processing"] == 1
    assert counts.oldest_unanswered_age == 12.5


def test_state_survives_reopening_the_file(db_path: Path, clock: FakeClock) -> None:
    with Store(db_path, clock=clock) as first:
        k1 = accept(first, ts=1, text="open question")
        first.claim(k1)
        k2 = accept(first, ts=2)
        first.record_reply(k2, [ReplyPart("queued", recipient=ALICE)])
    with Store(db_path, clock=clock) as second:
        assert not second.accept(ALICE, 1, ALICE, {"text": "open question"})
        (recovered,) = second.claim_pending()
        assert recovered.key == k1 and recovered.attempts == 2
        assert recovered.payload == {"text": "open question"}
        assert [i.text for i in second.due_outbox()] == ["queued"]


def test_refuses_a_newer_schema(db_path: Path) -> None:
    Store(db_path).close()
    db = sqlite3.connect(db_path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        Store(db_path)


def test_payload_round_trips_unicode(store: Store) -> None:
    payload = {"text": "Grüße 👋", "attachments": [], "mentions": [{"uuid": BOB, "start": 0}]}
    store.accept(ALICE, 7, GROUP, payload)
    claimed = store.claim(InboxKey(ALICE, 7))
    assert claimed is not None and claimed.payload == payload and claimed.chat_id == GROUP


def test_a_version_1_database_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with Store(path) as store:
        store.accept("u1", 1, "dm", {"text": "hi"})
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE outbox DROP COLUMN trace")  # what version 1 wrote
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Store(path) as store:
        message = store.claim(InboxKey("u1", 1))
        assert message is not None and message.payload == {"text": "hi"}
        assert store.record_reply(message.key, [ReplyPart("hello", recipient="u1",
                                                          trace='{"traceparent":"x"}')])
        (item,) = store.due_outbox()
        assert item.trace == '{"traceparent":"x"}'
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


@pytest.mark.parametrize("damage", [
    b"SQLite format 3\0" + bytes(range(256)) * 16,   # a header, then garbage pages
    b"not a database at all" * 100,
])
def test_a_damaged_file_is_kept_aside_and_a_fresh_one_opened(
        tmp_path: Path, damage: bytes, caplog: pytest.LogCaptureFixture) -> None:
    """A damaged inbox must not stop every start (a crash loop, found by the fault
    campaign): it is moved aside, named in one log line, and an empty inbox opens."""
    path = tmp_path / "inbox.sqlite3"
    path.write_bytes(damage)
    with Store(path, clock=lambda: 1234.0) as store:
        assert store.damaged_aside == tmp_path / "inbox.sqlite3.damaged-1234"
        assert store.accept("a", 1, "a", {"text": "hi"})
    assert store.damaged_aside.read_bytes() == damage
    assert [r.message for r in caplog.records if r.levelname == "ERROR"] == ["store_damaged"]


def test_a_locked_file_is_not_taken_for_a_damaged_one(tmp_path: Path) -> None:
    path = tmp_path / "inbox.sqlite3"
    Store(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError):
            Store(path)
        assert sorted(p.name for p in tmp_path.iterdir() if "damaged" in p.name) == []
    finally:
        holder.close()


@pytest.mark.parametrize("error", [sqlite3.IntegrityError("UNIQUE constraint failed"),
                                   sqlite3.ProgrammingError("closed database"),
                                   sqlite3.DatabaseError("no code: not known to be damage")])
def test_an_error_that_is_not_damage_leaves_the_file_in_place(
        tmp_path: Path, error: sqlite3.DatabaseError) -> None:
    """Only a file SQLite calls corrupt or not a database, or one failing its quick check,
    is set aside: a bug in a migration must not move a good file (and its rows) away."""
    path = tmp_path / "users.sqlite3"
    path.write_bytes(b"rows that are fine")

    def open_db() -> sqlite3.Connection:
        raise error

    with pytest.raises(type(error)):
        open_or_set_aside(path, open_db)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users.sqlite3"]


# --- group commit: writes from several threads share one transaction --------------------


def _queue_writes_while_locked(store: Store, writes: list[Any]) -> list[Any]:
    """Run each of `writes` (no-argument calls) in a thread of its own while the test holds
    the store's lock, so that all of them queue up; then release it: the first thread to
    take the lock commits them all in one transaction. Returns each call's result or the
    exception it raised."""
    outcomes: list[Any] = [None] * len(writes)

    def run(index: int) -> None:
        try:
            outcomes[index] = writes[index]()
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(writes))]
    with store._lock:
        for thread in threads:
            thread.start()
        for _ in range(100_000):  # every write waits for the lock (bounded: never hang)
            if len(store._queued) == len(writes):
                break
            time.sleep(0.001)
        else:
            raise AssertionError(f"only {len(store._queued)} of {len(writes)} writes queued")
    for thread in threads:
        thread.join()
    return outcomes


def _commits(store: Store) -> list[str]:
    statements: list[str] = []
    store._db.set_trace_callback(
        lambda sql: statements.append(sql) if sql.strip().upper() == "COMMIT" else None)
    return statements


def test_writes_waiting_for_a_commit_share_the_next_one(store: Store) -> None:
    first, second = accept(store, ts=1), accept(store, ts=2)
    store.claim(first)
    store.claim(second)
    store.record_reply(first, [ReplyPart("one", recipient=ALICE)])
    (item,) = store.due_outbox()
    commits = _commits(store)
    outcomes = _queue_writes_while_locked(store, [
        lambda: store.admit(BOB, 3, BOB, {"text": "new"}),
        lambda: store.record_reply(second, [ReplyPart("two", recipient=ALICE)]),
        lambda: store.mark_sent(item.id, 99),
        lambda: store.mark_sent(item.id, 100),  # no longer pending: False
        lambda: store.accept(ALICE, 1, ALICE, {"text": "redelivered"}),  # known: False
    ])
    assert len(commits) == 1  # five writes, one transaction
    admitted, replied, sent, sent_again, accepted = outcomes
    assert admitted is not None and admitted.key == InboxKey(BOB, 3)
    assert admitted.status == "processing"
    assert (replied, sent, sent_again, accepted) == (True, True, False, False)
    message = store.get(second)
    assert message is not None and message.status == "answered"
    assert store.counts().outbox == {"pending": 1, "sent": 1, "failed_permanent": 0}


class _CountingLock:
    """The store's connection lock, recording which threads took it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.takers: list[str] = []

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        taken = bool(self.inner.acquire(blocking, timeout))
        if taken:
            self.takers.append(threading.current_thread().name)
        return taken

    def release(self) -> None:
        self.inner.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_writers_taken_along_by_a_group_commit_do_not_wait_for_the_connection(
        store: Store) -> None:
    """Only the writer that commits the group takes the connection lock; the others return
    once their write is committed, instead of queueing for the lock behind the next commit
    (or a read) only to find their work done."""
    first = accept(store, ts=1)
    store.claim(first)
    counting = _CountingLock(store._lock)
    store._lock = counting  # type: ignore[assignment]
    outcomes = _queue_writes_while_locked(store, [
        lambda: store.admit(BOB, 2, BOB, {"text": "a"}),
        lambda: store.admit(BOB, 3, BOB, {"text": "b"}),
        lambda: store.record_reply(first, [ReplyPart("ok", recipient=ALICE)]),
        lambda: store.accept(BOB, 4, BOB, {"text": "c"}),
    ])
    assert outcomes[0] is not None and outcomes[1] is not None
    assert outcomes[2:] == [True, True]
    writers = [name for name in counting.takers if name != threading.current_thread().name]
    assert len(writers) == 1, counting.takers
    assert not store._leading and not store._queued


def test_a_failing_write_in_a_group_is_undone_alone(store: Store) -> None:
    first, second = accept(store, ts=1), accept(store, ts=2)
    store.claim(first)
    store.claim(second)
    commits = _commits(store)
    outcomes = _queue_writes_while_locked(store, [
        lambda: store.record_reply(first, [ReplyPart("ok", recipient=ALICE)]),
        lambda: store.record_reply(second, [
            ReplyPart("ok", recipient=ALICE),
            ReplyPart(None, recipient=ALICE)]),  # type: ignore[arg-type]
        lambda: store.admit(BOB, 3, BOB, {"text": "new"}),
    ])
    assert len(commits) == 1  # one group: the savepoint undid the failing write alone
    assert outcomes[0] is True and outcomes[2] is not None
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    failed = store.get(second)
    assert failed is not None and failed.status == "processing" and failed.payload
    answered = store.get(first)
    assert answered is not None and answered.status == "answered"
    assert store.counts().outbox["pending"] == 1  # the first reply's part only


def test_a_group_that_cannot_commit_fails_every_caller_and_keeps_nothing(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    first = accept(store, ts=1)
    store.claim(first)
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL

    @contextmanager
    def commit_fails() -> Iterator[sqlite3.Connection]:
        store._db.execute("BEGIN IMMEDIATE")
        yield store._db
        # What a full disk does at COMMIT (the WAL cannot grow): the transaction is lost.
        store._db.execute("ROLLBACK")
        raise full

    monkeypatch.setattr(store, "_tx", commit_fails)
    outcomes = _queue_writes_while_locked(store, [
        lambda: store.record_reply(first, [ReplyPart("ok", recipient=ALICE)]),
        lambda: store.admit(BOB, 3, BOB, {"text": "new"}),
        lambda: store.accept(BOB, 4, BOB, {"text": "newer"}),
    ])
    assert all(isinstance(outcome, sqlite3.OperationalError) for outcome in outcomes)
    assert {outcome.sqlite_errorcode for outcome in outcomes} == {sqlite3.SQLITE_FULL}
    monkeypatch.undo()
    message = store.get(first)
    assert message is not None and message.status == "processing" and message.payload
    assert store.get(InboxKey(BOB, 3)) is None and store.get(InboxKey(BOB, 4)) is None
    assert store.counts().outbox["pending"] == 0
    assert not store._db.in_transaction
    assert store.mark_ignored(first)  # the store works on once the disk takes writes


def test_a_full_disk_in_the_middle_of_a_group_fails_every_caller_as_storage_refused(
        store: Store) -> None:
    """SQLite rolls the whole transaction back itself when the file cannot grow: every
    caller of the group must get the disk-full error (which the inbox holds messages
    for), not a failed ROLLBACK's error, and nothing of the group is kept."""
    from agent.inbox import refused_write

    (pages,) = store._db.execute("PRAGMA page_count").fetchone()
    store._db.execute(f"PRAGMA max_page_count = {pages + 2}")
    outcomes = _queue_writes_while_locked(store, [
        lambda: store.admit(BOB, 1, BOB, {"text": "small"}),
        lambda: store.admit(BOB, 2, BOB, {"text": "x" * 200_000}),  # cannot fit
        lambda: store.admit(BOB, 3, BOB, {"text": "small too"}),
    ])
    assert all(isinstance(outcome, sqlite3.OperationalError) for outcome in outcomes), \
        outcomes
    assert [refused_write(outcome) for outcome in outcomes] == ["disk_full"] * 3
    assert not store._db.in_transaction
    assert all(store.get(InboxKey(BOB, ts)) is None for ts in (1, 2, 3))
    store._db.execute("PRAGMA max_page_count = 1073741823")
    assert store.admit(BOB, 1, BOB, {"text": "small"}) is not None  # held, then stored
