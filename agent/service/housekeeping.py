"""The service's periodic work: index watch and hot reload (RES-4), memory expiry (ACC-4,
SIG-7) and of kept questions (EV-4), the queue purge, and the metrics snapshot. Each loop
survives its own failures and tries again at the next round."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from agent.assistant import load_knowledge
from agent.observability.alerts import INDEX_CORRUPT, INDEX_RESTORED
from agent.service.common import Alerting, Clock, Db, Sleep
from knowledge.index import KnowledgeIndexError, verify_index

if TYPE_CHECKING:
    from agent.assistant import Assistant
    from agent.observability.metrics import BotMetrics
    from agent.store import Store
    from agent.users import Thread, UserDirectory

log = logging.getLogger("agent.service")
IndexFingerprint = tuple[tuple[str, int, int], ...] | None
QUEUE_PURGE_INTERVAL = 3600.0


def index_fingerprint(path: Path) -> IndexFingerprint:
    """Names, sizes and modification times of the index's files (None when missing):
    cheap enough to compare every few seconds, and `ingest`'s directory swap changes it."""
    if not path.is_dir():
        return None
    return tuple(sorted((str(file.relative_to(path)), file.stat().st_size,
                         file.stat().st_mtime_ns) for file in path.rglob("*") if file.is_file()))


