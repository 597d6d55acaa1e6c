"""`signal-rag eval ...`: retrieval and answer-level evaluations from the command line.

agent/cli.py imports this module at start, so it imports only typer and rich; the harness
(numpy, torch, pytrec_eval, matplotlib) loads inside each command.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from evals.cache import ProgressCallback
    from evals.runner import ProgressFactory, RetrievalReport

EXIT_REGRESSION, EXIT_USAGE = 1, 2
DEFAULT_CACHE = Path("data") / "eval-cache"

app = typer.Typer(pretty_exceptions_show_locals=False, no_args_is_help=True,
                  add_completion=False,
                  help="Evaluate retrieval and answers on BEIR-format datasets.")
err = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


@contextmanager
def _progress() -> Iterator[ProgressFactory]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as bars:

        def factory(label: str) -> ProgressCallback:
            task = bars.add_task(label, total=None)

            def update(done: int, total: int) -> None:
                bars.update(task, completed=done, total=total)

            return update

        yield factory


@app.command()
def retrieval(
        *,
        dataset: Annotated[Path, typer.Option("--dataset", help="BEIR-format dataset folder.")],
        retriever: Annotated[str, typer.Option(
            "--retriever", help="Comma-separated configurations, e.g. bm25,dense,rrf,hybrid "
                                "or hybrid:fusion=rrf:rrf_k=60.")] = "bm25,dense,rrf,hybrid",
        k: Annotated[int, typer.Option("--k", min=1, max=100, help="Cut-off for nDCG, recall "
                                                                  "and MRR.")] = 10,
        out: Annotated[Path | None, typer.Option(
            "--out", help="Report folder (default: data/evals/<dataset>).")] = None,
        split: Annotated[str, typer.Option("--split", help="qrels/<split>.tsv")] = "test",
        chunk_size: Annotated[int, typer.Option(
            "--chunk-size", min=0, help="Split documents like ingest does (0: whole "
                                        "documents are the passages).")] = 0,
        chunk_overlap: Annotated[int, typer.Option("--chunk-overlap", min=0)] = 200,
        model: Annotated[str, typer.Option("--model", help="Local embedding model.")] =
        "all-MiniLM-L6-v2",
        cache_dir: Annotated[Path, typer.Option(
            "--cache-dir", help="Where document embeddings are cached.")] = DEFAULT_CACHE,
        baseline: Annotated[Path | None, typer.Option(
            "--baseline", help="Fail (exit 1) when nDCG drops below this recorded baseline "
                               "by more than its tolerance.")] = None,
        record_baseline: Annotated[Path | None, typer.Option(
            "--record-baseline", help="Write this run's scores as the new baseline.")] = None,
) -> None:
    """nDCG@k, recall@k, recall@100, MRR@k and latency for several retrievers in one run."""
    from evals.beir import DatasetError, load_dataset
    from evals.report import markdown_table, write_report
    from evals.retrievers import ConfigError, parse_specs
    from evals.runner import run_retrieval
    from knowledge.embeddings import EmbeddingError, LocalEmbedder
    from knowledge.extras import MissingExtraError, require

    try:
        require("eval", "signal-rag eval retrieval", "pytrec_eval")
    except MissingExtraError as exc:
        _fail(str(exc))
    try:
        specs = parse_specs(retriever)
        data = load_dataset(dataset, split)
    except (ConfigError, DatasetError) as exc:
        _fail(str(exc))
    out_dir = out or Path("data") / "evals" / data.name
    overlap = min(chunk_overlap, max(0, chunk_size - 1))
    try:
        with _progress() as progress:
            report = run_retrieval(data, specs, embedder=LocalEmbedder(model), k=k,
                                   cache_dir=cache_dir, chunk_size=chunk_size,
                                   chunk_overlap=overlap, progress=progress)
    except ConfigError as exc:
        _fail(str(exc))
    except EmbeddingError as exc:
        _fail(str(exc))
    paths = write_report(report, out_dir)
    typer.echo(markdown_table(report))
    typer.echo(f"\n{report.queries} queries, {report.documents} documents, "
               f"{report.seconds:.0f} s. Wrote {', '.join(str(p) for p in paths)}")
    if record_baseline is not None:
        from evals.baseline import record

        record(report, record_baseline, command=" ".join(["signal-rag", *sys.argv[1:]]))
        typer.echo(f"Recorded the baseline in {record_baseline}")
    if baseline is not None:
        _check_baseline(report, baseline)


def _check_baseline(report: RetrievalReport, path: Path) -> None:
    from evals.baseline import BaselineError, load, regressions

    try:
        found = regressions(report, load(path))
    except BaselineError as exc:
        _fail(str(exc))
    for line in found:
        err.print(f"[bold red]regression:[/] {line}", highlight=False)
    if found:
        raise typer.Exit(EXIT_REGRESSION)
    typer.echo(f"No regression against {path}")


def _chat_model(*, model: str | None, base_url: str | None, api_key: str | None,
                timeout: float) -> BaseChatModel | None:
    """The same OpenAI-compatible client the bot builds, from the bot's own variables."""
    if not model:
        return None
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=model, base_url=base_url, api_key=api_key or "not-needed",
                      timeout=timeout, max_retries=2, temperature=0.0)


