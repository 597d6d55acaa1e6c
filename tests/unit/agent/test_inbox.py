"""InboxWriter: a message the inbox cannot take (disk full) is held in memory, in order,
and written once the disk takes writes again; nothing else is held, nothing is lost while
the process lives. A real Store; the disk's refusals are injected."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from agent.inbox import HELD, InboxWriter, Incoming, refused_write
from agent.service.common import DB_THREADS, Db
from agent.store import InboxMessage, Store


def disk_full() -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError("database or disk is full")
    exc.sqlite_errorcode = sqlite3.SQLITE_FULL  # what the sqlite3 module sets
    return exc


class FullDisk:
    """A Store whose writes fail while `full` (as SQLite's do on a full file system)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.full = True
        self.refused = 0

    def admit(self, *args: Any) -> InboxMessage | None:
        if self.full:
            self.refused += 1
            raise disk_full()
        return self.store.admit(*args)


def incoming(timestamp: int, sender: str = "alice") -> Incoming:
    return Incoming(sender, timestamp, "dm", {"text": f"question {timestamp}"})


@pytest.fixture
def store(tmp_path: Path) -> Any:
    opened = Store(tmp_path / "inbox.sqlite3")
    yield opened
    opened.close()


async def test_held_in_order_and_written_once_space_is_back(store: Store) -> None:
    disk = FullDisk(store)
    stored: list[int] = []
    duplicates: list[int] = []
    naps: list[float] = []

    async def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:
            disk.full = False  # space is back after the third failed retry
        await asyncio.sleep(0)

    writer = InboxWriter(disk, Db(), on_stored=lambda m: stored.append(m.key.msg_timestamp),  # type: ignore[arg-type]
                         on_duplicate=lambda: duplicates.append(1), sleep=sleep)
    assert await writer.admit(incoming(1)) == HELD
    assert await writer.admit(incoming(2)) == HELD
    assert await writer.admit(incoming(1)) == HELD  # a redelivery, behind them
    assert writer.held == 3
    for _ in range(100):
        if not writer.held:
            break
        await asyncio.sleep(0.01)
    assert stored == [1, 2] and duplicates == [1] and writer.held == 0
    assert naps == [0.5, 1.0, 2.0]  # backoff while the disk refused
    assert {m.status for m in (store.get(k) for k in [("alice", 1), ("alice", 2)])
            if m is not None} == {"processing"}
    # The queue is empty: the next message is written at once.
    message = await writer.admit(incoming(3))
    assert isinstance(message, InboxMessage) and message.key.msg_timestamp == 3


async def test_other_errors_are_not_held(store: Store) -> None:
    class Broken:
        def admit(self, *args: Any) -> None:
            raise sqlite3.OperationalError("no such table: inbox")

    writer = InboxWriter(Broken(), Db(), on_stored=lambda m: None)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.OperationalError):
        await writer.admit(incoming(1))
    assert writer.held == 0


