"""The offline demo on the bundled documents: real model, real index, the whole graph."""

from __future__ import annotations

import pytest

from agent.assistant import Assistant
from agent.audit import MemoryAuditSink
from agent.wiring import build_assistant

QUESTIONS = [
    ("How many wrong passphrase attempts before I'm locked out, and for how long?",
     "user-guide.md", "1 hour"),
    ("What are the default chunk size and overlap?", "faq.md", "200 characters"),
    ("How is the user id recorded in the audit log?", "data-handling.md", "HMAC"),
    ("What does exit code 3 mean?", "operations.html", "missing or damaged"),
    ("What is the default data directory?", "operations.html", "./data"),
    ("Will the bot answer in a group if I don't mention it?", "user-guide.md", "mention"),
]
UNANSWERABLE = ["What will the weather be like in Berlin tomorrow?",
                "How long should I boil an egg for a soft yolk?"]


@pytest.fixture
def assistant(settings_for, local_embedder, sample_index) -> Assistant:
    return build_assistant(settings_for(), embedder=local_embedder, index=sample_index,
                     audit=MemoryAuditSink())


@pytest.mark.parametrize(("question", "source", "fact"), QUESTIONS)
async def test_answers_cite_the_right_document(assistant: Assistant, question: str,
                                               source: str, fact: str):
    answer = await assistant.ask(question)
    assert answer.fallback_reason is None
    assert answer.citations, "an answer must cite"
    assert answer.citations[0]["source"] == source
    body = answer.reply.split("\n\nSources:")[0]
    assert fact in body
    assert f"({source}" in answer.reply.split("Sources:")[1]


@pytest.mark.parametrize("question", UNANSWERABLE)
async def test_unanswerable_question_gets_i_dont_know(assistant: Assistant, question: str):
    answer = await assistant.ask(question)
    assert answer.fallback_reason == "no_context"
    assert answer.reply.startswith("I don't know")
    assert answer.citations == []
    assert "[1]" not in answer.reply and "Sources" not in answer.reply


async def test_audit_event_has_no_text_and_hashes_the_user(assistant: Assistant):
    await assistant.ask("What is the default data directory?", user_id="+15551234567")
    [event] = assistant.audit.events  # type: ignore[attr-defined]
    assert "+15551234567" not in repr(event) and "directory" not in repr(event)
    assert len(event["user"]) == 64 and event["route"] == "answered"


async def test_every_chunk_is_checked_ahead_of_time(assistant: Assistant):
    """The passage checks the graph looks up (PERF-1) cover the whole index, and follow it."""
    checks = assistant.passage_checks
    assert checks is not None and checks.done.wait(60)
    assert assistant.index is not None and len(checks) == len(assistant.index.chunks)
    assert assistant.context().passage_checks is checks
    answer = await assistant.ask("How long am I locked out after wrong passphrase attempts?")
    assert "[1]" in answer.reply
    index = assistant.index
    assistant.use_index(None)
    assert assistant.passage_checks is None and assistant.context().passage_checks is None
    assistant.use_index(index)
    assert assistant.passage_checks is not checks and assistant.passage_checks is not None


async def test_held_passage_checks_start_when_released(settings_for, local_embedder,
                                                       sample_index):
    """`serve` builds the Assistant with the fill held back until the bot is ready; the
    checks are in the context from the start, empty, and a held fill follows a new index."""
    held = build_assistant(settings_for(), embedder=local_embedder, index=sample_index,
                           audit=MemoryAuditSink(), hold_passage_checks=True)
    checks = held.passage_checks
    assert checks is not None and not checks.done.is_set() and len(checks) == 0
    answer = await held.ask("How long am I locked out after wrong passphrase attempts?")
    assert "[1]" in answer.reply, "a passage not checked ahead is checked when retrieved"
    assert not checks.done.is_set()
    held.use_index(sample_index)  # a new index while held: its fill waits too
    newer = held.passage_checks
    assert newer is not None and newer is not checks and not newer.done.is_set()
    held.start_passage_checks()
    assert newer.done.wait(60) and len(newer) == len(sample_index.chunks)
    assert not checks.done.is_set(), "the replaced index's fill never started"
    held.use_index(sample_index)  # once released, a new index is checked at once
    latest = held.passage_checks
    assert latest is not None and latest.done.wait(60)
