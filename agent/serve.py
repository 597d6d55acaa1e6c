"""`signal-rag serve`: build the service from settings and run it until SIGTERM/SIGINT.

On a signal the service stops receiving, finishes or keeps (in the durable inbox) the
work in flight, flushes the outbox and returns; the process exits 0 (RES-3).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from agent.addressing import BotIdentity
from agent.assistant import Assistant, build_embedder
from agent.health import HealthServer
from agent.observability.alerts import (
    EMBEDDINGS_UNREACHABLE,
    INDEX_CORRUPT,
    LIMITS_STORAGE_UNREACHABLE,
    MODEL_UNREACHABLE,
    AlertControl,
)
from agent.observability.anomalies import AnomalyRecorder, build_detector
from agent.observability.dependencies import (
    EMBEDDINGS,
    LIMITS_STORAGE,
    MODEL,
    Dependency,
    DependencyMonitor,
    ReportingEmbedder,
    embeddings_probe,
    models_probe,
    storage_probe,
)
from agent.observability.logs import REDACTOR
from agent.observability.metrics import BotMetrics, MeteredAuditSink
from agent.observability.monitors import AlertingAuditSink, build_alerting
from agent.observability.readiness import service_readiness
from agent.observability.tracing import (
    OtelSpans,
    TracingConfigError,
    build_tracer_provider,
    tracer_of,
)
from agent.ratelimit import ActivationLockout, UserRateLimiter
from agent.service import AccessPolicy, BotService
from agent.settings import ConfigError, Settings
from agent.signal import create_transport
from agent.store import Store
from agent.users import UserDirectory
from knowledge.index import KnowledgeIndexError

log = logging.getLogger(__name__)


def access_policy(settings: Settings) -> AccessPolicy:
    """Secure by default: refuse to serve everyone without a passphrase or an allow list,
    or without a configured audit pepper."""
    access = settings.access
    passphrase = access.passphrase or None  # stays a SecretStr (an empty one is falsy)
    if passphrase is None and not access.allowed_set:
        raise ConfigError("set SIGNAL_RAG_ACCESS__PASSPHRASE or SIGNAL_RAG_ACCESS__ALLOWED: "
                          "the bot does not answer strangers")
    if settings.audit.pepper is None:  # OBS-2: a generated one would differ per replica
        raise ConfigError("set SIGNAL_RAG_AUDIT__PEPPER (a secret of at least 16 bytes, "
                          "e.g. from `openssl rand -hex 32`): serve keys users, limits and "
                          "the audit trail by its HMAC")
    return AccessPolicy(passphrase=passphrase, allowed=access.allowed_set,
                        admins=access.admin_set, command_prefix=access.command_prefix)


def build_dependencies(settings: Settings, assistant: Assistant,
                       alerts: AlertControl | None) -> DependencyMonitor:
    """Probes of what `serve` needs besides signal-cli: the embedding endpoint (`openai`
    provider), the chat model server (a model configured) and Redis (shared limits)."""
    cfg = settings.dependencies
    timeout = cfg.probe_timeout
    found: list[Dependency] = []
    embeddings = settings.embeddings
    if embeddings.provider == "openai":
        def index_dimension() -> int | None:
            index = assistant.index
            return index.manifest.embedding.dimension if index is not None else None

        found.append(Dependency(EMBEDDINGS, embeddings_probe(
            embeddings.base_url, embeddings.api_key, embeddings.model, timeout=timeout,
            index_dimension=index_dimension), condition=EMBEDDINGS_UNREACHABLE))
    if settings.llm.model:
        found.append(Dependency(MODEL, models_probe(
            settings.llm.base_url, settings.llm.api_key, timeout=timeout),
            condition=MODEL_UNREACHABLE))
    if not settings.limits.storage_url.startswith("memory://"):
        found.append(Dependency(LIMITS_STORAGE, storage_probe(
            settings.limits.storage_url, timeout=min(timeout, 2.0)),
            condition=LIMITS_STORAGE_UNREACHABLE))
    return DependencyMonitor(found, alerts, interval=cfg.probe_interval,
                             backoff_cap=min(30.0, cfg.probe_interval),
                             alert_after=cfg.alert_minutes * 60, probe_timeout=timeout)


def build_service(settings: Settings, assistant: Assistant | None = None,
                  checkpointer: BaseCheckpointSaver[Any] | None = None,
                  metrics: BotMetrics | None = None,
                  tracer: Tracer | None = None) -> BotService:
    """The service with everything `serve` runs: alerts to admins and the webhook, the
    audit trail feeding alerts and metrics, anomaly detection, tracing."""
    policy = access_policy(settings)
    assistant = assistant or Assistant(settings, checkpointer=checkpointer,
                                       embedder=build_embedder(settings, max_retries=0))
    REDACTOR.hasher = assistant.hash_user  # ids in any log line become their HMAC
    cfg = settings.signal
    options: dict[str, object] = {"account": cfg.account, "stale_after": cfg.stale_after}
    if not cfg.url.startswith(("http://", "https://")):
        options["receive_mode"] = cfg.receive_mode
    transport = create_transport(cfg.url, **options)

    async def send_to_admin(recipient: str, text: str) -> None:
        await transport.send(text, recipients=[recipient])

    monitors = build_alerting(settings, send_to_admin)
    assistant.alerts = monitors.manager  # failing guards and prompt leaks page too
    plain_audit = assistant.audit
    assistant.audit = AlertingAuditSink(plain_audit, monitors.model, monitors.errors)
    if metrics is not None:  # every graph run's audit event is counted too
        assistant.audit = MeteredAuditSink(assistant.audit, metrics)
    if tracer is not None:
        assistant.spans = OtelSpans(tracer)
    dependencies = build_dependencies(settings, assistant, monitors.manager)
    if metrics is not None:
        metrics.dependencies = dependencies.up
    if EMBEDDINGS in dependencies.dependencies:
        assistant.embedder = ReportingEmbedder(assistant.embedder, dependencies)
    if assistant.index is None:
        try:  # an embedding endpoint that is down does not keep the index from loading
            assistant.open_index(endpoint_may_be_down=True)
        except KnowledgeIndexError as exc:  # degraded mode: answer, alert, keep running
            log.error("index_unavailable", extra={"error": type(exc).__name__})
            monitors.manager.alert(INDEX_CORRUPT, error=type(exc).__name__)
    data = settings.data_dir
    return BotService(
        transport=transport, assistant=assistant, store=Store(data / "inbox.sqlite3"),
        users=UserDirectory(data / "users.sqlite3"),
        limiter=UserRateLimiter(settings.limits.rates, settings.limits.storage_url),
        lockout=ActivationLockout(settings.limits.storage_url),
        bot=BotIdentity(uuid=cfg.bot_uuid, number=cfg.account), access=policy,
        metrics=metrics, tracer=tracer, monitors=monitors,
        queue_retention=settings.signal.queue_retention_hours * 3600,
        anomalies=build_detector(settings.anomalies),
        # anomaly events go to the plain trail: they are not graph runs to count
        anomaly_recorder=AnomalyRecorder(plain_audit, metrics, monitors.manager),
        dependencies=dependencies, hold=settings.dependencies.hold)


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
        # After the health server is up: guardrails' import (~1.4 s of start-up) must not
        # hold back /readyz. A reply that comes first waits for it inside the output guard,
        # and a failed warm-up fails each reply closed there (guards/output.py).
        loop.run_in_executor(None, warm_guards, service.assistant)
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
        if probing is not None:
            await probing
        if monitoring is not None:
            await monitoring  # queued alerts still go out before the transport closes
    finally:
        if health is not None:
            await health.stop()
        await service.transport.aclose()
        service.store.close()
        service.users.close()
        log.info("serve_stopped")
