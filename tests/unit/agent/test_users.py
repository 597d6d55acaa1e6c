"""The user directory's file (users.sqlite3) damaged or locked at open: the same treatment
as the inbox (tests/unit/agent/test_store.py), since a damaged file must not stop every
start of `serve` (a crash loop)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.users import UserDirectory


@pytest.mark.parametrize("damage", [
    b"SQLite format 3\0" + bytes(range(256)) * 16,   # a header, then garbage pages
    b"not a database at all" * 100,
])
def test_a_damaged_file_is_kept_aside_and_a_fresh_one_opened(
        tmp_path: Path, damage: bytes, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "users.sqlite3"
    path.write_bytes(damage)
    users = UserDirectory(path, clock=lambda: 1234.0)
    try:
        assert users.damaged_aside == tmp_path / "users.sqlite3.damaged-1234"
        assert not users.is_activated("u1")  # a fresh directory knows no one
        users.activate("u1")
        assert users.is_activated("u1")
    finally:
        users.close()
    assert users.damaged_aside.read_bytes() == damage
    assert [r.message for r in caplog.records if r.levelname == "ERROR"] == ["store_damaged"]
    reopened = UserDirectory(path)
    try:
        assert reopened.damaged_aside is None and reopened.is_activated("u1")
    finally:
        reopened.close()


def test_a_locked_file_is_not_taken_for_a_damaged_one(tmp_path: Path) -> None:
    path = tmp_path / "users.sqlite3"
    UserDirectory(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError):
            UserDirectory(path)
        assert sorted(p.name for p in tmp_path.iterdir() if "damaged" in p.name) == []
    finally:
        holder.close()


def test_questions_expire_in_one_indexed_update_not_on_every_send(tmp_path: Path) -> None:
    """Kept questions (FEEDBACK__KEEP_TEXT) are cleared a day after their answer by the
    housekeeping loop; sending an answer no longer scans the answers table for them."""
    from agent.users import PENDING_QUESTION_S

    now = [1_000_000.0]
    users = UserDirectory(tmp_path / "users.sqlite3", clock=lambda: now[0])
    try:
        users.remember_answer("u", "dm", 1, [], question="old question")
        now[0] += PENDING_QUESTION_S + 1
        users.remember_answer("u", "dm", 2, [], question="new question")
        kept = users._db.execute("SELECT sent_ts FROM answers WHERE question IS NOT NULL")
        assert [r[0] for r in kept] == [1, 2], "a send clears nothing"
        assert users.expire_questions() == 1
        kept = users._db.execute("SELECT sent_ts FROM answers WHERE question IS NOT NULL")
        assert [r[0] for r in kept] == [2]
        assert users.expire_questions() == 0
        plan = " ".join(str(row[-1]) for row in users._db.execute(
            "EXPLAIN QUERY PLAN UPDATE answers SET question = NULL "
            "WHERE question IS NOT NULL AND at < ?", (now[0],)))
        assert "USING INDEX answers_pending_question" in plan, plan
    finally:
        users.close()
