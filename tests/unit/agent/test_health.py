"""The health server's answers for every readiness outcome, and the metrics it exposes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.health import HealthServer, parse_addr
from agent.observability.metrics import BotMetrics, MeteredAuditSink
from agent.observability.readiness import Check


def values(page: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items()
                                  if not k.startswith("otel_")))
            out[(sample.name, labels)] = sample.value
    return out


async def serve(readiness: object, metrics: BotMetrics | None = None,
                timeout: float = 2.0) -> HealthServer:
    server = HealthServer("127.0.0.1:0", readiness, metrics,  # type: ignore[arg-type]
                          check_timeout=timeout)
    await server.start()
    return server


async def get(server: HealthServer, path: str) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False) as client:
        return await client.get(server.url + path)


async def test_ready_only_when_every_check_passes() -> None:
    outcome = {"signal_cli": Check(True, "reachable"), "index": Check(True, "12 passages")}

    async def readiness() -> Mapping[str, Check]:
        return outcome

    server = await serve(readiness)
    try:
        ready = await get(server, "/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        outcome["index"] = Check(False, "no verified index loaded")
        not_ready = await get(server, "/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["checks"]["index"] == {"ok": False,
                                                       "detail": "no verified index loaded"}
        assert (await get(server, "/healthz")).json() == {"status": "ok"}
    finally:
        await server.stop()


@pytest.mark.parametrize(("behaviour", "detail"), [
    ("raise", "check failed: RuntimeError"), ("hang", "checks timed out"), ("empty", None)])
async def test_a_failing_hanging_or_empty_check_is_503_never_500(behaviour: str,
                                                                 detail: str | None) -> None:
    async def readiness() -> Mapping[str, Check]:
        if behaviour == "raise":
            raise RuntimeError("boom")
        if behaviour == "hang":
            await asyncio.Event().wait()  # never set: only the timeout ends it
        return {}

    server = await serve(readiness, timeout=0.1)
    try:
        response = await get(server, "/readyz")
        assert response.status_code == 503
        if detail:
            assert response.json()["checks"]["readiness"]["detail"] == detail
    finally:
        await server.stop()


async def test_metrics_page_counts_audit_events_and_gauges() -> None:
    metrics = BotMetrics()
    sink_events: list[Mapping[str, object]] = []

    class Sink:
        def emit(self, event: Mapping[str, object]) -> None:
            sink_events.append(event)

    audit = MeteredAuditSink(Sink(), metrics)
    audit.emit({"route": "answered", "model": "m1",
                "timings_ms": {"retrieve": 12.0, "generate": 40.0}})
    audit.emit({"route": "fallback:circuit_open", "model": "m1",
                "timings_ms": {"retrieve": 8.0, "generate": 0.1}})
    audit.emit({"route": "fallback:threat", "timings_ms": {"threat_check": 0.2}})
    metrics.snapshot.inbox_open = 4
    metrics.snapshot.circuit = "open"

    async def readiness() -> Mapping[str, Check]:
        return {}

    server = await serve(readiness, metrics)
    try:
        response = await get(server, "/metrics")
    finally:
        await server.stop()
        metrics.shutdown()
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    seen = values(response.text)
    assert seen[("signal_rag_messages_answered_total", (("route", "answered"),))] == 1
    assert seen[("signal_rag_messages_answered_total", (("route", "fallback:threat"),))] == 1
    assert seen[("signal_rag_model_calls_total", (("model", "m1"), ("outcome", "ok")))] == 1
    assert seen[("signal_rag_model_calls_total",
                 (("model", "m1"), ("outcome", "circuit_open")))] == 1
    assert seen[("signal_rag_retrieval_latency_seconds_count", ())] == 2
    assert seen[("signal_rag_retrieval_latency_seconds_bucket", (("le", "0.01"),))] == 1
    assert seen[("signal_rag_inbox_depth", ())] == 4
    assert seen[("signal_rag_circuit_state", ())] == 2
    assert len(sink_events) == 3, "every event still reaches the audit trail"


async def test_metrics_are_404_when_off() -> None:
    async def readiness() -> Mapping[str, Check]:
        return {}

    server = await serve(readiness)
    try:
        assert (await get(server, "/metrics")).status_code == 404
    finally:
        await server.stop()


@pytest.mark.parametrize("addr", ["8787", "host:", ":80", "host:99999", "host:port"])
def test_bad_addresses_are_refused_clearly(addr: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        parse_addr(addr)


def test_ipv6_addresses_parse() -> None:
    assert parse_addr("[::1]:8787") == ("::1", 8787)
