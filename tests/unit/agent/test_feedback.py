"""EV-4: reactions counted per route and source, kept text only when opted in, exported as
a BEIR dataset, linked to the answer's trace; hostile reactions ignored."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.assistant import Answer
from agent.feedback import (
    FeedbackExportError,
    FeedbackRecorder,
    answer_record,
    classify,
    export_beir,
    remember_answer,
    summarize,
)
from agent.observability.metrics import BotMetrics
from agent.observability.tracing import build_tracer_provider, inject, tracer_of
from agent.signal import Reaction
from agent.users import PENDING_QUESTION_S, UserDirectory
from evals.beir import load_dataset

UP, DOWN = "\N{THUMBS UP SIGN}", "\N{THUMBS DOWN SIGN}"
QUESTION = "How often should I oil the bicycle chain?"
ALICE, BOB = "hmac-alice", "hmac-bob"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def an_answer(*, reason: str | None = None) -> Answer:
    passages: list[Any] = [
        {"source": "bikes.txt", "title": "Bikes", "page": None, "text": "Oil it.",
         "similarity": 0.71, "chunk_id": "c-bikes"},
        {"source": "bikes.txt", "title": "Bikes", "page": None, "text": "Chains.",
         "similarity": 0.52, "chunk_id": "c-bikes-2"},
        {"source": "cats.txt", "title": "Cats", "page": None, "text": "Not cited.",
         "similarity": 0.40, "chunk_id": "c-cats"},
    ]
    citations: list[Any] = [{"number": 1, "title": "Bikes", "source": "bikes.txt",
                             "page": None}]
    return Answer(reply="Every 300 km [1].", citations=citations, fallback_reason=reason,
                  passages=passages)


def react(emoji: str, ts: int, *, remove: bool = False) -> Reaction:
    return Reaction(emoji=emoji, target_author_uuid="bot", target_author_number=None,
                    target_sent_timestamp=ts, is_remove=remove)


@pytest.fixture
def users(tmp_path: Path) -> Iterator[UserDirectory]:
    directory = UserDirectory(tmp_path / "users.sqlite3", clock=Clock())
    yield directory
    directory.close()


def sent(users: UserDirectory, ts: int, *, keep_text: bool = False, user: str = ALICE,
         chat: str = "dm", trace: str | None = None, reason: str | None = None) -> None:
    record = answer_record(an_answer(reason=reason), QUESTION, keep_text=keep_text)
    remember_answer(users, user, chat, ts, sources=[], record=record, trace=trace)


def feedback_samples(metrics: BotMetrics) -> dict[tuple[str, str], float]:
    found = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            if sample.name == "signal_rag_feedback_total":
                found[sample.labels["route"], sample.labels["reaction"]] = sample.value
    return found


@pytest.mark.parametrize(("emoji", "kind"), [
    (UP, "helpful"), (DOWN, "not_helpful"), (UP + "\N{EMOJI MODIFIER FITZPATRICK TYPE-4}",
                                             "helpful"),
    (DOWN + "\N{VARIATION SELECTOR-16}", "not_helpful"), ("\N{HEAVY BLACK HEART}", None),
    (UP + UP, None), ("", None), ("x" * 10_000, None), ("\x00" + UP, None),
    (":+1:", None), ("\N{EMOJI MODIFIER FITZPATRICK TYPE-4}", None),
])
def test_only_thumbs_up_and_down_count(emoji: str, kind: str | None) -> None:
    assert classify(emoji) == kind


def test_an_answer_record_keeps_cited_chunks_and_no_text_by_default() -> None:
    record = answer_record(an_answer(), QUESTION, keep_text=False)
    assert record.route == "answered" and record.question is None
    assert record.facts == {"sources": ["bikes.txt"], "chunks": ["c-bikes", "c-bikes-2"],
                            "top_similarity": pytest.approx(0.71)}
    assert QUESTION not in repr(record.facts)
    kept = answer_record(an_answer(), QUESTION, keep_text=True)
    assert kept.route == "answered" and kept.question == QUESTION
    refusal = Answer(reply="I can't help with that.", fallback_reason="threat")
    record = answer_record(refusal, QUESTION, keep_text=True)
    assert record.route == "fallback:threat" and record.question is None, \
        "nothing cited: the question could never be an eval query, so it is not kept"
    assert record.facts == {"sources": [], "chunks": [], "top_similarity": None}


def test_reactions_are_counted_replaced_and_removed(users: UserDirectory) -> None:
    metrics = BotMetrics()
    recorder = FeedbackRecorder(users, keep_text=False, metrics=metrics)
    sent(users, 101)
    sent(users, 102, reason="no_context")
    assert recorder.record(ALICE, react(UP, 101)) == "helpful"
    assert recorder.record(ALICE, react(DOWN, 102)) == "not_helpful"
    summary = summarize(users.feedback_rows())
    assert summary.routes["answered"].helpful == 1
    assert summary.routes["fallback:no_context"].not_helpful == 1
    assert summary.sources["bikes.txt"].to_json() == {
        "helpful": 1, "not_helpful": 1, "top_similarity_helpful": pytest.approx(0.71),
        "top_similarity_not_helpful": pytest.approx(0.71)}
    assert all(row.question is None for row in users.feedback_rows())
    # A removal of another emoji leaves the 👍; a heart replaces it (Signal keeps one
    # reaction per person), so the 👍 is gone; removing the 👎 deletes it.
    assert recorder.record(ALICE, react(DOWN, 101, remove=True)) is None
    assert summarize(users.feedback_rows()).routes["answered"].helpful == 1
    assert recorder.record(ALICE, react("\N{HEAVY BLACK HEART}", 101)) is None
    assert recorder.record(ALICE, react(DOWN + "\N{EMOJI MODIFIER FITZPATRICK TYPE-6}", 102,
                                        remove=True)) is None
    assert users.feedback_rows() == []
    assert summarize([]).reactions == 0
    # The counter counts reactions as they came; removals are not subtracted.
    assert feedback_samples(metrics) == {("answered", "helpful"): 1.0,
                                         ("fallback:no_context", "not_helpful"): 1.0}
    metrics.shutdown()


def test_hostile_reactions_are_ignored(users: UserDirectory) -> None:
    metrics = BotMetrics()
    recorder = FeedbackRecorder(users, keep_text=True, metrics=metrics)
    sent(users, 101, keep_text=True)
    users.remember_answer(ALICE, "dm", 103, [])  # a command's reply: no record
    assert recorder.record(ALICE, react(UP, 999)) is None, "unknown message"
    assert recorder.record(BOB, react(UP, 101)) is None, "someone else's answer"
    assert recorder.record(ALICE, react(UP, 103)) is None, "not a graph answer"
    for absurd in ("x" * 100_000, "\x00\x1b[31m", UP * 3, "\ud83d", "DROP TABLE feedback"):
        assert recorder.record(ALICE, react(absurd, 101)) is None
        assert recorder.record(ALICE, react(absurd, 101, remove=True)) is None
    assert recorder.record(ALICE, react(UP, -1)) is None
    assert recorder.record(ALICE, react(UP, 2**62)) is None
    assert recorder.record(ALICE, react(UP, 2**70)) is None, "beyond SQLite's integers"
    assert users.feedback_rows() == []
    assert feedback_samples(metrics) == {}
    metrics.shutdown()


def test_a_forgotten_user_s_reactions_are_gone_and_later_ones_ignored(
        users: UserDirectory) -> None:
    recorder = FeedbackRecorder(users, keep_text=True)
    sent(users, 101, keep_text=True)
    assert recorder.record(ALICE, react(UP, 101)) == "helpful"
    assert users.feedback_rows()[0].question == QUESTION
    users.forget(ALICE)
    assert users.feedback_rows() == []
    assert recorder.record(ALICE, react(DOWN, 101)) is None
    assert users.feedback_rows() == []


def test_kept_text_only_when_opted_in_and_gone_with_the_disappearing_timer(
        users: UserDirectory) -> None:
    sent(users, 101, keep_text=False)
    FeedbackRecorder(users, keep_text=True).record(ALICE, react(UP, 101))
    assert users.feedback_rows()[0].question is None, "the answer kept no question"
    sent(users, 102, keep_text=True, chat="group-1")
    FeedbackRecorder(users, keep_text=False).record(ALICE, react(UP, 102))
    assert users.feedback_rows()[1].question is None, "turned off since: not kept"
    FeedbackRecorder(users, keep_text=True).record(ALICE, react(DOWN, 102))
    assert users.feedback_rows()[1].question == QUESTION
    users.drop_thread(ALICE, "group-1", purge_answers=True)  # the chat's timer ran out
    rows = users.feedback_rows()
    assert [r.question for r in rows] == [None, None]
    assert [r.reaction for r in rows] == ["helpful", "not_helpful"], "counts stay"


def test_a_question_waits_for_a_reaction_only_a_day(tmp_path: Path) -> None:
    clock = Clock()
    users = UserDirectory(tmp_path / "users.sqlite3", clock=clock)
    recorder = FeedbackRecorder(users, keep_text=True)
    sent(users, 101, keep_text=True)
    clock.now += PENDING_QUESTION_S + 1
    sent(users, 102, keep_text=True)
    assert users.expire_questions() == 1  # the housekeeping round clears stale questions
    recorder.record(ALICE, react(UP, 101))
    recorder.record(ALICE, react(UP, 102))
    assert [r.question for r in users.feedback_rows()] == [None, QUESTION]
    users.drop_thread(ALICE, "dm")  # an idle thread's question no longer waits either
    sent(users, 103, keep_text=True)
    users.drop_thread(ALICE, "dm")
    recorder.record(ALICE, react(UP, 103))
    assert users.feedback_rows()[-1].question is None
    users.close()


def test_a_reaction_is_a_span_linked_to_the_answer_s_trace(users: UserDirectory) -> None:
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider({}, exporter=exporter, batch=False)
    assert provider is not None
    tracer = tracer_of(provider)
    with tracer.start_as_current_span("signal send") as answer_span:
        carrier = inject()
    sent(users, 101, trace=carrier)
    sent(users, 102, trace="{not json")
    recorder = FeedbackRecorder(users, keep_text=False, tracer=tracer)
    recorder.record(ALICE, react(UP, 101))
    recorder.record(ALICE, react(UP, 102))
    spans = [s for s in exporter.get_finished_spans() if s.name == "signal reaction"]
    assert len(spans) == 2
    linked, unlinked = spans
    assert [link.context.trace_id for link in linked.links] == \
        [answer_span.get_span_context().trace_id]
    assert linked.attributes["signal_rag.reaction"] == "helpful"
    assert linked.attributes["signal_rag.route"] == "answered"
    assert list(unlinked.links) == [], "an unreadable trace context links nothing"
    provider.shutdown()


def test_export_with_no_data_is_a_clear_error_and_writes_nothing(tmp_path: Path,
                                                                  users: UserDirectory) -> None:
    out = tmp_path / "export"
    with pytest.raises(FeedbackExportError, match="KEEP_TEXT"):
        export_beir([], {}, out)
    sent(users, 101)  # kept without text: nothing to export either
    FeedbackRecorder(users, keep_text=False).record(ALICE, react(UP, 101))
    with pytest.raises(FeedbackExportError):
        export_beir(users.feedback_rows(), {"c-bikes": ("Bikes", "Oil it.")}, out)
    assert not out.exists()
    assert not any(p.name.startswith(".feedback-") for p in tmp_path.iterdir())


def test_export_writes_a_beir_dataset_the_eval_reader_accepts(tmp_path: Path,
                                                              users: UserDirectory) -> None:
    recorder = FeedbackRecorder(users, keep_text=True)
    sent(users, 101, keep_text=True)
    sent(users, 102, keep_text=True)
    recorder.record(ALICE, react(UP, 101))
    recorder.record(ALICE, react(DOWN, 102))
    chunks = {"c-bikes": ("Bikes", "Oil the chain every 300 km."),
              "c-cats": ("Cats", "Cats sleep.")}  # c-bikes-2 was re-ingested away
    out = tmp_path / "export"
    result = export_beir(users.feedback_rows(), chunks, out)
    assert (result.queries, result.scored, result.documents, result.missing_chunks) == \
        (2, 1, 1, 2)
    qrels = (out / "qrels" / "test.tsv").read_text().splitlines()
    assert qrels == ["query-id\tcorpus-id\tscore", "q1\tc-bikes\t1", "q2\tc-bikes\t0"]
    data = load_dataset(out)
    assert data.queries == {"q1": QUESTION}, "only queries with a helpful judgement score"
    assert data.qrels == {"q1": {"c-bikes": 1}, "q2": {"c-bikes": 0}}
    assert set(data.corpus) == {"c-bikes"}
    with pytest.raises(FeedbackExportError, match="not an empty folder"):
        export_beir(users.feedback_rows(), chunks, out)
    whole = export_beir(users.feedback_rows(), chunks, tmp_path / "whole", all_passages=True)
    assert whole.documents == 2
    assert set(load_dataset(tmp_path / "whole").corpus) == {"c-bikes", "c-cats"}


OLD_SCHEMA = """
CREATE TABLE activated (user TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE answers (
    sent_ts INTEGER PRIMARY KEY, user TEXT NOT NULL, chat TEXT NOT NULL, at REAL NOT NULL,
    sources TEXT NOT NULL);
CREATE TABLE threads (user TEXT NOT NULL, chat TEXT NOT NULL, last_at REAL NOT NULL,
    PRIMARY KEY (user, chat));
CREATE TABLE feedback (
    user TEXT NOT NULL, sent_ts INTEGER NOT NULL, emoji TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (user, sent_ts));
"""


def test_a_directory_from_the_old_schema_opens_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "users.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        db.execute("INSERT INTO activated VALUES (?, 1.0)", (ALICE,))
        db.execute("INSERT INTO answers VALUES (5, ?, 'dm', 1.0, '[]')", (ALICE,))
        db.execute("INSERT INTO feedback VALUES (?, 5, ?, 2.0)", (ALICE, UP))
        db.execute("INSERT INTO feedback VALUES (?, 6, ?, 2.0)", (BOB, "\N{HEAVY BLACK HEART}"))
    db.close()
    users = UserDirectory(path)
    assert users.is_activated(ALICE)
    assert users.feedback() == [(5, UP), (6, "\N{HEAVY BLACK HEART}")]
    summary = summarize(users.feedback_rows())
    assert summary.routes["unknown"].helpful == 1 and summary.reactions == 1
    # An answer from before EV-4 has no record: reactions to it are not counted.
    assert FeedbackRecorder(users, keep_text=False).record(ALICE, react(DOWN, 5)) is None
    sent(users, 7)
    assert FeedbackRecorder(users, keep_text=False).record(ALICE, react(DOWN, 7)) == \
        "not_helpful"
    users.close()
    UserDirectory(path).close()  # opening twice is harmless


def test_the_command_refuses_a_damaged_store_and_a_file_as_export_target(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from agent.cli import app

    monkeypatch.setenv("SIGNAL_RAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SIGNAL_RAG_INDEX_DIR", str(tmp_path / "no-index"))
    users = UserDirectory(tmp_path / "data" / "users.sqlite3")
    sent(users, 101, keep_text=True)
    FeedbackRecorder(users, keep_text=True).record(ALICE, react(UP, 101))
    users.close()
    target = tmp_path / "a-file"
    target.write_text("keep me")
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "feedback", "--export", str(target)])
    assert result.exit_code == 2 and "cannot be read" in result.output, "no index here"
    summary = runner.invoke(app, ["eval", "feedback"])
    assert summary.exit_code == 0 and "1 reaction, 1 with their question kept" in summary.output
    assert QUESTION not in summary.output
    (tmp_path / "data" / "users.sqlite3").write_bytes(b"not a database" * 100)
    for name in ("users.sqlite3-wal", "users.sqlite3-shm"):
        (tmp_path / "data" / name).unlink(missing_ok=True)
    damaged = runner.invoke(app, ["eval", "feedback"])
    assert damaged.exit_code == 2 and "restore it from a backup" in damaged.output
    assert target.read_text() == "keep me"


def test_an_export_target_that_is_a_file_is_refused(tmp_path: Path,
                                                     users: UserDirectory) -> None:
    sent(users, 101, keep_text=True)
    FeedbackRecorder(users, keep_text=True).record(ALICE, react(UP, 101))
    target = tmp_path / "a-file"
    target.write_text("keep me")
    with pytest.raises(FeedbackExportError, match="not an empty folder"):
        export_beir(users.feedback_rows(), {"c-bikes": ("Bikes", "Oil it.")}, target)
    assert target.read_text() == "keep me"
