"""Reactions on the bot's answers turned into eval data (EV-4), privacy first.

What counts: only 👍 (helpful) and 👎 (not helpful), in any skin tone, from the person the
answer was for (in a group, other members' reactions are ignored: the question is not
theirs, and their /forget could not delete it). Every other emoji is ignored; it replaces a
counted reaction, as it does in Signal, so the earlier 👍/👎 is deleted. Removing the reaction
deletes it. The metric `signal_rag_feedback_total{route, reaction}` counts reactions as they
arrive (a counter never goes down: a removal is not subtracted there); `signal-rag eval
feedback` shows what is stored now.

By default a reaction is kept without any text: the answer's route, cited sources, cited
chunk ids and top similarity. With FEEDBACK__KEEP_TEXT the user's question is kept too (said
in /info), so `signal-rag eval feedback --export DIR` can write a BEIR dataset: 👍 marks the
cited chunks relevant (1), 👎 judged not relevant (0). /forget deletes a user's reactions, the
disappearing-message timer the kept questions of that chat (agent/users.py).

Each counted reaction is a span linked (an OpenTelemetry Link) to the trace of the answer,
whose context is stored with the sent answer.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry.trace import Link, NoOpTracer, Tracer, get_current_span

from agent.observability.tracing import extract
from graph.contract import ROUTES, route_of

if TYPE_CHECKING:
    from agent.assistant import Answer
    from agent.observability.metrics import BotMetrics
    from agent.signal import Reaction
    from agent.users import FeedbackRow, UserDirectory

log = logging.getLogger(__name__)

Kind = Literal["helpful", "not_helpful"]
HELPFUL: Kind = "helpful"
NOT_HELPFUL: Kind = "not_helpful"
THUMBS_UP, THUMBS_DOWN = "\N{THUMBS UP SIGN}", "\N{THUMBS DOWN SIGN}"
_COUNTED: dict[str, Kind] = {THUMBS_UP: HELPFUL, THUMBS_DOWN: NOT_HELPFUL}
_MODIFIERS = {chr(c) for c in range(0x1F3FB, 0x1F400)} | {"\N{VARIATION SELECTOR-16}"}
"""Skin tones and the emoji presentation selector: 👍🏽 is still 👍."""
MAX_EMOJI_CHARS = 16
"""Longer "emoji" (a hostile client can send any string) are ignored unread."""


def classify(emoji: str) -> Kind | None:
    """helpful, not_helpful, or None for any emoji (or string) that does not count."""
    if not isinstance(emoji, str) or len(emoji) > MAX_EMOJI_CHARS:
        return None
    return _COUNTED.get("".join(ch for ch in emoji if ch not in _MODIFIERS))


@dataclass(frozen=True, slots=True)
class AnswerRecord:
    """What is kept with a sent answer so a later reaction can be counted."""

    route: str
    facts: dict[str, Any]
    """cited sources, cited chunk ids, top similarity: no text."""
    question: str | None = None
    """Only with FEEDBACK__KEEP_TEXT."""


def answer_record(answer: Answer, question: str, *, keep_text: bool) -> AnswerRecord:
    """The record of one graph answer. Cited chunks: the retrieved passages whose source
    and page the reply cites (a citation names a page, the passage is the chunk). The
    question is kept (with `keep_text`) only when chunks are cited, since only then can it
    become an eval query: a refusal or fallback never keeps what was asked."""
    cited = {(c["source"], c["page"]) for c in answer.citations}
    chunks = [p["chunk_id"] for p in answer.passages
              if "chunk_id" in p and (p["source"], p["page"]) in cited]
    similarities = [p["similarity"] for p in answer.passages]
    facts = {"sources": sorted({c["source"] for c in answer.citations}),
             "chunks": list(dict.fromkeys(chunks)),
             "top_similarity": max(similarities) if similarities else None}
    return AnswerRecord(route=route_of(answer.fallback_reason), facts=facts,
                        question=question if keep_text and facts["chunks"] else None)


def remember_answer(users: UserDirectory, user: str, chat: str, sent_ts: int, *,
                    sources: list[dict[str, Any]], record: AnswerRecord | None,
                    trace: str | None) -> None:
    """Store a sent answer with its feedback record and trace context. Without a record
    (a command's reply) reactions to it are not counted."""
    if record is None:
        users.remember_answer(user, chat, sent_ts, sources, trace=trace)
        return
    users.remember_answer(user, chat, sent_ts, sources, route=record.route, trace=trace,
                          facts=record.facts, question=record.question)


class FeedbackRecorder:
    """The service's one entry point for reactions (`record`, a blocking call)."""

    def __init__(self, users: UserDirectory, *, keep_text: bool,
                 metrics: BotMetrics | None = None, tracer: Tracer | None = None) -> None:
        self.users = users
        self.keep_text = keep_text
        self._metrics = metrics
        self._tracer = tracer or NoOpTracer()

    def record(self, user: str, reaction: Reaction) -> Kind | None:
        """Count `user`'s reaction on the bot's answer; the kind counted, or None when it
        was ignored (not an answer to this user, an emoji that does not count, a removal)."""
        stamp = reaction.target_sent_timestamp
        answer = self.users.answered_for(user, stamp) if 0 < stamp < 2**63 else None
        if answer is None or answer.route is None:
            log.info("feedback_ignored", extra={"reason": "not_an_answer_to_this_user"})
            return None
        kind = classify(reaction.emoji)
        if kind is None and reaction.is_remove:  # nothing stored to remove: it never counted
            log.info("feedback_ignored", extra={"reason": "emoji_not_counted"})
            return None
        # The raw emoji is never stored (any string may arrive), only the canonical one.
        emoji = {HELPFUL: THUMBS_UP, NOT_HELPFUL: THUMBS_DOWN}[kind] if kind else ""
        if not self.users.record_feedback(user, stamp, emoji, reaction=kind,
                                          removed=reaction.is_remove,
                                          keep_text=self.keep_text):
            log.info("feedback_ignored", extra={"reason": "not_an_answer_to_this_user"})
            return None  # deleted (/reset, a timer) since it was looked up
        counted = kind if not reaction.is_remove else None
        log.info("feedback_recorded", extra={"reaction": kind or "other",
                                             "removed": reaction.is_remove,
                                             "route": answer.route})
        context = get_current_span(extract(answer.trace)).get_span_context()
        links = [Link(context)] if context.is_valid else []
        with self._tracer.start_as_current_span(
                "signal reaction", links=links, record_exception=False,
                attributes={"messaging.system": "signal", "signal_rag.route": answer.route,
                            "signal_rag.reaction": kind or "other",
                            "signal_rag.reaction_removed": reaction.is_remove}) as span:
            if context.is_valid:
                span.set_attribute("signal_rag.answer_trace_id",
                                   format(context.trace_id, "032x"))
        if counted is not None and self._metrics is not None:  # bounded label values only
            route = answer.route if answer.route in ROUTES else "unknown"
            self._metrics.feedback.add(1, {"route": route, "reaction": counted})
        return counted


# --------------------------------------------------------------------------- reading


@dataclass(slots=True)
class Tally:
    """Reactions on one route or one source."""

    helpful: int = 0
    not_helpful: int = 0
    similarity: dict[str, list[float]] = field(
        default_factory=lambda: {HELPFUL: [], NOT_HELPFUL: []})

    def add(self, kind: Kind, top_similarity: float | None) -> None:
        if kind == HELPFUL:
            self.helpful += 1
        else:
            self.not_helpful += 1
        if isinstance(top_similarity, int | float):
            self.similarity[kind].append(float(top_similarity))

    def mean_similarity(self, kind: Kind) -> float | None:
        values = self.similarity[kind]
        return sum(values) / len(values) if values else None

    def to_json(self) -> dict[str, Any]:
        return {"helpful": self.helpful, "not_helpful": self.not_helpful,
                "top_similarity_helpful": self.mean_similarity(HELPFUL),
                "top_similarity_not_helpful": self.mean_similarity(NOT_HELPFUL)}


@dataclass(slots=True)
class Summary:
    routes: dict[str, Tally] = field(default_factory=dict)
    sources: dict[str, Tally] = field(default_factory=dict)
    kept_questions: int = 0

    @property
    def reactions(self) -> int:
        return sum(t.helpful + t.not_helpful for t in self.routes.values())

    def to_json(self) -> dict[str, Any]:
        return {"reactions": self.reactions, "kept_questions": self.kept_questions,
                "routes": {k: v.to_json() for k, v in sorted(self.routes.items())},
                "sources": {k: v.to_json() for k, v in sorted(self.sources.items())}}


def _kind(row: FeedbackRow) -> Kind | None:
    """A row's kind; rows written before EV-4 kept only the raw emoji."""
    if row.reaction in (HELPFUL, NOT_HELPFUL):
        return HELPFUL if row.reaction == HELPFUL else NOT_HELPFUL
    return classify(row.emoji)


def summarize(rows: Iterable[FeedbackRow]) -> Summary:
    """Helpful / not helpful counts and mean top similarity per route and cited source."""
    summary = Summary()
    for row in rows:
        kind = _kind(row)
        if kind is None:
            continue
        similarity = row.facts.get("top_similarity")
        summary.routes.setdefault(row.route or "unknown", Tally()).add(kind, similarity)
        for source in row.facts.get("sources") or []:
            summary.sources.setdefault(str(source), Tally()).add(kind, similarity)
        summary.kept_questions += row.question is not None
    return summary


class FeedbackExportError(ValueError):
    """Nothing to export, or the target cannot be written; nothing was written."""


@dataclass(frozen=True, slots=True)
class ExportResult:
    queries: int
    """Queries written (one per kept reaction)."""
    scored: int
    """Of those, queries with a 👍 judgement (`eval retrieval` scores only these)."""
    documents: int
    missing_chunks: int
    """Cited chunks that are no longer in the index (re-ingested since): left out."""


def export_beir(rows: Iterable[FeedbackRow], chunks: dict[str, tuple[str, str]],
                out_dir: Path, *, all_passages: bool = False) -> ExportResult:
    """Write queries.jsonl, corpus.jsonl (the cited chunks, from `chunks`: id -> (title,
    text) of the current index; with `all_passages` every chunk, so retrieval is measured
    against the whole collection) and qrels/test.tsv (👍: 1, 👎: 0). `out_dir` must not exist
    or be empty; it is written whole or not at all."""
    queries: list[dict[str, str]] = []
    qrels: list[tuple[str, str, int]] = []
    used: dict[str, tuple[str, str]] = {}
    missing = 0
    for row in rows:
        kind = _kind(row)
        cited = [str(c) for c in row.facts.get("chunks") or []]
        if kind is None or not row.question or not cited:
            continue
        known = [c for c in cited if c in chunks]
        missing += len(cited) - len(known)
        if not known:
            continue
        query_id = f"q{len(queries) + 1}"
        queries.append({"_id": query_id, "text": row.question})
        for chunk_id in known:
            used[chunk_id] = chunks[chunk_id]
            qrels.append((query_id, chunk_id, 1 if kind == HELPFUL else 0))
    if all_passages:
        used = dict(chunks)
    if not queries:
        raise FeedbackExportError(
            "no kept feedback to export: reactions keep a question only with "
            "SIGNAL_RAG_FEEDBACK__KEEP_TEXT=true, and only while the cited passages are "
            "still in the index")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FeedbackExportError(f"{out_dir} exists and is not an empty folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".feedback-", dir=out_dir.parent))
    try:
        (staging / "qrels").mkdir()
        _write_jsonl(staging / "queries.jsonl", queries)
        _write_jsonl(staging / "corpus.jsonl", [{"_id": i, "title": t, "text": x}
                                                for i, (t, x) in used.items()])
        with (staging / "qrels" / "test.tsv").open("w", encoding="utf-8") as handle:
            handle.write("query-id\tcorpus-id\tscore\n")
            handle.writelines(f"{q}\t{c}\t{s}\n" for q, c, s in qrels)
        if out_dir.exists():
            out_dir.rmdir()
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    scored = len({q for q, _, s in qrels if s > 0})
    return ExportResult(queries=len(queries), scored=scored, documents=len(used),
                        missing_chunks=missing)


def _write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def index_chunks(index_dir: Path) -> dict[str, tuple[str, str]]:
    """id -> (title, text) of every chunk of the verified index at `index_dir`."""
    from knowledge.index import open_index

    index = open_index(index_dir)
    return {chunk.id: (chunk.title, chunk.text) for chunk in index.chunks}
