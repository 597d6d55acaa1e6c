"""The composition root: builds the `Assistant` and the bot service completely, once,
before first use, and creates the files they need (audit pepper, prompt canary).

Nothing is replaced on a built object: the alerting audit sink, the alert manager, the
tracing spans and the reporting embedder are handed to the constructors. `serve` calls
`build_service`; the CLI's `ask`/`chat` call `build_assistant`; tests and benchmarks
call `assemble_service` with the parts they choose.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from agent.assistant import Assistant, build_embedder, load_knowledge, load_or_create_canary
from agent.audit import JsonLinesAuditSink, UserHasher, load_or_create_pepper
from agent.observability.alerts import (  # module level: the runbook test finds them here
    DATA_DIR_UNWRITABLE,
    EMBEDDINGS_UNREACHABLE,
    INDEX_CORRUPT,
    LIMITS_STORAGE_UNREACHABLE,
    MODEL_UNREACHABLE,
    STORE_DAMAGED,
)
from agent.settings import ConfigError, Settings

if TYPE_CHECKING:  # the service's modules are imported where it is built: `ask` and
    # `chat` need only the Assistant and start faster without them (0.3-0.5 s here)
    from langchain_core.language_models import BaseChatModel
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.types import RetryPolicy
    from opentelemetry.trace import Tracer

    from agent.addressing import BotIdentity
    from agent.anomaly_rules import AnomalyDetector
    from agent.observability.alerts import AlertControl
    from agent.observability.anomalies import AnomalyRecorder
    from agent.observability.dependencies import DependencyMonitor
    from agent.observability.metrics import BotMetrics
    from agent.observability.monitors import Monitors
    from agent.observability.tracing import OtelSpans
    from agent.ratelimit import ActivationLockout, UserRateLimiter
    from agent.resilience import CircuitBreaker
    from agent.service import AccessPolicy, BotService
    from agent.service.common import Alert
    from agent.signal import SignalTransport
    from agent.store import Store
    from agent.users import UserDirectory
    from graph.context import Alerts, AuditSink
    from knowledge.embeddings import Embedder
    from knowledge.index import KnowledgeIndex

log = logging.getLogger("agent.serve")  # its events keep the logger name they had there


def access_policy(settings: Settings) -> AccessPolicy:
    """Secure by default: refuse to serve everyone without a passphrase or an allow list,
    or without a configured audit pepper."""
    from agent.service import AccessPolicy

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


def user_hasher(settings: Settings) -> UserHasher:
    """The HMAC of user ids: from the configured pepper, else from one generated once into
    the data dir (0600)."""
    return UserHasher(load_or_create_pepper(settings.data_dir, settings.audit.pepper))


def configured_hasher(settings: Settings) -> UserHasher | None:
    """The hasher for log redaction when a valid pepper is configured (it never creates a
    file: `serve` requires a configured pepper and reports a missing or short one itself)."""
    pepper = settings.audit.pepper
    if pepper is None:
        return None
    try:
        return UserHasher(pepper.get_secret_value().encode())
    except ValueError:
        return None


def prompt_canary(settings: Settings) -> str:
    canary = settings.guards.canary
    return load_or_create_canary(settings.data_dir,
                                 canary.get_secret_value() if canary else None)


def build_assistant(settings: Settings, *, embedder: Embedder | None = None,
                    chat_model: BaseChatModel | None = None, audit: AuditSink | None = None,
                    index: KnowledgeIndex | None = None, breaker: CircuitBreaker | None = None,
                    retry_policy: RetryPolicy | None = None,
                    checkpointer: BaseCheckpointSaver[Any] | None = None,
                    alerts: Alerts | None = None, spans: OtelSpans | None = None,
                    hash_user: Callable[[str], str] | None = None,
                    hold_passage_checks: bool = False) -> Assistant:
    """The Assistant with its pepper and canary (created here when not configured)."""
    return Assistant(settings, hash_user=hash_user or user_hasher(settings),
                     canary=prompt_canary(settings), embedder=embedder,
                     chat_model=chat_model, audit=audit, index=index, breaker=breaker,
                     retry_policy=retry_policy, checkpointer=checkpointer, alerts=alerts,
                     spans=spans, hold_passage_checks=hold_passage_checks)


def assemble_service(
        *, transport: SignalTransport, assistant: Assistant, store: Store,
        users: UserDirectory, limiter: UserRateLimiter, lockout: ActivationLockout,
        bot: BotIdentity, access: AccessPolicy, alert: Alert | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        retry_initial: float = 2.0, retry_cap: float = 300.0,
        drain_timeout: float = 20.0, expiry_interval: float = 60.0,
        queue_retention: float = 7 * 24 * 3600.0,
        typing_delay: float = 0.5, send_concurrency: int = 16,
        metrics: BotMetrics | None = None, snapshot_interval: float = 5.0,
        index_check_interval: float = 5.0, index_verify_interval: float = 60.0,
        tracer: Tracer | None = None, monitors: Monitors | None = None,
        anomalies: AnomalyDetector | None = None,
        anomaly_recorder: AnomalyRecorder | None = None,
        dependencies: DependencyMonitor | None = None,
        hold: float | None = None, keep_feedback_text: bool = False) -> BotService:
    """The service from its parts, each given only what it uses (every knob of every
    part is a parameter here, so tests and benchmarks set just the ones they need)."""
    from agent.feedback import FeedbackRecorder
    from agent.service import (
        DEFAULT_HOLD,
        Alerting,
        Backoff,
        BotService,
        CommandRunner,
        Db,
        Gate,
        Housekeeping,
        OutboxSender,
        Responder,
        Retries,
        ServiceStats,
    )
    from agent.service.common import log_alert

    stats = ServiceStats()
    db = Db()
    alerting = Alerting(stats, alert or log_alert,
                        monitors.manager if monitors is not None else None)
    backoff = Backoff(retry_initial, retry_cap)
    keep_text = keep_feedback_text  # FEEDBACK__KEEP_TEXT (EV-4): said in /info when on
    feedback = FeedbackRecorder(users, keep_text=keep_text, metrics=metrics, tracer=tracer)
    commands = CommandRunner(access=access, assistant=assistant, transport=transport,
                             store=store, users=users, db=db, limiter=limiter,
                             anomalies=anomalies, stats=stats, keep_feedback_text=keep_text)
    gate = Gate(access=access, hash_user=assistant.hash_user,
                index_loaded=lambda: assistant.index is not None, users=users, db=db,
                lockout=lockout, limiter=limiter, commands=commands, alerting=alerting,
                anomalies=anomalies, dependencies=dependencies, metrics=metrics, clock=clock)
    responder = Responder(assistant=assistant, transport=transport, users=users, db=db,
                          sleep=sleep, typing_delay=typing_delay, dependencies=dependencies,
                          anomalies=anomalies, anomaly_recorder=anomaly_recorder,
                          keep_feedback_text=keep_text)
    sender = OutboxSender(transport=transport, store=store, users=users, db=db,
                          hash_user=assistant.hash_user, alerting=alerting, stats=stats,
                          clock=clock, backoff=backoff, send_concurrency=send_concurrency,
                          metrics=metrics, tracer=tracer)
    housekeeping = Housekeeping(
        assistant=assistant, store=store, users=users, db=db, alerting=alerting, clock=clock,
        sleep=sleep, metrics=metrics, expiry_interval=expiry_interval,
        queue_retention=queue_retention, snapshot_interval=snapshot_interval,
        index_check_interval=index_check_interval,
        index_verify_interval=index_verify_interval)
    retries = Retries(store=store, db=db, stats=stats, clock=clock, sleep=sleep,
                      backoff=backoff, hold=DEFAULT_HOLD if hold is None else hold,
                      dependencies=dependencies, metrics=metrics)
    return BotService(transport=transport, assistant=assistant, store=store, users=users,
                      bot=bot, gate=gate, responder=responder, sender=sender,
                      housekeeping=housekeeping, retries=retries, db=db, stats=stats,
                      clock=clock, drain_timeout=drain_timeout, metrics=metrics,
                      tracer=tracer, monitors=monitors, feedback=feedback)


def build_dependencies(settings: Settings, index_dimension: Callable[[], int | None],
                       alerts: AlertControl | None) -> DependencyMonitor:
    """Probes of what `serve` needs besides signal-cli: the data directory (writable), the
    embedding endpoint (`openai` provider), the chat model server (a model configured) and
    Redis (shared limits)."""
    from agent.observability.dependencies import (
        DATA_DIR,
        EMBEDDINGS,
        LIMITS_STORAGE,
        MODEL,
        Dependency,
        DependencyMonitor,
        data_dir_probe,
        embeddings_probe,
        models_probe,
        storage_probe,
    )

    cfg = settings.dependencies
    timeout = cfg.probe_timeout
    found = [Dependency(DATA_DIR, data_dir_probe(settings.data_dir),
                        condition=DATA_DIR_UNWRITABLE, down_word="not writable")]
    embeddings = settings.embeddings
    if embeddings.provider == "openai":
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


def build_service(settings: Settings, checkpointer: BaseCheckpointSaver[Any] | None = None,
                  metrics: BotMetrics | None = None, tracer: Tracer | None = None, *,
                  embedder: Embedder | None = None,
                  index: KnowledgeIndex | None = None) -> BotService:
    """The service with everything `serve` runs: alerts to admins and the webhook, the
    audit trail feeding alerts and metrics, anomaly detection, tracing. `embedder` and
    `index`, when given, are used as they are (the start-up benchmark times them apart)."""
    from agent.addressing import BotIdentity
    from agent.observability.anomalies import AnomalyRecorder, build_detector
    from agent.observability.dependencies import EMBEDDINGS, ReportingEmbedder
    from agent.observability.metrics import MeteredAuditSink
    from agent.observability.monitors import AlertingAuditSink, build_alerting
    from agent.observability.tracing import OtelSpans
    from agent.ratelimit import ActivationLockout, UserRateLimiter
    from agent.signal import create_transport
    from agent.store import Store
    from agent.users import UserDirectory
    from knowledge.index import KnowledgeIndexError

    policy = access_policy(settings)
    cfg = settings.signal
    options: dict[str, object] = {"account": cfg.account, "stale_after": cfg.stale_after}
    if not cfg.url.startswith(("http://", "https://")):
        options["receive_mode"] = cfg.receive_mode
    transport = create_transport(cfg.url, **options)

    async def send_to_admin(recipient: str, text: str) -> None:
        await transport.send(text, recipients=[recipient])

    monitors = build_alerting(settings, send_to_admin)
    plain_audit = JsonLinesAuditSink(settings.data_dir / "audit.jsonl")
    audit: AuditSink = AlertingAuditSink(plain_audit, monitors.model, monitors.errors)
    if metrics is not None:  # every graph run's audit event is counted too
        audit = MeteredAuditSink(audit, metrics)
    assistant: Assistant | None = None

    def index_dimension() -> int | None:  # read at probe time, after the build
        loaded = assistant.index if assistant is not None else None
        return loaded.manifest.embedding.dimension if loaded is not None else None

    dependencies = build_dependencies(settings, index_dimension, monitors.manager)
    if metrics is not None:
        metrics.dependencies = dependencies.up
    embedder = embedder or build_embedder(settings, max_retries=0)
    if EMBEDDINGS in dependencies.dependencies:
        embedder = ReportingEmbedder(embedder, dependencies)
    if index is None:
        try:  # an embedding endpoint that is down does not keep the index from loading
            index = load_knowledge(settings, embedder, endpoint_may_be_down=True)
        except KnowledgeIndexError as exc:  # degraded mode: answer, alert, keep running
            log.error("index_unavailable", extra={"error": type(exc).__name__})
            monitors.manager.alert(INDEX_CORRUPT, error=type(exc).__name__)
    assistant = build_assistant(
        settings, embedder=embedder, audit=audit, index=index, checkpointer=checkpointer,
        alerts=monitors.manager,  # failing guards and prompt leaks page too
        spans=OtelSpans(tracer) if tracer is not None else None,
        hold_passage_checks=True)  # `run` starts them once the health server is up
    data = settings.data_dir
    store, users = Store(data / "inbox.sqlite3"), UserDirectory(data / "users.sqlite3")
    for aside in (store.damaged_aside, users.damaged_aside):
        if aside is not None:  # kept aside, a fresh file in its place
            file = aside.name.partition(".damaged-")[0]
            monitors.manager.alert(STORE_DAMAGED, file=file, kept_as=aside.name)
            if metrics is not None:
                metrics.stores_damaged.add(1, {"file": file})
    return assemble_service(
        transport=transport, assistant=assistant, store=store, users=users,
        keep_feedback_text=settings.feedback.keep_text,
        limiter=UserRateLimiter(settings.limits.rates, settings.limits.storage_url),
        lockout=ActivationLockout(settings.limits.storage_url),
        bot=BotIdentity(uuid=cfg.bot_uuid, number=cfg.account), access=policy,
        metrics=metrics, tracer=tracer, monitors=monitors,
        queue_retention=settings.signal.queue_retention_hours * 3600,
        anomalies=build_detector(settings.anomalies),
        # anomaly events go to the plain trail: they are not graph runs to count
        anomaly_recorder=AnomalyRecorder(plain_audit, metrics, monitors.manager),
        dependencies=dependencies, hold=settings.dependencies.hold)
