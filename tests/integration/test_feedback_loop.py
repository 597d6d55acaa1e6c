"""EV-4 end to end: react in the daemon simulator → `signal-rag eval feedback --export DIR`
→ `signal-rag eval retrieval --dataset DIR`, with the real service, graph, local model and
index; each reaction reaches a real OTLP receiver as a span linked to its answer's trace."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from prometheus_client import generate_latest
from typer.testing import CliRunner

from agent.addressing import BotIdentity
from agent.audit import MemoryAuditSink
from agent.cli import app
from agent.observability.logs import json_formatter
from agent.observability.metrics import BotMetrics
from agent.observability.tracing import build_tracer_provider, tracer_of
from agent.ratelimit import ActivationLockout, UserRateLimiter
from agent.service import AccessPolicy
from agent.signal import create_transport
from agent.store import Store
from agent.testing.otlp_receiver import OtlpReceiver
from agent.testing.signal_daemon import (
    ALICE_UUID,
    BOB_NUMBER,
    BOB_UUID,
    BOT_NUMBER,
    BOT_UUID,
    FakeSignalDaemon,
    direct_message,
    fake_signal_daemon,
    reaction_message,
)
from agent.users import UserDirectory
from agent.wiring import assemble_service, build_assistant
from tests.leak_check import secrets_in

pytestmark = pytest.mark.slow
UP, DOWN = "\N{THUMBS UP SIGN}", "\N{THUMBS DOWN SIGN}"
LIKED = "How many wrong passphrase attempts before I am locked out?"
DISLIKED = "Which command is only for admins?"


@pytest.fixture
def sim() -> Iterator[FakeSignalDaemon]:
    with fake_signal_daemon(keepalive_interval=0.2, tcp=False) as daemon:
        yield daemon


async def until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def feedback_counts(metrics: BotMetrics) -> dict[tuple[str, str], float]:
    from prometheus_client.parser import text_string_to_metric_families

    page = generate_latest(metrics.registry).decode()
    return {(s.labels["route"], s.labels["reaction"]): s.value
            for family in text_string_to_metric_families(page) for s in family.samples
            if s.name == "signal_rag_feedback_total"}


async def test_reactions_become_an_eval_dataset_that_eval_retrieval_runs(
        sim: FakeSignalDaemon, settings_for: Any, *, local_embedder: Any, sample_index: Any,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_for(SIGNAL_RAG_FEEDBACK__KEEP_TEXT="true")
    assistant = build_assistant(settings, embedder=local_embedder, index=sample_index,
                                audit=MemoryAuditSink())
    metrics = BotMetrics()
    with OtlpReceiver() as receiver:
        provider = build_tracer_provider({}, batch=False, exporter=OTLPSpanExporter(
            endpoint=f"{receiver.endpoint}/v1/traces"))
        assert provider is not None
        users = UserDirectory(settings.data_dir / "users.sqlite3")
        service = assemble_service(
            transport=create_transport(sim.http_url, account=BOT_NUMBER), assistant=assistant,
            store=Store(tmp_path / "inbox.sqlite3"), users=users, limiter=UserRateLimiter(),
            lockout=ActivationLockout(), bot=BotIdentity(uuid=BOT_UUID, number=BOT_NUMBER),
            access=AccessPolicy(passphrase=None), tracer=tracer_of(provider),
            metrics=metrics, drain_timeout=5.0,
            keep_feedback_text=settings.feedback.keep_text)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        try:
            await until(lambda: sim.subscriber_count > 0, "the event stream")
            alice = assistant.hash_user(ALICE_UUID)
            stamps: list[int | None] = []
            for number, question in enumerate((LIKED, DISLIKED), 1):
                sim.deliver(direct_message(question))
                await sim.wait_for("send", number, timeout=60)
                await until(lambda: users.last_answer_timestamp(alice, "dm")
                            not in (None, *stamps), "the answer's record")
                stamps.append(users.last_answer_timestamp(alice, "dm"))
            assert all("Sources:" in p["message"] for p in sim.sent("send")), "cited answers"
            sim.deliver(direct_message("/info"))
            await sim.wait_for("send", 3, timeout=60)
            assert "keeps your question" in sim.sent("send")[2]["message"]
            # Bob reacting to Alice's answer, and to nothing the bot sent: not counted.
            bob = {"source_uuid": BOB_UUID, "source_number": BOB_NUMBER}
            sim.deliver(reaction_message(DOWN, target_timestamp=stamps[0], **bob))
            sim.deliver(reaction_message(UP, target_timestamp=12345))
            sim.deliver(reaction_message(UP, target_timestamp=stamps[0]))
            sim.deliver(reaction_message(DOWN, target_timestamp=stamps[1]))
            await until(lambda: len(users.feedback_rows()) == 2, "two reactions stored")
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=10)
            await service.transport.aclose()
            service.store.close()
            users.close()
        provider.force_flush()
        spans = list(receiver.spans)
        provider.shutdown()
    assert sim.count("send") == 3, "reactions are not answered"
    assert feedback_counts(metrics) == {("answered", "helpful"): 1.0,
                                        ("answered", "not_helpful"): 1.0}
    metrics.shutdown()
    sends = {s.trace_id for s in spans if s.name == "signal send"}
    reactions = [s for s in spans if s.name == "signal reaction"]
    assert len(reactions) == 2
    linked = {trace for s in reactions for trace, _ in s.links}
    assert len(linked) == 2 and linked <= sends, "each reaction links to its answer's trace"
    assert all(s.trace_id not in sends for s in reactions), "a new trace, linked"

    runner = CliRunner()
    summary = runner.invoke(app, ["eval", "feedback", "--json"])
    assert summary.exit_code == 0, summary.output
    report = json.loads(summary.output)
    assert report["routes"]["answered"]["helpful"] == 1
    assert report["routes"]["answered"]["not_helpful"] == 1
    assert report["kept_questions"] == 2 and report["sources"]
    assert LIKED not in summary.output, "the summary shows no message text"

    export = tmp_path / "feedback-set"
    exported = runner.invoke(app, ["eval", "feedback", "--export", str(export),
                                   "--all-passages"])
    assert exported.exit_code == 0, exported.output
    assert "2 queries (1 with a helpful judgement" in exported.output
    queries = (export / "queries.jsonl").read_text(encoding="utf-8")
    assert LIKED in queries and DISLIKED in queries
    qrels = (export / "qrels" / "test.tsv").read_text().splitlines()[1:]
    assert {row.split("\t")[2] for row in qrels} == {"0", "1"}

    out = tmp_path / "report"
    evaluated = runner.invoke(app, ["eval", "retrieval", "--dataset", str(export),
                                    "--retriever", "bm25,dense", "--out", str(out),
                                    "--cache-dir", str(tmp_path / "cache")])
    assert evaluated.exit_code == 0, evaluated.output
    result = json.loads((out / "report.json").read_text())
    assert result["queries"] == 1
    assert result["documents"] == len(sample_index.chunks), "the whole collection"
    assert {r["retriever"] for r in result["results"]} == {"bm25", "dense"}
    assert all(0.0 < r["ndcg"] <= 1.0 + 1e-9 for r in result["results"])

    logged = "\n".join(json_formatter().format(r) for r in caplog.records)
    assert "feedback_recorded" in logged
    assert secrets_in(logged, extra=(LIKED, DISLIKED)) == []


def test_export_with_nothing_kept_is_a_clear_error(settings_for: Any, tmp_path: Path) -> None:
    settings_for()
    export = tmp_path / "empty-set"
    result = CliRunner().invoke(app, ["eval", "feedback", "--export", str(export)])
    assert result.exit_code == 2
    assert "no kept feedback to export" in result.output
    assert not export.exists()
    assert not (tmp_path / "data" / "users.sqlite3").exists(), "a report creates no state"
    assert CliRunner().invoke(app, ["eval", "feedback"]).output.startswith(
        "No reactions stored yet.")