class Housekeeping:
    """`tasks()` starts the loops; `run` of the coordinator cancels them when it drains."""

    def __init__(self, *, assistant: Assistant, store: Store, users: UserDirectory, db: Db,
                 alerting: Alerting, clock: Clock, sleep: Sleep,
                 metrics: BotMetrics | None = None, expiry_interval: float = 60.0,
                 queue_retention: float = 7 * 24 * 3600.0, snapshot_interval: float = 5.0,
                 index_check_interval: float = 5.0,
                 index_verify_interval: float = 60.0) -> None:
        self._assistant = assistant
        self._store = store
        self._users = users
        self._db = db
        self._alerting = alerting
        self._clock = clock
        self._sleep = sleep
        self._metrics = metrics
        self._expiry_interval = expiry_interval
        self._queue_retention = queue_retention
        self._queue_purged_at: float | None = None
        self._snapshot_interval = snapshot_interval
        self._index_check_interval = index_check_interval
        self._index_verify_interval = index_verify_interval
        self._index_fingerprint: IndexFingerprint = None
        self._index_verified_at = clock()

    def tasks(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._expire_loop(), name="memory-expiry"),
                asyncio.create_task(self._snapshot_loop(), name="metrics-snapshot"),
                asyncio.create_task(self._index_loop(), name="index-watch")]

    # ----------------------------------------------------------------- memory and queue

    async def expire_memory(self) -> int:
        """Delete conversation memory idle for longer than the graph's memory TTL (ACC-4),
        or than the chat's disappearing-message timer (SIG-7)."""
        ttl = self._assistant.context().memory_ttl
        expired: list[Thread] = await self._db(self._users.inactive_threads, ttl)
        for thread in expired:
            await self._assistant.forget_thread(thread.user, thread.chat)
            await self._db(self._users.drop_thread, thread.user, thread.chat,
                           purge_answers=thread.expires > 0)
        return len(expired)

    async def purge_queue(self) -> int:
        """Delete closed inbox/outbox rows older than the queue retention: they hold only
        who wrote when (for redelivery dedupe), and that must not be kept forever."""
        purged: int = await self._db(self._store.purge_answered, self._queue_retention)
        self._queue_purged_at = self._clock()
        if purged:
            log.info("queue_purged", extra={"rows": purged})
        return purged

    async def expire_once(self) -> None:
        """One round of the expiry loop: memory and kept questions (EV-4, a day after
        their answer) every round, the queue hourly."""
        await self.expire_memory()
        await self._db(self._users.expire_questions)
        if (self._queue_purged_at is None
                or self._clock() - self._queue_purged_at >= QUEUE_PURGE_INTERVAL):
            await self.purge_queue()

    async def _expire_loop(self) -> None:
        while True:
            try:
                await self.expire_once()
            except Exception as exc:  # noqa: BLE001 - retried at the next round
                log.error("memory_expiry_failed", extra={"error": type(exc).__name__})
            await self._sleep(self._expiry_interval)

    # ----------------------------------------------------------------- metrics

    async def refresh_snapshot(self) -> None:
        """Update the gauges' values: queue depths, circuit, index, active users."""
        if self._metrics is None:
            return
        counts = await self._db(self._store.counts)
        active = await self._db(self._users.active_users, 3600.0)
        snapshot = self._metrics.snapshot
        snapshot.inbox_open = counts.inbox["pending"] + counts.inbox["processing"]
        snapshot.outbox_pending = counts.outbox["pending"]
        snapshot.oldest_unanswered_s = counts.oldest_unanswered_age or 0.0
        snapshot.circuit = self._assistant.breaker.state.value
        index = self._assistant.index
        snapshot.index_chunks = index.manifest.chunk_count if index is not None else 0
        snapshot.index_built_at = index.manifest.created_at or None if index is not None \
            else None
        snapshot.active_users_1h = active

    async def _snapshot_loop(self) -> None:
        while self._metrics is not None:
            try:
                await self.refresh_snapshot()
            except Exception as exc:  # noqa: BLE001 - retried at the next round
                log.error("metrics_snapshot_failed", extra={"error": type(exc).__name__})
            await self._sleep(self._snapshot_interval)

    # ----------------------------------------------------------------- index

    async def check_index(self) -> None:
        """Pick up a new index after `ingest`, or notice a damaged one, without a restart
        (RES-4). A changed directory is reloaded (and verified); an unchanged one is
        re-verified every `index_verify_interval` seconds. A damaged live index is replaced
        by the last-known-good copy when there is one; otherwise the bot answers from the
        fallback path until a good index appears, and operators are alerted once."""
        path = self._watched_index_path()
        fingerprint = await asyncio.to_thread(index_fingerprint, path)
        changed = fingerprint != self._index_fingerprint
        due = self._clock() - self._index_verified_at >= self._index_verify_interval
        if not changed and not due:
            return
        assistant = self._assistant
        had_index = assistant.index is not None
        if not changed and had_index:
            try:
                await asyncio.to_thread(verify_index, path)
            except KnowledgeIndexError:
                changed = True  # damaged in place: reload, which restores the last good copy
        if changed or not had_index:
            try:
                index = await asyncio.to_thread(load_knowledge, assistant.settings,
                                                assistant.embedder, path,
                                                endpoint_may_be_down=True)
            except KnowledgeIndexError as exc:
                assistant.use_index(None)
                if had_index:  # once per loss; a missing index at start was logged then
                    log.error("index_unavailable", extra={"error": type(exc).__name__})
                    self._alerting.raise_(INDEX_CORRUPT)
            else:
                assistant.use_index(index)
                self._alerting.resolve(INDEX_CORRUPT)
                if index.restored_from_last_good:
                    self._alerting.raise_(INDEX_RESTORED)
                log.info("index_loaded", extra={"chunks": index.manifest.chunk_count})
            fingerprint = await asyncio.to_thread(index_fingerprint, path)
        self._index_fingerprint = fingerprint
        self._index_verified_at = self._clock()

    def _watched_index_path(self) -> Path:
        """The loaded index's own directory (it may not be the configured one, e.g. in
        tests and benchmarks), else the configured one, where `ingest` will put it."""
        index = self._assistant.index
        return index.path if index is not None else self._assistant.settings.index_path

    async def _index_loop(self) -> None:
        self._index_fingerprint = await asyncio.to_thread(
            index_fingerprint, self._watched_index_path())
        while True:
            await self._sleep(self._index_check_interval)
            try:
                await self.check_index()
            except Exception as exc:  # noqa: BLE001 - retried at the next round
                log.error("index_check_failed", extra={"error": type(exc).__name__})
