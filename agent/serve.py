"""`signal-rag serve`: build the service from settings and run it until SIGTERM/SIGINT.

On a signal the service stops receiving, finishes or keeps (in the durable inbox) the
work in flight, flushes the outbox and returns; the process exits 0 (RES-3).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from agent.addressing import BotIdentity
from agent.assistant import Assistant
from agent.service import AccessPolicy, BotService
from agent.settings import ConfigError, Settings
from agent.signal import create_transport
from agent.store import Store
from agent.users import UserDirectory
from guards.ratelimit import ActivationLockout, UserRateLimiter
from knowledge.index import KnowledgeIndexError

log = logging.getLogger(__name__)


def access_policy(settings: Settings) -> AccessPolicy:
    """Secure by default: refuse to serve everyone without a passphrase or an allow list."""
    access = settings.access
    passphrase = access.passphrase.get_secret_value() if access.passphrase else None
    if not passphrase and not access.allowed_set:
        raise ConfigError("set SIGNAL_RAG_ACCESS__PASSPHRASE or SIGNAL_RAG_ACCESS__ALLOWED: "
                          "the bot does not answer strangers")
    return AccessPolicy(passphrase=passphrase, allowed=access.allowed_set,
                        admins=access.admin_set, command_prefix=access.command_prefix)


def build_service(settings: Settings, assistant: Assistant | None = None,
                  checkpointer: BaseCheckpointSaver[Any] | None = None) -> BotService:
    policy = access_policy(settings)
    assistant = assistant or Assistant(settings, checkpointer=checkpointer)
    if assistant.index is None:
        try:
            assistant.open_index()
        except KnowledgeIndexError as exc:  # degraded mode: answer, alert, keep running
            log.error("index_unavailable", extra={"error": type(exc).__name__})
    cfg = settings.signal
    options: dict[str, object] = {"account": cfg.account, "stale_after": cfg.stale_after}
    if not cfg.url.startswith(("http://", "https://")):
        options["receive_mode"] = cfg.receive_mode
    transport = create_transport(cfg.url, **options)
    data = settings.data_dir
    return BotService(
        transport=transport, assistant=assistant, store=Store(data / "inbox.sqlite3"),
        users=UserDirectory(data / "users.sqlite3"),
        limiter=UserRateLimiter(settings.limits.rates, settings.limits.storage_url),
        lockout=ActivationLockout(settings.limits.storage_url),
        bot=BotIdentity(uuid=cfg.bot_uuid, number=cfg.account), access=policy)


async def serve(settings: Settings) -> None:
    """Conversation memory lives in `memory.sqlite3` (the LangGraph SQLite checkpointer)."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path = settings.data_dir / "memory.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.touch(mode=0o600)  # it holds conversation text
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        await run(build_service(settings, checkpointer=saver))


async def run(service: BotService) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("serve_started")
    try:
        await service.run(stop)
    finally:
        await service.transport.aclose()
        service.store.close()
        service.users.close()
        log.info("serve_stopped")