@app.command()
def answers(
        *,
        dataset: Annotated[Path, typer.Option(
            "--dataset", help="BEIR-format dataset whose corpus ids are document paths.")],
        documents: Annotated[Path, typer.Option(
            "--documents", help="Folder of the documents to ingest.")] = Path(
            "examples/knowledge"),
        out: Annotated[Path | None, typer.Option("--out", help="Write answers.json here.")] =
        None,
        split: Annotated[str, typer.Option("--split")] = "test",
        llm_model: Annotated[str | None, typer.Option(
            "--llm-model", envvar="SIGNAL_RAG_LLM__MODEL",
            help="Chat model to check as well (default: the bot's).")] = None,
        llm_base_url: Annotated[str | None, typer.Option(
            "--llm-base-url", envvar="SIGNAL_RAG_LLM__BASE_URL")] = None,
        llm_api_key: Annotated[str | None, typer.Option(
            "--llm-api-key", envvar=["SIGNAL_RAG_LLM__API_KEY", "OPENAI_API_KEY"],
            show_default=False, help="Read from the environment; avoid the command line.")] =
        None,
        llm_timeout: Annotated[float, typer.Option("--llm-timeout",
                                                   envvar="SIGNAL_RAG_LLM__TIMEOUT")] = 30.0,
        min_similarity: Annotated[float, typer.Option(
            "--min-similarity", envvar="SIGNAL_RAG_RETRIEVAL__MIN_SIMILARITY")] = 0.3,
        min_coverage: Annotated[float, typer.Option(
            "--min-coverage", envvar="SIGNAL_RAG_RETRIEVAL__MIN_COVERAGE")] = 0.6,
        top_k: Annotated[int, typer.Option("--top-k", envvar="SIGNAL_RAG_RETRIEVAL__TOP_K")] =
        4,
        model: Annotated[str, typer.Option("--model", help="Local embedding model.")] =
        "all-MiniLM-L6-v2",
        baseline: Annotated[Path | None, typer.Option(
            "--baseline", help="Fail (exit 1) when the share citing a relevant document "
                               "drops below this baseline by more than its tolerance.")] = None,
        record_baseline: Annotated[Path | None, typer.Option(
            "--record-baseline", help="Add these figures to this baseline file.")] = None,
) -> None:
    """Share of answers citing a relevant document: extractive, and a chat model if set."""
    from evals.answers import AnswerSettings, run_answers
    from evals.beir import DatasetError, load_dataset
    from knowledge.embeddings import EmbeddingError, LocalEmbedder

    try:
        data = load_dataset(dataset, split)
    except DatasetError as exc:
        _fail(str(exc))
    settings = AnswerSettings(top_k=top_k, min_similarity=min_similarity,
                              min_coverage=min_coverage)
    chat_model = _chat_model(model=llm_model, base_url=llm_base_url, api_key=llm_api_key,
                             timeout=llm_timeout)
    try:
        with _progress() as progress:
            report = run_answers(data, documents, embedder=LocalEmbedder(model),
                                 chat_model=chat_model, model_name=llm_model or "model",
                                 settings=settings, progress=progress)
    except EmbeddingError as exc:
        _fail(str(exc))
    table = Table("answerer", "questions", "cites a relevant doc", "first citation relevant",
                  "answered", title=f"answers on {data.name}")
    for row in report.results:
        table.add_row(row.answerer, str(row.questions), f"{row.cited_relevant:.3f}",
                      f"{row.first_cited_relevant:.3f}", f"{row.answered:.3f}")
    Console().print(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "answers.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n",
                                          encoding="utf-8")
    if record_baseline is not None:
        from evals.baseline import record_answers

        record_answers(report, record_baseline)
        typer.echo(f"Recorded the answer-level baseline in {record_baseline}")
    if baseline is not None:
        from evals.baseline import BaselineError, answer_regressions, load

        try:
            found = answer_regressions(report, load(baseline))
        except BaselineError as exc:
            _fail(str(exc))
        for line in found:
            err.print(f"[bold red]regression:[/] {line}", highlight=False)
        if found:
            raise typer.Exit(EXIT_REGRESSION)
        typer.echo(f"No regression against {baseline}")
