"""OpenTelemetry tracing (OBS-3): one trace per message, from the event that brought it to
the send that answered it.

The service starts a `signal receive` span, a `bot handle` span and a `signal send` span
per reply part; the graph adds a span per node and per model call through its context's
`Spans` (implemented here); retrieval and the query embedding get spans of their own.
The W3C trace context travels inside the durable inbox payload and outbox rows, so a
message retried after a restart continues its trace. Attributes are content-free: ids
are HMACs, errors are class names (exception messages can echo user text), and no
exception events are recorded.

Exporters come from the standard variables: `OTEL_TRACES_EXPORTER` (`otlp`, `console` or
`none`, the default: nothing leaves the process unless an operator asks),
`OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the default, or `grpc`),
`OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_SERVICE_NAME`. The provider is ours, not the
global one, so libraries that trace on their own never export through it. `grpc` needs
the `otlp-grpc` extra (grpcio), which the image leaves out.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import NoOpTracer, Span, Status, StatusCode, Tracer, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from graph.context import AttributeValue
from knowledge.embeddings import Embedder, EmbedderWrapper, Vectors
from knowledge.retrieval import ScoredChunk

TRACER_NAME = "signal_rag"
DEFAULT_SERVICE_NAME = "signal-rag"
_PROPAGATOR = TraceContextTextMapPropagator()


class TracingConfigError(ValueError):
    """An OTEL_* variable has a value this service does not support."""


def exporter_from_env(environ: Mapping[str, str] = os.environ) -> SpanExporter | None:
    """The span exporter the standard variables ask for; None for `none` (the default)."""
    kind = environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower() or "none"
    if kind == "none":
        return None
    if kind == "console":
        return ConsoleSpanExporter(out=sys.stderr)  # stdout carries `serve`'s JSON logs
    if kind != "otlp":
        raise TracingConfigError(f"OTEL_TRACES_EXPORTER must be otlp, console or none, "
                                 f"got {kind!r}")
    protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").lower()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT itself
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcSpanExporter,
            )
        except ImportError as exc:  # an optional extra, not in the image (docs/docker.md)
            raise TracingConfigError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the otlp-grpc extra "
                "(pip install 'signal-rag[otlp-grpc]'); http/protobuf needs nothing") from exc
        return GrpcSpanExporter()
    raise TracingConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf or grpc, "
                             f"got {protocol!r}")


def build_tracer_provider(environ: Mapping[str, str] = os.environ, *,
                          exporter: SpanExporter | None = None,
                          batch: bool = True) -> TracerProvider | None:
    """A provider with the configured exporter (or `exporter`), or None when tracing is
    off. `batch=False` exports each span as it ends (tests)."""
    exporter = exporter or exporter_from_env(environ)
    if exporter is None:
        return None
    name = environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch
                                else SimpleSpanProcessor(exporter))
    return provider


def tracer_of(provider: TracerProvider | None) -> Tracer:
    return provider.get_tracer(TRACER_NAME) if provider is not None else NoOpTracer()


def mark_failed(span: Span, error: BaseException) -> None:
    """Error status with the class name only: a message could carry user text."""
    span.set_attribute("error.type", type(error).__name__)
    span.set_status(Status(StatusCode.ERROR, type(error).__name__))


def run_id() -> uuid.UUID:
    """The id of the graph run about to start, shared by its audit event and its trace:
    the current trace id when a trace is recording (so `run_id.hex` is the trace id a
    trace backend shows), else a random one."""
    span_context = get_current_span().get_span_context()
    if span_context.is_valid:
        return uuid.UUID(int=span_context.trace_id)
    return uuid.uuid4()


def inject() -> str:
    """The current trace context as a short JSON string, to store with a message."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return json.dumps(carrier, separators=(",", ":"))


def extract(stored: str | None) -> otel_context.Context | None:
    """The context saved by `inject` (None when there is none or it is unreadable)."""
    if not stored:
        return None
    try:
        carrier = json.loads(stored)
    except ValueError:
        return None
    if not isinstance(carrier, dict):
        return None
    return _PROPAGATOR.extract({str(k): str(v) for k, v in carrier.items()})


class _SpanHandle:
    def __init__(self, span: Span) -> None:
        self._span = span

    def set(self, key: str, value: AttributeValue) -> None:
        self._span.set_attribute(key, value)

    def fail(self, error: BaseException) -> None:
        mark_failed(self._span, error)


class OtelSpans:
    """The graph's `Spans`, backed by an OpenTelemetry tracer."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, AttributeValue] | None = None
             ) -> Iterator[_SpanHandle]:
        with self.tracer.start_as_current_span(
                name, attributes=dict(attributes or {}), record_exception=False,
                set_status_on_exception=False) as span:
            yield _SpanHandle(span)


class TracedEmbedder(EmbedderWrapper):
    """An `Embedder` whose query embeddings get a span (GenAI `embeddings` operation)."""

    def __init__(self, inner: Embedder, spans: OtelSpans) -> None:
        super().__init__(inner)
        self.spans = spans

    def embed_query(self, text: str) -> Vectors:
        with self.spans.span(f"embeddings {self.inner.model_name}", {
                "gen_ai.operation.name": "embeddings",
                "gen_ai.request.model": self.inner.model_name}) as span:
            try:
                return self.inner.embed_query(text)
            except BaseException as exc:
                span.fail(exc)
                raise


class TracedKnowledge:
    """A passage source whose searches get a `retrieval` span with hit counts and score."""

    def __init__(self, inner: Any, spans: OtelSpans) -> None:
        self.inner = inner
        self.spans = spans

    def query_vector(self, question: str) -> Any:
        return self.inner.query_vector(question)

    def has_vector(self, question: str) -> bool:
        return bool(getattr(self.inner, "has_vector", lambda _q: False)(question))

    def search(self, question: str, k: int) -> list[ScoredChunk]:
        with self.spans.span("retrieval", {"signal_rag.top_k": k}) as span:
            try:
                hits: list[ScoredChunk] = self.inner.search(question, k)
            except BaseException as exc:
                span.fail(exc)
                raise
            span.set("signal_rag.hits", len(hits))
            if hits:
                span.set("signal_rag.top_similarity", round(float(hits[0].similarity), 4))
            return hits
