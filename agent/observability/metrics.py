"""OpenTelemetry metrics with a Prometheus text exposition (OBS-4).

Counters and histograms are recorded where things happen (the service, and the graph's
audit event, which already carries the route and per-node latencies of each message);
gauges (circuit state, queue depths, index size and age, active users) are read at
scrape time from a `Snapshot` the service refreshes, so a scrape never touches SQLite.
Each `BotMetrics` has its own Prometheus registry: no process-global state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest

from graph.contract import ANSWERED, FALLBACK_PREFIX

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}


@dataclass(slots=True)
class Snapshot:
    """Gauge values, refreshed by the service (every few seconds and after changes)."""

    circuit: str = "closed"
    inbox_open: int = 0
    outbox_pending: int = 0
    oldest_unanswered_s: float = 0.0
    index_chunks: int = 0
    index_built_at: float | None = None
    active_users_1h: int = 0


class BotMetrics:
    def __init__(self, service_name: str = "signal-rag") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.snapshot = Snapshot()
        self.dependencies: Callable[[], Mapping[str, bool]] | None = None
        """Read at scrape time: each dependency's state from its monitor (set by `serve`)."""
        self._reader = PrometheusMetricReader(registry=self.registry)
        self._provider = MeterProvider(
            resource=Resource.create({"service.name": service_name}),
            metric_readers=[self._reader],
            views=[View(instrument_name="signal_rag.*.latency",
                        aggregation=ExplicitBucketHistogramAggregation(LATENCY_BUCKETS_S))])
        meter = self._provider.get_meter("signal_rag")
        self.received = meter.create_counter(
            "signal_rag.messages.received", unit="1",
            description="Messages addressed to the bot and accepted into the inbox")
        self.answered = meter.create_counter(
            "signal_rag.messages.answered", unit="1",
            description="Graph runs that produced a reply, by route")
        self.refused = meter.create_counter(
            "signal_rag.messages.refused", unit="1",
            description="Messages refused before the graph, by reason")
        self.failed = meter.create_counter(
            "signal_rag.messages.failed", unit="1",
            description="Messages or sends that failed, by stage")
        self.model_calls = meter.create_counter(
            "signal_rag.model.calls", unit="1",
            description="Graph runs that called the chat model, by model and outcome")
        self.anomalies = meter.create_counter(
            "signal_rag.anomalies", unit="1",
            description="Anomalies detected (OBS-7), by kind")
        self.held = meter.create_counter(
            "signal_rag.messages.held", unit="1",
            description="Messages that waited in the inbox for a dependency, by dependency")
        self.model_tokens = meter.create_counter(
            "signal_rag.model.tokens", unit="1",
            description="Tokens the chat model reported, by model and direction (in, out)")
        self.feedback = meter.create_counter(
            "signal_rag.feedback", unit="1",
            description="Reactions counted on answers (EV-4), by route and reaction "
                        "(helpful, not_helpful); removals are not subtracted")
        self.stores_damaged = meter.create_counter(
            "signal_rag.stores.damaged", unit="1",
            description="Database files found damaged at start (kept aside, started "
                        "afresh), by file")
        self.reply_latency = meter.create_histogram(
            "signal_rag.reply.latency", unit="s",
            description="From accepting a message to its reply being queued")
        self.retrieval_latency = meter.create_histogram(
            "signal_rag.retrieval.latency", unit="s",
            description="The retrieve node's time, query embedding included")
        for name, unit, description, read in (
            ("signal_rag.circuit.state", "1", "Model circuit: 0 closed, 1 half-open, 2 open",
             lambda s: CIRCUIT_STATES.get(s.circuit, 2)),
            ("signal_rag.inbox.depth", "1", "Messages accepted and not yet answered",
             lambda s: s.inbox_open),
            ("signal_rag.outbox.depth", "1", "Reply parts waiting to be sent",
             lambda s: s.outbox_pending),
            ("signal_rag.inbox.oldest_age", "s", "Age of the oldest unanswered message",
             lambda s: s.oldest_unanswered_s),
            ("signal_rag.index.chunks", "1", "Passages in the loaded index",
             lambda s: s.index_chunks),
            ("signal_rag.index.age", "s", "Seconds since the loaded index was built",
             lambda s: 0.0 if s.index_built_at is None else time.time() - s.index_built_at),
            ("signal_rag.users.active", "1", "Users who wrote in the last hour",
             lambda s: s.active_users_1h),
        ):
            meter.create_observable_gauge(name, callbacks=[self._gauge(read)], unit=unit,
                                          description=description)

        meter.create_observable_gauge(
            "signal_rag.dependency.up", callbacks=[self._dependency_gauge], unit="1",
            description="1 when the dependency (data_dir, embeddings, model, limits_storage) "
                        "answers, 0 when it is down or not checked yet")

    def _dependency_gauge(self, _options: CallbackOptions) -> Iterable[Observation]:
        states = self.dependencies() if self.dependencies is not None else {}
        for name, up in sorted(states.items()):
            yield Observation(1 if up else 0, {"dependency": name})

    def _gauge(self, read: Any) -> Any:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            yield Observation(read(self.snapshot))
        return callback

    def observe_graph_run(self, event: Mapping[str, Any]) -> None:
        """Count one audit event (one graph run): its route, model call, latencies."""
        route = str(event.get("route", "unknown"))
        self.answered.add(1, {"route": route})
        timings = event.get("timings_ms") or {}
        if "retrieve" in timings:
            self.retrieval_latency.record(float(timings["retrieve"]) / 1000)
        if "generate" in timings:
            outcome = "ok" if route == ANSWERED else route.removeprefix(FALLBACK_PREFIX)
            self.model_calls.add(1, {"model": str(event.get("model", "none")),
                                     "outcome": outcome})
        for key, direction in (("tokens_in", "in"), ("tokens_out", "out")):
            count = event.get(key)
            if isinstance(count, int) and count > 0:
                self.model_tokens.add(count, {"model": str(event.get("model", "none")),
                                              "direction": direction})

    def exposition(self) -> bytes:
        """The Prometheus text format of every instrument."""
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        self._provider.shutdown()


class MeteredAuditSink:
    """Passes each audit event on, and counts it: audit and metrics never disagree."""

    def __init__(self, inner: Any, metrics: BotMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def emit(self, event: Mapping[str, Any]) -> None:
        try:
            self.metrics.observe_graph_run(event)
        finally:
            self.inner.emit(event)
