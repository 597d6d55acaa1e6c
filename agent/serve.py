"""`signal-rag serve`: build the service from settings (`agent.wiring`) and run it until
SIGTERM/SIGINT.

On a signal the service stops receiving, finishes or keeps (in the durable inbox) the
work in flight, flushes the outbox and returns; the process exits 0 (RES-3).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from opentelemetry.sdk.trace import TracerProvider

from agent.assistant import Assistant
from agent.audit import flush_audit_files
from agent.health import HealthServer
from agent.observability.metrics import BotMetrics
from agent.observability.readiness import service_readiness
from agent.observability.tracing import TracingConfigError, build_tracer_provider, tracer_of
from agent.service import BotService
from agent.settings import ConfigError, Settings
from agent.wiring import access_policy, build_service

log = logging.getLogger(__name__)
__all__ = ["access_policy", "build_service", "run", "serve", "use_graph_threads",
           "warm_guards"]


async def serve(settings: Settings) -> None:
    """Conversation memory lives in `memory.sqlite3` (the LangGraph SQLite checkpointer)."""
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path = settings.data_dir / "memory.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.touch(mode=0o600)  # it holds conversation text
    try:
        provider = build_tracer_provider()
    except TracingConfigError as exc:
        raise ConfigError(str(exc)) from exc
    metrics = BotMetrics()
    try:
        async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
            await _serve_with(settings, saver, metrics, provider)
    finally:
        metrics.shutdown()
        if provider is not None:
            provider.shutdown()  # flushes the spans of the last messages


async def _serve_with(settings: Settings, saver: BaseCheckpointSaver[Any], metrics: BotMetrics,
                      provider: TracerProvider | None) -> None:
    service = build_service(settings, checkpointer=saver, metrics=metrics,
                            tracer=tracer_of(provider) if provider else None)
    health = None
    if settings.health.enabled:
        health = HealthServer(settings.health.addr,
                              functools.partial(service_readiness, service), metrics)
    await run(service, health)


def warm_guards(assistant: Assistant) -> None:
    """Load the output guard in the background; a failure is logged, and every reply then
    fails closed in the output guard, which loads it again (and raises) when it checks."""
    try:
        assistant.warm_guards()
    except Exception as exc:  # noqa: BLE001 - any failure: the guard fails closed later
        log.error("output_guard_warm_up_failed", extra={"error": type(exc).__name__})


READY_WAIT_S = 30.0
"""How long the passage-check fill waits for the bot to be ready before it starts anyway."""


async def start_passage_checks_when_ready(service: BotService, stop: asyncio.Event, *,
                                          interval: float = 0.5,
                                          timeout: float = READY_WAIT_S) -> None:
    """Start the passage-check fill (guards/passages.py) once the bot is first ready, or
    after `timeout`, unless it is stopping by then. The fill is a cache (a passage not
    checked yet is checked when it is retrieved) and seconds of CPU under the GIL for a
    big index: run during start-up it delayed the first `/readyz` 200 by a second or more
    (benchmarks/startup.py)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not stop.is_set() and loop.time() < deadline:
        try:
            checks = await service_readiness(service)
        except Exception:  # noqa: BLE001, S110 - not ready; the health server reports why
            pass
        else:
            if all(check.ok for check in checks.values()):
                break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
    if not stop.is_set():  # stopping: the fill would only compete with the drain
        service.assistant.start_passage_checks()


GRAPH_THREADS = 32
"""Threads for the graph's synchronous nodes. asyncio's default (cores + 4: six here) is
too few: a node waiting for its query's turn in a shared embedding batch holds a thread,
so six threads capped batches at five questions and queued every other node behind them."""


def use_graph_threads(loop: asyncio.AbstractEventLoop, threads: int = GRAPH_THREADS) -> None:
    """Give the loop's default executor (where LangGraph runs sync nodes) enough threads."""
    loop.set_default_executor(ThreadPoolExecutor(max_workers=threads,
                                                 thread_name_prefix="graph"))


async def run(service: BotService, health: HealthServer | None = None) -> None:
    """Serve until SIGTERM/SIGINT; the health server lives exactly as long."""
    stop = asyncio.Event()
    checking: asyncio.Task[None] | None = None
    loop = asyncio.get_running_loop()
    use_graph_threads(loop)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        if health is not None:
            try:
                await health.start()
            except OSError as exc:  # the container health check would never pass: stop
                raise ConfigError(f"SIGNAL_RAG_HEALTH__ADDR: cannot listen on "
                                  f"{health.host}:{health.port} ({exc.strerror})") from exc
            log.info("health_server_started", extra={"url": health.url})
        log.info("serve_started")
        # After the health server is up: the guard's warm-up must not hold back /readyz. A
        # reply that comes first waits for it inside the output guard, and a failed warm-up
        # fails each reply closed there (guards/output.py).
        loop.run_in_executor(None, warm_guards, service.assistant)
        checking = asyncio.create_task(start_passage_checks_when_ready(service, stop))
        monitoring = None
        if service.monitors is not None:
            breaker = service.assistant.breaker
            monitoring = asyncio.create_task(service.monitors.run(
                stop, service.transport.check, circuit_state=lambda: breaker.state.value))
        probing = None
        if service.dependencies is not None:
            probing = asyncio.create_task(service.dependencies.run(stop))
        await service.run(stop)
        stop.set()
        await checking
        if probing is not None:
            await probing
        if monitoring is not None:
            await monitoring  # queued alerts still go out before the transport closes
    finally:
        if checking is not None and not checking.done():
            checking.cancel()  # service.run failed: nothing left to start the fill for
        if health is not None:
            await health.stop()
        await service.transport.aclose()
        service.store.close()
        service.users.close()
        await asyncio.to_thread(flush_audit_files)  # the last runs' events reach the disk
        log.info("serve_stopped")
