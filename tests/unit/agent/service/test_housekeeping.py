"""housekeeping.Housekeeping on an injected clock: memory expiry, the hourly queue purge,
the metrics snapshot, and the index watch (reload, damage, last-known-good)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.observability.alerts import INDEX_CORRUPT, INDEX_RESTORED
from agent.observability.metrics import BotMetrics
from agent.service import Alerting, Db, Housekeeping, ServiceStats
from agent.service import housekeeping as module
from agent.store import Store
from agent.users import UserDirectory
from knowledge.index import KnowledgeIndexError
from tests.unit.agent.service.conftest import Clock, FakeAssistant, admitted


@dataclass
class Manifest:
    chunk_count: int = 7
    created_at: str = "2026-12-01T00:00:00Z"
    documents: list[str] = field(default_factory=list)


@dataclass
class Index:
    path: Path
    restored_from_last_good: bool = False
    manifest: Manifest = field(default_factory=Manifest)


class WatchedAssistant(FakeAssistant):
    def __init__(self, index: Index | None, settings_path: Path) -> None:
        super().__init__()
        self.index = index
        self.swaps: list[Any] = []

        @dataclass
        class Settings:
            index_path: Path = settings_path
        self.settings = Settings()
        self.embedder = object()

    def use_index(self, index: Any) -> None:
        self.swaps.append(index)
        self.index = index


def keeper(assistant: Any, store: Store, users: UserDirectory, clock: Clock,
           stats: ServiceStats, **options: Any) -> Housekeeping:
    async def no_sleep(seconds: float) -> None:
        return None

    return Housekeeping(assistant=assistant, store=store, users=users, db=Db(),
                        alerting=Alerting(stats, alert=lambda kind: None), clock=clock,
                        sleep=no_sleep, **options)


async def test_idle_memory_expires_after_the_ttl(store: Store, users: UserDirectory,
                                                 clock: Clock, stats: ServiceStats) -> None:
    assistant = FakeAssistant()  # memory TTL 3600 s
    users.touch_thread("h:alice", "dm")
    users.touch_thread("h:bob", "dm", expires=60)  # a disappearing chat: its own timer
    house = keeper(assistant, store, users, clock, stats)
    clock.advance(61)
    assert await house.expire_memory() == 1 and assistant.forgotten == [("h:bob", "dm")]
    clock.advance(3600)
    assert await house.expire_memory() == 1 and assistant.forgotten[-1] == ("h:alice", "dm")


async def test_kept_questions_expire_in_the_expiry_round(
        store: Store, users: UserDirectory, clock: Clock, stats: ServiceStats) -> None:
    from agent.users import PENDING_QUESTION_S

    users.remember_answer("h:alice", "dm", 1, [], question="kept for a reaction")
    house = keeper(FakeAssistant(), store, users, clock, stats)
    await house.expire_once()
    assert users.feedback_rows() == [] and users.expire_questions() == 0, "not a day yet"
    clock.advance(PENDING_QUESTION_S + 1)
    await house.expire_once()
    assert users.expire_questions() == 0, "the round cleared it"
    assert users._db.execute("SELECT question FROM answers").fetchall() == [(None,)]


async def test_the_queue_is_purged_hourly_of_rows_past_retention(
        store: Store, users: UserDirectory, clock: Clock, stats: ServiceStats) -> None:
    house = keeper(FakeAssistant(), store, users, clock, stats, queue_retention=100.0)
    store.mark_ignored(admitted(store, "q", timestamp=1).key)
    await house.expire_once()
    assert store.counts().inbox["ignored"] == 1, "not past retention yet"
    clock.advance(200)
    await house.expire_once()
    assert store.counts().inbox["ignored"] == 1, "the purge runs hourly, not every round"
    clock.advance(3400)
    await house.expire_once()
    assert store.counts().inbox["ignored"] == 0


async def test_the_snapshot_reads_queues_index_and_circuit(
        store: Store, users: UserDirectory, clock: Clock, stats: ServiceStats,
        tmp_path: Path) -> None:
    metrics = BotMetrics()
    try:
        assistant = WatchedAssistant(Index(tmp_path), tmp_path)
        admitted(store, "q")
        clock.advance(30)
        await keeper(assistant, store, users, clock, stats, metrics=metrics).refresh_snapshot()
        snapshot = metrics.snapshot
        assert snapshot.inbox_open == 1 and snapshot.oldest_unanswered_s == pytest.approx(30)
        assert snapshot.index_chunks == 7 and snapshot.circuit == "closed"
    finally:
        metrics.shutdown()


async def test_the_index_is_verified_when_due_and_a_damaged_one_alerts_once(
        store: Store, users: UserDirectory, clock: Clock, stats: ServiceStats, *,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def verify(path: Path) -> None:
        calls.append("verify")
        raise KnowledgeIndexError("checksum mismatch")

    def load(*args: Any, **kwargs: Any) -> Any:
        calls.append("load")
        raise KnowledgeIndexError("checksum mismatch")

    monkeypatch.setattr(module, "verify_index", verify)
    monkeypatch.setattr(module, "load_knowledge", load)
    (tmp_path / "index").mkdir()
    assistant = WatchedAssistant(Index(tmp_path / "index"), tmp_path / "index")
    house = keeper(assistant, store, users, clock, stats, index_verify_interval=60.0)
    house._index_fingerprint = module.index_fingerprint(tmp_path / "index")
    await house.check_index()
    assert calls == [], "unchanged and not due: nothing read"
    clock.advance(60)
    await house.check_index()
    assert calls == ["verify", "load"] and assistant.swaps == [None]
    assert stats.alerts == [INDEX_CORRUPT]
    clock.advance(60)
    await house.check_index()
    assert stats.alerts == [INDEX_CORRUPT], "alerted once per loss"


async def test_a_new_index_is_loaded_and_a_restored_one_alerts(
        store: Store, users: UserDirectory, clock: Clock, stats: ServiceStats, *,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "index"
    restored = Index(directory, restored_from_last_good=True)
    monkeypatch.setattr(module, "load_knowledge", lambda *args, **kwargs: restored)
    assistant = WatchedAssistant(None, directory)
    house = keeper(assistant, store, users, clock, stats)
    directory.mkdir()
    (directory / "manifest.json").write_text("{}")
    await house.check_index()
    assert assistant.swaps == [restored] and stats.alerts == [INDEX_RESTORED]
