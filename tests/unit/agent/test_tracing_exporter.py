"""The trace exporter the standard OpenTelemetry variables ask for (OBS-3); OTLP over gRPC
is an optional extra (`otlp-grpc`, left out of the image), so asking for it without the
extra is a configuration error that says what to install."""

from __future__ import annotations

import sys

import pytest

from agent.observability.tracing import TracingConfigError, exporter_from_env

GRPC_MODULE = "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"


def test_tracing_is_off_unless_asked_for():
    assert exporter_from_env({}) is None


def test_otlp_defaults_to_http():
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = exporter_from_env({"OTEL_TRACES_EXPORTER": "otlp"})
    assert isinstance(exporter, OTLPSpanExporter)
    exporter.shutdown()


def test_grpc_without_the_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, GRPC_MODULE, None)  # as if not installed
    with pytest.raises(TracingConfigError, match=r"otlp-grpc"):
        exporter_from_env({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})


def test_grpc_with_the_extra_is_the_grpc_exporter():
    grpc_exporter = pytest.importorskip(GRPC_MODULE)
    exporter = exporter_from_env({"OTEL_TRACES_EXPORTER": "otlp",
                                  "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"})
    assert isinstance(exporter, grpc_exporter.OTLPSpanExporter)
    exporter.shutdown()


def test_an_unknown_protocol_is_refused():
    with pytest.raises(TracingConfigError, match=r"http/protobuf or grpc"):
        exporter_from_env({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "json"})
