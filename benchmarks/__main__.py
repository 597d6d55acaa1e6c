"""`make bench`: ingest throughput against the raw model, and graph overhead per question.

Every figure is paired with a baseline measured in the same run on the same machine, and
reported as a ratio, because these machines are shared and noisy:

- ingest: `signal-rag`'s incremental ingest (load, chunk, embed, write, verify) against the
  embedding model's own `encode` on exactly the same chunk texts (PERF-4);
- graph: the full graph with an instant chat model, minus the query-embedding call of the
  same run, against a no-op graph of the same shape (PERF-1), on the sample documents,
  SciFact[:300] and the 5,000-document index PERF-1 names (the start-up rows' one),
  `--graph-runs` (3) runs each, judged on their median;
- re-ingest of an unchanged corpus must embed nothing;
- start-up (benchmarks/startup.py): `signal-rag serve` to ready, memory at ready and
  index load on a 5,000-document index, against the interpreter, a bare import and the
  sample index (PERF-3).

Usage: python -m benchmarks [--scifact DIR] [--scifact-docs N] [--questions N]
       [--startup-runs N] [--only startup|bot|graph]

`--only bot` runs the bot throughput row alone (PERF-2; `--bot-runs N` repeats it and adds
the median), e.g. `python -m benchmarks --only bot --embedders onnx --bot-runs 3`.
`--only graph` runs the SciFact graph overhead rows alone (PERF-1): on
SciFact[:--scifact-docs] and on the `--startup-docs` (5,000) document index of the start-up
benchmark (built once into data/bench-cache), as the full run does, with `--questions`
SciFact queries and `--graph-runs N` runs per index (several add a median row), e.g.
`python -m benchmarks --only graph --embedders onnx`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "examples" / "knowledge"
DEFAULT_SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class TimedEmbedder:
    """Wraps an embedder and records how long each query embedding took."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.query_seconds: list[float] = []

    @property
    def model_name(self) -> str:
        return str(self.inner.model_name)

    @property
    def dimension(self) -> int:
        return int(self.inner.dimension)

    def embed_documents(self, texts: Sequence[str]) -> Any:
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> Any:
        started = time.perf_counter()
        try:
            return self.inner.embed_query(text)
        finally:
            self.query_seconds.append(time.perf_counter() - started)


def write_scifact_docs(scifact: Path, limit: int, target: Path) -> list[str]:
    """Write the first `limit` SciFact abstracts as Markdown files; return the queries."""
    target.mkdir(parents=True, exist_ok=True)
    with (scifact / "corpus.jsonl").open(encoding="utf-8") as corpus:
        for line in itertools.islice(corpus, limit):
            row = json.loads(line)
            (target / f"{row['_id']}.md").write_text(f"# {row['title']}\n\n{row['text']}\n",
                                                     encoding="utf-8")
    with (scifact / "queries.jsonl").open(encoding="utf-8") as queries:
        return [json.loads(line)["text"] for line in queries]