async def test_stopping_with_the_disk_still_full_counts_what_is_lost(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    disk = FullDisk(store)

    async def never(seconds: float) -> None:
        await asyncio.Event().wait()

    writer = InboxWriter(disk, Db(), on_stored=lambda m: None, sleep=never)  # type: ignore[arg-type]
    await writer.admit(incoming(1))
    await writer.admit(incoming(2))
    await writer.drain()
    lost = [r for r in caplog.records if r.message == "held_messages_lost"]
    assert [r.__dict__["count"] for r in lost] == [2]
    assert "question" not in caplog.text


async def test_what_the_disk_takes_at_the_drain_stays_for_the_next_start(
        store: Store) -> None:
    disk = FullDisk(store)

    async def never(seconds: float) -> None:
        await asyncio.Event().wait()

    writer = InboxWriter(disk, Db(), on_stored=lambda m: None, sleep=never)  # type: ignore[arg-type]
    await writer.admit(incoming(1))
    disk.full = False
    await writer.drain()
    assert writer.held == 0 and [m.key.msg_timestamp for m in store.claim_pending()] == [1]


def test_what_counts_as_a_refused_write() -> None:
    import errno

    assert refused_write(disk_full()) == "disk_full"
    assert refused_write(OSError(errno.ENOSPC, "full")) == "disk_full"
    wrapped = RuntimeError("graph failed")
    wrapped.__cause__ = OSError(errno.EIO, "I/O error")
    assert refused_write(wrapped) == "io_error"
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
    assert refused_write(busy) == "locked"
    assert refused_write(sqlite3.OperationalError("no such table: inbox")) is None
    assert refused_write(ValueError("x")) is None


async def test_the_flusher_outlives_any_failure_and_frees_room(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """A failure that is not the storage refusing (a message that cannot be written at all,
    a callback that fails) is logged and the flusher goes on: had it died, a receive loop
    waiting for room in a full memory queue would wait for ever."""

    class Unwritable(FullDisk):
        def admit(self, *args: Any) -> InboxMessage | None:
            if not self.full and args[1] == 1:
                raise ValueError("this one cannot be written")
            return super().admit(*args)

    disk = Unwritable(store)
    calls: list[int] = []

    def on_stored(message: InboxMessage) -> None:
        calls.append(message.key.msg_timestamp)
        if message.key.msg_timestamp == 2:
            raise RuntimeError("the callback fails")

    async def sleep(seconds: float) -> None:
        disk.full = False
        await asyncio.sleep(0)

    writer = InboxWriter(disk, Db(), on_stored=on_stored, sleep=sleep, max_held=1)  # type: ignore[arg-type]
    assert await writer.admit(incoming(1)) == HELD
    assert await asyncio.wait_for(writer.admit(incoming(2)), timeout=30) == HELD, \
        "room: the unwritable message was dropped, not the flusher"
    assert await asyncio.wait_for(writer.admit(incoming(3)), timeout=30) is not None
    for _ in range(200):
        if not writer.held:
            break
        await asyncio.sleep(0.01)
    assert calls[:2] == [2, 3] and writer.held == 0
    errors = [r.message for r in caplog.records if r.levelname == "ERROR"]
    assert errors[:2] == ["held_message_failed", "inbox_flush_failed"]


@pytest.mark.parametrize("disk_full_then", [False, True], ids=["lands", "fails"])
async def test_a_write_queued_when_the_stop_gives_up_still_runs(
        store: Store, caplog: pytest.LogCaptureFixture, disk_full_then: bool) -> None:
    """The drain timeout cancels admissions still running; one whose write is queued
    behind busy database threads must still be written (the daemon has already let go of
    the message), so the next start answers it; if that write then fails, the loss is
    logged (by error type only)."""
    db = Db()
    db.open()
    busy, release = threading.Event(), threading.Event()
    disk = FullDisk(store)
    disk.full = disk_full_then

    def occupy_a_thread() -> None:
        busy.set()
        release.wait()

    try:
        blockers = [asyncio.ensure_future(db(occupy_a_thread)) for _ in range(DB_THREADS)]
        await asyncio.to_thread(busy.wait)
        writer = InboxWriter(disk, db, on_stored=lambda _message: None)  # type: ignore[arg-type]
        admission = asyncio.ensure_future(writer.admit(incoming(1)))
        assert db._pool is not None
        for _ in range(3000):  # a bound against a hang (30 s), not a speed limit
            if db._pool._work_queue.qsize():  # the write waits for a thread
                break
            await asyncio.sleep(0.01)
        assert db._pool._work_queue.qsize() == 1
        admission.cancel()
        with pytest.raises(asyncio.CancelledError):
            await admission
        release.set()
        await asyncio.gather(*blockers)
        await asyncio.to_thread(db.close)  # waits for the queued write
        for _ in range(100):  # its outcome reaches the loop a few steps later
            await asyncio.sleep(0)
    finally:
        release.set()
        db.close()
    lost = [r for r in caplog.records if r.message == "admission_write_lost"]
    if disk_full_then:
        assert disk.refused == 1 and store.claim_pending() == []
        assert [r.error for r in lost] == ["OperationalError"]  # type: ignore[attr-defined]
    else:
        assert [(m.key.msg_timestamp, m.status) for m in store.claim_pending()] \
            == [(1, "processing")]
        assert lost == []