def bench_ingest(name: str, docs: Path, embedder: Any, raw_model: Any,
                 repeats: int) -> dict[str, Any]:
    """`ingest` with `embedder` against sentence-transformers' own `encode` (`raw_model`)
    on the same texts: the ratio PERF-4 and the issue's ingest row read."""
    from knowledge.chunking import chunk_pages, make_splitter
    from knowledge.documents import discover, load
    from knowledge.ingest import embedding_text, ingest

    splitter = make_splitter()
    # The raw model embeds exactly what ingest embeds (title + text), so the ratio is fair.
    texts = [embedding_text(c) for p in discover(docs)
             for c in chunk_pages(load(p, p.relative_to(docs).as_posix()), splitter)]
    raw, ours, reingest = [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        raw_model.encode(texts, batch_size=64, normalize_embeddings=True,
                         show_progress_bar=False)
        raw.append(time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as tmp:
            index_dir = Path(tmp) / "index"
            started = time.perf_counter()
            report = ingest(docs, index_dir, embedder, provider="local")
            ours.append(time.perf_counter() - started)
            assert report.chunks_embedded == len(texts), (report.chunks_embedded, len(texts))
            started = time.perf_counter()
            again = ingest(docs, index_dir, embedder, provider="local")
            reingest.append(time.perf_counter() - started)
            assert again.chunks_embedded == 0
    raw_s, ours_s = statistics.median(raw), statistics.median(ours)
    return {"corpus": name, "embedder": embedder_label(embedder), "chunks": len(texts),
            "st_encode_s": raw_s, "ingest_s": ours_s,
            "st_chunks_per_s": len(texts) / raw_s, "ingest_chunks_per_s": len(texts) / ours_s,
            "throughput_vs_st": raw_s / ours_s, "reingest_s": statistics.median(reingest),
            "reingest_embedded": 0, "repeats": repeats}


def embedder_label(embedder: Any) -> str:
    from knowledge.embeddings import LocalEmbedder

    return "onnx" if isinstance(embedder, LocalEmbedder) else "torch"


def bench_query(embedder: Any, questions: list[str]) -> dict[str, Any]:
    """One query embedding at a time, as a quiet bot makes them."""
    for question in questions[:5]:  # warm-up
        embedder.embed_query(question)
    times = []
    for question in questions:
        started = time.perf_counter()
        embedder.embed_query(question)
        times.append((time.perf_counter() - started) * 1000)
    return {"embedder": embedder_label(embedder), "queries": len(questions),
            "p50_ms": statistics.median(times), "p95_ms": percentile(times, 95),
            "max_ms": max(times)}


def noop_graph(*, on_loop: bool = False) -> Any:
    """Same seven nodes and edges (the registry in graph/), nodes that do nothing and routers
    that take the happy path: LangGraph's own floor. Sync nodes and routers (the floor the
    PERF-1 target was set against) run on LangGraph's thread pool, one hop each; with
    `on_loop` they are coroutines and run on the event loop, a lower floor."""
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    from graph.builder import EDGES, ROUTERS, targets
    from graph.contract import FIRST_NODE, NODES

    class S(TypedDict, total=False):
        question: str
        reply: str

    def node(_state: S) -> dict[str, Any]:
        return {}

    async def async_node(_state: Any) -> dict[str, Any]:
        return {}

    builder = StateGraph(S)
    for name in NODES:
        builder.add_node(name, async_node if on_loop else node)
    builder.add_edge(START, FIRST_NODE)
    for source, router in ROUTERS.items():
        choices = targets(router)
        happy = next(target for target in choices if target != "fallback")

        async def async_route(_s: Any, to: str = happy) -> str:
            return to

        builder.add_conditional_edges(source, async_route if on_loop
                                      else lambda _s, to=happy: to, choices)
    for source, target in EDGES:
        builder.add_edge(source, target)
    builder.add_edge(NODES[-1], END)
    return builder.compile()


def instant_chat_model(reply: str) -> Any:
    """A chat model that answers `reply` at once, natively async like ChatOpenAI's client.
    langchain's GenericFakeChatModel runs its sync `_generate` on a thread pool from
    `ainvoke`, a hop a real async client does not make; it would be billed to the graph."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    class InstantChatModel(GenericFakeChatModel):
        async def _agenerate(self, messages: Any, stop: Any = None, run_manager: Any = None,
                             **kwargs: Any) -> Any:
            return self._generate(messages, stop=stop, **kwargs)

    return InstantChatModel(messages=itertools.cycle([AIMessage(reply)]))


async def bench_graph(name: str, index_dir: Path, embedder: Any,
                      questions: list[str]) -> dict[str, Any]:
    from agent.audit import JsonLinesAuditSink
    from graph.builder import build_graph
    from graph.context import GraphContext
    from guards.passages import PassageChecks
    from knowledge.index import EmbeddingInfo, open_index
    from knowledge.retrieval import KnowledgeBase

    timed = TimedEmbedder(embedder)
    index = open_index(index_dir, EmbeddingInfo("local", embedder.model_name, 384))
    # The bot checks every chunk in the background once its index is loaded (the
    # Assistant's index setter); measure that steady state.
    checks = PassageChecks()
    checks.fill(chunk.text for chunk in index.chunks)
    knowledge = KnowledgeBase(index, timed, min_similarity=-1.0)
    # As the bot runs it (Assistant.context): the threat check's embedding head embeds
    # the message, and retrieval reuses that vector.
    audit_dir = tempfile.TemporaryDirectory()  # the audit trail as `serve` writes it
    audit = JsonLinesAuditSink(Path(audit_dir.name) / "audit.jsonl")
    ctx = GraphContext(knowledge=knowledge, passage_checks=checks,
                       query_vector=knowledge.query_vector, audit=audit,
                       chat_model=instant_chat_model("Instant answer [1]."),
                       model_name="instant")
    graph, noop, floor = build_graph(), noop_graph(), noop_graph(on_loop=True)
    for question in questions[:5]:  # warm-up
        await graph.ainvoke({"question": question, "user": "bench"}, context=ctx)
        await noop.ainvoke({"question": question})
        await floor.ainvoke({"question": question})
    totals, embeds, noops, floors = [], [], [], []
    for question in questions:
        timed.query_seconds.clear()
        started = time.perf_counter()
        result = await graph.ainvoke({"question": question, "user": "bench"}, context=ctx)
        totals.append(time.perf_counter() - started)
        assert len(timed.query_seconds) == 1, "the query must be embedded exactly once"
        embeds.append(timed.query_seconds[-1])
        assert result["reply"]
        for baseline, times in ((noop, noops), (floor, floors)):
            started = time.perf_counter()
            await baseline.ainvoke({"question": question})
            times.append(time.perf_counter() - started)
    assert audit.flush(timeout=60), "the audit trail reached the disk"
    runs = len(questions) + min(5, len(questions))  # with the warm-up
    assert len(audit.path.read_text().splitlines()) == runs, "one audit line per run"
    audit_dir.cleanup()
    overhead = [(t - e) * 1000 for t, e in zip(totals, embeds, strict=True)]
    noop_ms = [n * 1000 for n in noops]
    floor_ms = [n * 1000 for n in floors]
    return {"index": name, "embedder": embedder_label(embedder), "chunks": len(index.chunks),
            "questions": len(questions),
            "overhead_p50_ms": statistics.median(overhead),
            "overhead_p95_ms": percentile(overhead, 95),
            "embed_p50_ms": statistics.median(embeds) * 1000,
            "noop_p50_ms": statistics.median(noop_ms), "noop_p95_ms": percentile(noop_ms, 95),
            "ratio_p95_vs_noop": percentile(overhead, 95) / percentile(noop_ms, 95),
            "noop_on_loop_p95_ms": percentile(floor_ms, 95),
            "ratio_p95_vs_noop_on_loop": percentile(overhead, 95) / percentile(floor_ms, 95)}


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for key in rows[0]:
        table.add_column(key, justify="right")
    for row in rows:
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()])
    Console(width=220).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scifact", type=Path, default=DEFAULT_SCIFACT)
    parser.add_argument("--scifact-docs", type=int, default=300,
                        help="abstracts to ingest (all 5183: ~7 min per pass on 2 cores)")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="ingest repeats (samples)")
    parser.add_argument("--bot-seconds", type=float, default=60.0,
                        help="bot throughput run length (0 to skip)")
    parser.add_argument("--bot-transports", default="tcp,http",
                        help="daemon transports to measure the bot through (comma-separated)")
    parser.add_argument("--startup-runs", type=int, default=5,
                        help="serve start-ups per index and embedder for PERF-3 (0 to skip)")
    parser.add_argument("--startup-docs", type=int, default=5000,
                        help="documents in the start-up index (built once, then cached)")
    parser.add_argument("--embedders", default="torch,onnx",
                        help="embedders to measure side by side (torch: the sentence-"
                             "transformers path before, onnx: the shipped one)")
    parser.add_argument("--only", choices=("startup", "bot", "graph"),
                        help="run only this section (startup writes "
                             "benchmarks/results/startup.json; bot and graph print their "
                             "table)")
    parser.add_argument("--graph-runs", type=int, default=3,
                        help="graph overhead runs per index and embedder (several add a "
                             "median row, which the targets table reads)")
    parser.add_argument("--bot-runs", type=int, default=1,
                        help="bot runs per transport and embedder (several add a median row)")
    args = parser.parse_args()

    from agent.observability.logs import configure_logging
    from knowledge.embeddings import LocalEmbedder, SentenceTransformerEmbedder
    from knowledge.ingest import ingest

    configure_logging("WARNING")
    from benchmarks.machine import describe, summary

    machine = describe()  # before the benchmarks load the machine
    print(summary(machine))
    if args.only:
        {"startup": startup_only, "bot": bot_section, "graph": graph_section}[args.only](args)
        return
    reference = SentenceTransformerEmbedder()  # torch: the baseline and the raw `encode`
    known = {"torch": reference, "onnx": LocalEmbedder()}
    embedders = [known[name] for name in args.embedders.split(",")]
    for embedder in embedders:
        _ = embedder.dimension  # load once, outside every measurement
    raw_model = reference._load()
    ingest_rows, graph_rows, bot_rows, query_rows = [], [], [], []
    sample_questions = [line.strip() for line in (ROOT / "benchmarks" / "questions.txt")
                        .read_text(encoding="utf-8").splitlines() if line.strip()]
    onnx = known["onnx"]
    with tempfile.TemporaryDirectory() as tmp:
        for embedder in embedders:
            ingest_rows.append(bench_ingest("samples", SAMPLES, embedder, raw_model,
                                            args.repeats))
        sample_index = Path(tmp) / "samples-index"  # the same vectors serve both embedders
        ingest(SAMPLES, sample_index, onnx, provider="local")
        questions = list(itertools.islice(itertools.cycle(sample_questions), args.questions))
        for embedder in embedders:
            graph_rows.extend(graph_runs("samples", sample_index, embedder, questions,
                                         args.graph_runs))
        if args.bot_seconds > 0:
            bot_rows = bench_bot(sample_index, embedders, args)
        scifact_queries: list[str] = []
        if (args.scifact / "corpus.jsonl").is_file():
            docs = Path(tmp) / "scifact-docs"
            scifact_queries = write_scifact_docs(args.scifact, args.scifact_docs, docs)
            label = f"scifact[:{args.scifact_docs}]"
            for embedder in embedders:
                ingest_rows.append(bench_ingest(label, docs, embedder, raw_model, 1))
            scifact_index = Path(tmp) / "scifact-index"
            ingest(docs, scifact_index, onnx, provider="local")
            for embedder in embedders:
                graph_rows.extend(graph_runs(label, scifact_index, embedder,
                                             scifact_queries[:args.questions], args.graph_runs))
            # PERF-1 names a 5,000-document index: the start-up rows' one (built once).
            from benchmarks.startup import cached_index, scifact_corpus

            large, _ = cached_index(scifact_corpus(args.scifact, args.startup_docs,
                                                   Path(tmp) / "startup-docs"), onnx)
            for embedder in embedders:
                graph_rows.extend(graph_runs(f"scifact[:{args.startup_docs}]", large, embedder,
                                             scifact_queries[:args.questions], args.graph_runs))
        else:
            print(f"SciFact not found at {args.scifact}: skipped")
        query_texts = (scifact_queries or questions)[:args.questions]
        query_rows = [bench_query(embedder, query_texts) for embedder in embedders]
    startup = None
    if args.startup_runs > 0:
        from benchmarks.startup import startup_section

        startup = startup_section(args.startup_runs, args.scifact, args.startup_docs)
    print_table("Ingest throughput vs sentence-transformers' own encode (PERF-4: ratio >= "
                "1/1.10; issue 13: onnx >= 1.5)", ingest_rows)
    print_table("Query embedding, one at a time (issue 13: p50 <= 6 ms, p95 <= 12 ms)",
                query_rows)
    print_table(GRAPH_TITLE, graph_rows)
    if bot_rows:
        print_table(BOT_TITLE, bot_rows)
    targets = target_rows(ingest_rows, query_rows, graph_rows, bot_rows, startup)
    print_table("Issue 13 targets: torch path (before) beside the ONNX path, same run",
                targets)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    results = {"machine": machine, "ingest": ingest_rows, "query": query_rows, "graph": graph_rows,
               "bot": bot_rows, "startup": startup, "targets": targets}
    (out / "latest.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"results: {out / 'latest.json'}")


GRAPH_TITLE = ("Graph overhead per question minus the embedding call, instant model "
               "(PERF-1: p95 ratio <= 1.5 vs no-op graph)")
BOT_TITLE = ("Bot throughput through the daemon simulator, instant model, 100 users "
             "(PERF-2: >= 50 answers/s, 0 lost; issue 13: HTTP >= 80, TCP >= 100)")


def bench_bot(sample_index: Path, embedders: Sequence[Any],
              args: argparse.Namespace) -> list[dict[str, Any]]:
    """The PERF-2 rows: the bot through the simulator, `--bot-runs` runs per transport and
    embedder, plus a median row when there are several."""
    from benchmarks.bot import run_bot_benchmark

    rows: list[dict[str, Any]] = []
    for transport in args.bot_transports.split(","):
        for embedder in embedders:
            runs = [asyncio.run(run_bot_benchmark(sample_index, embedder,
                                                  seconds=args.bot_seconds,
                                                  transport=transport))
                    for _ in range(max(1, args.bot_runs))]
            rows.extend(runs)
            if len(runs) > 1:  # a row with the same columns, only the median filled
                rows.append({**dict.fromkeys(runs[0], ""), "embedder": "median",
                             "transport": transport, "answers_per_s": statistics.median(
                                 run["answers_per_s"] for run in runs)})
    return rows


def startup_only(args: argparse.Namespace) -> None:
    from benchmarks.startup import startup_section

    startup_section(max(1, args.startup_runs), args.scifact, args.startup_docs)


def bot_section(args: argparse.Namespace) -> None:
    """The PERF-2 row alone, on the sample index."""
    from knowledge.embeddings import LocalEmbedder, SentenceTransformerEmbedder
    from knowledge.ingest import ingest

    onnx = LocalEmbedder()
    embedders = [onnx if name == "onnx" else SentenceTransformerEmbedder()
                 for name in args.embedders.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        sample_index = Path(tmp) / "samples-index"
        ingest(SAMPLES, sample_index, onnx, provider="local")
        rows = bench_bot(sample_index, embedders, args)
    print_table(BOT_TITLE, rows)


def graph_section(args: argparse.Namespace) -> None:
    """The PERF-1 rows alone: the graph on SciFact[:--scifact-docs] (as in the full run) and
    on the start-up benchmark's 5,000-document index, `--graph-runs` runs each."""
    from benchmarks.startup import cached_index, scifact_corpus
    from knowledge.embeddings import LocalEmbedder, SentenceTransformerEmbedder
    from knowledge.ingest import ingest

    if not (args.scifact / "corpus.jsonl").is_file():
        raise SystemExit(f"SciFact not found at {args.scifact}: the graph rows need it")
    onnx = LocalEmbedder()
    embedders = [onnx if name == "onnx" else SentenceTransformerEmbedder()
                 for name in args.embedders.split(",")]
    for embedder in embedders:
        _ = embedder.dimension  # load once, outside every measurement
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "scifact-docs"
        queries = write_scifact_docs(args.scifact, args.scifact_docs, docs)[:args.questions]
        small = Path(tmp) / "scifact-index"
        ingest(docs, small, onnx, provider="local")
        large, _ = cached_index(scifact_corpus(args.scifact, args.startup_docs,
                                               Path(tmp) / "startup-docs"), onnx)
        for label, index_dir in ((f"scifact[:{args.scifact_docs}]", small),
                                 (f"scifact[:{args.startup_docs}]", large)):
            for embedder in embedders:
                rows.extend(graph_runs(label, index_dir, embedder, queries, args.graph_runs))
    print_table(GRAPH_TITLE, rows)


def graph_runs(label: str, index_dir: Path, embedder: Any, questions: list[str],
               runs: int) -> list[dict[str, Any]]:
    """`runs` runs of the graph benchmark; with several, a last row of their medians
    (`run` "median"), the figure the targets table reads: one run's p95 ratio moves by
    +-0.2 on a shared machine."""
    rows = [{"run": str(number + 1), **asyncio.run(bench_graph(label, index_dir, embedder,
                                                               questions))}
            for number in range(max(1, runs))]
    if len(rows) > 1:
        rows.append({**rows[0], "run": "median", **{key: statistics.median(
            row[key] for row in rows) for key in GRAPH_MEDIANS}})
    return rows


GRAPH_MEDIANS = ("overhead_p50_ms", "overhead_p95_ms", "embed_p50_ms", "noop_p50_ms",
                 "noop_p95_ms", "ratio_p95_vs_noop",
                 "noop_on_loop_p95_ms", "ratio_p95_vs_noop_on_loop")


def target_rows(ingest_rows: list[dict[str, Any]], query_rows: list[dict[str, Any]],
                graph_rows: list[dict[str, Any]], bot_rows: list[dict[str, Any]],
                startup: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every row of issue 13's table, torch beside onnx, with the verdict on onnx's figure;
    a figure this run did not measure says so (never a verdict on it)."""
    def pick(rows: list[dict[str, Any]], embedder: str, **match: Any) -> dict[str, Any] | None:
        return next((r for r in rows if r.get("embedder") == embedder
                     and all(r.get(k) == v for k, v in match.items())), None)

    def row(figure: str, torch: float | None, onnx: float | None, target: str,
            met: bool | None) -> dict[str, Any]:
        return {"figure": figure, "torch": "n/a" if torch is None else torch,
                "onnx": "not measured" if onnx is None else onnx,
                "onnx/torch": "n/a" if torch is None or onnx is None or not torch
                else onnx / torch,
                "target": target,
                "result": "not measured" if met is None else "MET" if met else "MISSED"}

    def value(found: dict[str, Any] | None, key: str) -> float | None:
        return None if found is None else float(found[key])

    rows = []
    serve_torch = (startup or {}).get("torch", {})
    serve_onnx = (startup or {}).get("serve", [{}])[0] if startup else {}
    ready = serve_onnx.get("ready_p50_s")
    rss = serve_onnx.get("rss_at_ready_p50_mb")
    corpus = (startup or {}).get("corpus", "5,000-doc")
    rows.append(row(f"start -> /readyz p50, {corpus} index (s)", serve_torch.get("ready_p50_s"),
                    ready, "<= 3 s", None if ready is None else ready <= 3.0))
    rows.append(row("RSS at ready p50 (MB)", serve_torch.get("rss_at_ready_p50_mb"), rss,
                    "<= 400 MB", None if rss is None else rss <= 400.0))
    for key, limit in (("p50_ms", 6.0), ("p95_ms", 12.0)):
        onnx_q = value(pick(query_rows, "onnx"), key)
        rows.append(row(f"query embedding {key[:3]} (ms)", value(pick(query_rows, "torch"), key),
                        onnx_q, f"<= {limit:g} ms", None if onnx_q is None else onnx_q <= limit))
    if not any(r["embedder"] == "onnx" for r in ingest_rows):
        rows.append(row("ingest throughput vs st encode", None, None, ">= 1.5x", None))
    if not any(r["embedder"] == "onnx" for r in graph_rows):
        rows.append(row("graph overhead p95 / no-op", None, None, "<= 1.5", None))
    for found in (r for r in ingest_rows if r["embedder"] == "onnx"):
        torch_row = pick(ingest_rows, "torch", corpus=found["corpus"])
        rows.append(row(f"ingest throughput vs st encode, {found['corpus']}",
                        value(torch_row, "throughput_vs_st"), found["throughput_vs_st"],
                        ">= 1.5x", found["throughput_vs_st"] >= 1.5))
    final = {(r["index"], r["embedder"]): r for r in graph_rows}  # the median row if any
    for found in (r for r in final.values() if r["embedder"] == "onnx"):
        torch_row = final.get((found["index"], "torch"))
        rows.append(row(f"graph overhead p95 / no-op, {found['index']}",
                        value(torch_row, "ratio_p95_vs_noop"), found["ratio_p95_vs_noop"],
                        "<= 1.5", found["ratio_p95_vs_noop"] <= 1.5))
    for transport, limit in (("http", 80.0), ("tcp", 100.0)):
        found = pick(bot_rows, "onnx", transport=transport)
        rows.append(row(f"answers/s, 100 users, {transport.upper()}",
                        value(pick(bot_rows, "torch", transport=transport), "answers_per_s"),
                        value(found, "answers_per_s"), f">= {limit:g}",
                        None if found is None else found["answers_per_s"] >= limit))
    rows.append({"figure": "default image size (MB)", "torch": "n/a", "onnx": image_size(),
                 "onnx/torch": "n/a", "target": "<= 400 MB", "result": "see docker/ (E)"})
    return rows


def image_size() -> str:
    """The default image's size if one is built on this machine, else "not built"."""
    import shutil
    import subprocess

    for engine in ("docker", "podman"):
        if shutil.which(engine) is None:
            continue
        out = subprocess.run([engine, "image", "inspect", "signal-rag:latest", "--format",
                              "{{.Size}}"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip().isdigit():
            return f"{int(out.stdout.strip()) / 1e6:.0f}"
    return "not built"


if __name__ == "__main__":
    main()
