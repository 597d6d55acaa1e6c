"""The `signal-rag` command line: ingest, ask, chat, graph, index verify, eval, guard scan.

Exit codes: 0 ok, 1 finished with document errors (`health`: not ready), 2 usage or
configuration error, 3 index missing or damaged, 4 unexpected internal error (one line on
stderr; `SIGNAL_RAG_DEBUG=1` adds the redacted traceback, agent/observability/crash.py).
"""

from __future__ import annotations

import asyncio
import sys
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, NoReturn, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from agent.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from agent.assistant import Assistant
    from graph.drawing import Format

EXIT_OK, EXIT_DOCUMENT_ERRORS, EXIT_CONFIG, EXIT_INDEX = 0, 1, 2, 3
EXIT_NOT_READY = 1  # `health`: the bot is not ready or not reachable

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  pretty_exceptions_show_locals=False,
                  help="Answer questions from your documents, on Signal or in the terminal.")
index_app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False,
                        help="Inspect the index.")
app.add_typer(index_app, name="index")


def _add_eval_app() -> None:
    """`eval`: its module imports only typer and rich; the harness loads in each command."""
    from evals.cli import app as eval_app

    app.add_typer(eval_app, name="eval")


_add_eval_app()


def _add_guard_app() -> None:
    """`guard`: its module imports only typer and rich; the detector loads in each command."""
    from agent.guard_cli import app as guard_app

    app.add_typer(guard_app, name="guard")


_add_guard_app()


def _add_audit_app() -> None:
    """`audit`: its module imports only typer and the standard library."""
    from agent.audit_cli import app as audit_app

    app.add_typer(audit_app, name="audit")


_add_audit_app()


def _add_backup_app() -> None:
    """`backup`: its module imports only typer and the standard library."""
    from agent.backup import app as backup_app

    app.add_typer(backup_app, name="backup")


_add_backup_app()


def _add_link_command() -> None:
    """`link`: its module imports only typer; segno loads when the QR code is drawn."""
    from agent.linking import link_command

    app.command("link")(link_command)


_add_link_command()


def _add_model_app() -> None:
    """`model`: its module imports only typer and rich; torch loads only to export."""
    from agent.model_cli import app as model_app

    app.add_typer(model_app, name="model")


_add_model_app()
err = Console(stderr=True)


class GraphFormat(StrEnum):
    mermaid = "mermaid"
    ascii = "ascii"
    png = "png"
    svg = "svg"
    json = "json"
    """The traffic figures (with --from-audit only)."""


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _settings(*, log_stream: IO[str] | None = None, hash_ids: bool = False) -> Settings:
    """Settings, then logging: to stderr (stdout carries answers and reports) unless
    `log_stream` says otherwise, and to the rotating log file. `hash_ids` (`serve`): ids
    in log lines become their HMAC under the configured pepper."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    from agent.observability.logs import configure_logging

    hasher = None
    if hash_ids:
        from agent.wiring import configured_hasher

        hasher = configured_hasher(settings)
    log = settings.log
    configure_logging(settings.log_level, stream=log_stream,
                      file=log.file if log.file_enabled else None,
                      max_bytes=log.max_bytes, backups=log.backups, hasher=hasher)
    return settings


@app.command()
def ingest(path: Annotated[Path, typer.Argument(help="Folder (or file) of documents.")],
           rebuild: Annotated[bool, typer.Option("--rebuild",
                                                 help="Re-embed everything.")] = False) -> None:
    """Index Markdown, text, HTML and PDF documents; only changed ones are re-embedded."""
    from agent.assistant import build_embedder
    from knowledge.embeddings import EmbeddingError
    from knowledge.index import KnowledgeIndexError
    from knowledge.ingest import NoDocumentsError
    from knowledge.ingest import ingest as run_ingest

    settings = _settings()
    embedder = build_embedder(settings)
    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("embedding", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        try:
            report = run_ingest(path, settings.index_path, embedder,
                                provider=settings.embeddings.provider,
                                chunk_size=settings.retrieval.chunk_size,
                                chunk_overlap=settings.retrieval.chunk_overlap,
                                rebuild=rebuild, progress=on_progress)
        except NoDocumentsError as exc:
            _fail(str(exc), EXIT_CONFIG)
        except EmbeddingError as exc:
            _fail(str(exc), EXIT_CONFIG)
        except KnowledgeIndexError as exc:
            _fail(str(exc), EXIT_INDEX)
    if report.rebuilt_reason:
        err.print(f"[yellow]warning:[/] the previous index was unusable and was rebuilt "
                  f"({report.rebuilt_reason})", highlight=False)
    for problem in report.errors:
        err.print(f"[yellow]skipped:[/] {problem}", highlight=False)
    typer.echo(f"Ingested {path}: {report.summary()}. Index: {settings.index_path}")
    from agent.guard_cli import report_flagged_chunks

    report_flagged_chunks(settings.index_path, err)
    if report.errors:
        raise typer.Exit(EXIT_DOCUMENT_ERRORS)


def _assistant(settings: Settings) -> Assistant:
    from agent.wiring import build_assistant
    from knowledge.embeddings import EmbeddingError
    from knowledge.index import KnowledgeIndexError

    assistant = build_assistant(settings)
    try:
        assistant.open_index()
    except KnowledgeIndexError as exc:
        _fail(f"{exc}", EXIT_INDEX)
    except EmbeddingError as exc:
        _fail(str(exc), EXIT_CONFIG)
    return assistant


@app.command()
def ask(question: Annotated[str, typer.Argument(help="The question to answer.")]) -> None:
    """Answer one question and print the reply with its sources."""
    assistant = _assistant(_settings())
    typer.echo(asyncio.run(assistant.ask(question)).reply)


@app.command()
def chat() -> None:
    """Chat in the terminal; with piped input, answer one question per line."""
    assistant = _assistant(_settings())
    interactive = sys.stdin.isatty()
    asyncio.run(_chat_loop(assistant, interactive))


async def _chat_loop(assistant: Assistant, interactive: bool) -> None:
    out = Console()
    if interactive:
        out.print("[bold]signal-rag[/] — ask about the documents; Ctrl-D or 'exit' to quit.")
    while True:
        try:
            line = out.input("[bold cyan]you>[/] ") if interactive else sys.stdin.readline()
        except (EOFError, KeyboardInterrupt):
            break
        if not interactive and line == "":
            break
        question = line.strip()
        if interactive and question.lower() in {"exit", "quit"}:
            break
        if not question:
            continue
        answer = await assistant.ask(question)
        if interactive:
            out.print("[bold green]bot>[/] ", end="")
            out.print(f"{answer.reply}\n", highlight=False, markup=False)
        else:
            sys.stdout.write(answer.reply + "\n\n")
            sys.stdout.flush()


@app.command()
def serve() -> None:
    """Run the Signal bot against the configured signal-cli daemon until SIGTERM."""
    from agent.serve import serve as run_service
    from agent.wiring import access_policy

    settings = _settings(log_stream=sys.stdout, hash_ids=True)  # a service logs to stdout
    try:
        access_policy(settings)  # fail before opening anything
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    from knowledge.embeddings import EmbeddingError

    try:
        asyncio.run(run_service(settings))
    except (ConfigError, EmbeddingError) as exc:  # EmbeddingError: no usable local model
        _fail(str(exc), EXIT_CONFIG)


@app.command()
def health(url: Annotated[str | None, typer.Option(
        help="Base URL of the health server (default: from SIGNAL_RAG_HEALTH__ADDR).")] = None,
           timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 5.0) -> None:
    """Ask a running bot whether it is ready; exit 0 if so, 1 if not (container checks).

    Reads only SIGNAL_RAG_HEALTH__ADDR, not the whole configuration: a container's health
    check runs outside the entrypoint, so it does not see the secrets that `*_FILE`
    variables hand to the bot, and a setting it cannot validate must not mark a running,
    ready bot unhealthy. A bot whose configuration is invalid never starts, so it is
    reported as unreachable."""
    import os

    import httpx
    from pydantic import ValidationError

    from agent.settings import ENV_PREFIX, HealthSettings

    if url is None:
        variable = f"{ENV_PREFIX}HEALTH__ADDR"
        try:
            addr = HealthSettings(**({"addr": os.environ[variable]}
                                     if os.environ.get(variable) else {})).addr
        except ValidationError as exc:
            _fail(f"{variable}: {exc.errors()[0]['msg']}", EXIT_CONFIG)
        host, _, port = addr.rpartition(":")
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '[::]') else host}:{port}"  # noqa: S104
    try:
        response = httpx.get(f"{url.rstrip('/')}/readyz", timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        _fail(f"health server at {url} unreachable ({type(exc).__name__})", EXIT_NOT_READY)
    typer.echo(response.text)
    if response.status_code != 200:
        raise typer.Exit(EXIT_NOT_READY)


@app.command("graph")
def graph_command(
        fmt: Annotated[GraphFormat, typer.Option("--format", "-f")] = GraphFormat.mermaid,
        output: Annotated[Path | None, typer.Option("--output", "-o",
                                                    help="Write to a file.")] = None,
        from_audit: Annotated[Path | None, typer.Option(
            "--from-audit", metavar="FILE",
            help="Draw the traffic of an audit trail: runs per edge, fallback reasons, "
                 "p50/p95 per node.")] = None,
        since: Annotated[str | None, typer.Option(
            help="With --from-audit: only runs of the last 30m, 24h, 7d (default: all).")
                         ] = None,
        run: Annotated[str | None, typer.Option(
            "--run", metavar="ID",
            help="With --from-audit: highlight one run's path and time per node (its "
                 "run_id, which is also its trace id).")] = None) -> None:
    """Draw the LangGraph state machine offline (Mermaid, ASCII, PNG or SVG); with
    --from-audit, the traffic on it."""
    from graph.builder import build_graph
    from graph.drawing import draw
    from knowledge.extras import MissingExtraError

    if from_audit is None and (since is not None or run is not None
                               or fmt is GraphFormat.json):
        _fail("--since, --run and --format json need --from-audit FILE", EXIT_CONFIG)
    compiled = build_graph()
    try:
        if from_audit is None:
            drawing = draw(compiled, cast("Format", fmt.value))
        else:
            drawing = _traffic_drawing(compiled, fmt, from_audit, since, run)
    except MissingExtraError as exc:
        _fail(str(exc), EXIT_CONFIG)
    data = drawing.encode() if isinstance(drawing, str) else drawing
    if output is not None:
        output.write_bytes(data)
    elif isinstance(drawing, str):
        typer.echo(drawing.rstrip("\n"))
    elif sys.stdout.isatty():
        _fail(f"{fmt.value} is binary: use --output FILE", EXIT_CONFIG)
    else:
        sys.stdout.buffer.write(data)


def _traffic_drawing(compiled: object, fmt: GraphFormat, path: Path, since: str | None,
                     run: str | None) -> str | bytes:
    """The graph with the audit trail's traffic on it (graph/traffic.py)."""
    import json
    import time

    from agent.audit_cli import ReadCounts, parse_since, read_events
    from graph import traffic
    from graph.drawing import draw

    if not path.is_file():
        _fail(f"no audit log at {path}", EXIT_CONFIG)
    try:
        cutoff = time.time() - parse_since(since) if since is not None else None
        wanted = traffic.normalise_run_id(run) if run is not None else None
    except ValueError as exc:
        _fail(str(exc), EXIT_CONFIG)
    shape = traffic.Shape.of(compiled)
    counts = ReadCounts()
    try:
        window = traffic.collect(read_events(path, counts), shape, since=cutoff)
        found = None
        if wanted is not None:
            found, copies = traffic.find_run(read_events(path, ReadCounts()), shape, wanted)
            if found is None:
                _fail(f"no run {wanted} in {path}", EXIT_CONFIG)
            if copies > 1:
                err.print(f"{copies} runs carry id {wanted} (a retried message): showing the "
                          "last", highlight=False)
    except OSError as exc:
        _fail(f"cannot read {path}: {type(exc).__name__}", EXIT_CONFIG)
    if counts.malformed or window.off_graph:
        err.print(f"skipped {counts.malformed} malformed lines and {window.off_graph} runs "
                  "not on this graph", highlight=False)
    if fmt is GraphFormat.json:
        figures = window.as_dict()
        if found is not None:
            figures["run"] = {"run_id": found.run_id, "route": found.route,
                              "path": list(found.nodes), "timings_ms": dict(found.timings_ms)}
        return json.dumps(figures, indent=2) + "\n"
    if fmt is GraphFormat.ascii:
        return str(draw(compiled, "ascii")).rstrip("\n") + "\n\n" + \
            traffic.table(window, run=found) + "\n"
    return draw(compiled, cast("Format", fmt.value),
                traffic.overlay(window, run=found, window=since or ""))


@index_app.command("verify")
def index_verify() -> None:
    """Check the index manifest and the sha256 of every index file."""
    from knowledge.index import KnowledgeIndexError, verify_index

    settings = _settings()
    try:
        manifest = verify_index(settings.index_path)
    except KnowledgeIndexError as exc:
        _fail(str(exc), EXIT_INDEX)
    configured = (settings.embeddings.provider, settings.embeddings.model)
    built = (manifest.embedding.provider, manifest.embedding.model)
    if configured != built:
        _fail(f"index at {settings.index_path} was built with {built[0]} {built[1]!r} but "
              f"{configured[0]} {configured[1]!r} is configured", EXIT_INDEX)
    typer.echo(f"Index OK: {settings.index_path} — {len(manifest.documents)} documents, "
               f"{manifest.chunk_count} chunks, {manifest.embedding.model} "
               f"({manifest.embedding.dimension} dimensions), {len(manifest.files)} files "
               "verified")


def command_path(argv: list[str]) -> str:
    """The invoked command's name (`index verify`) from the arguments, keeping only words
    that are command names: the other arguments may be values (a question, a path)."""
    import typer.main

    words = ["signal-rag"]
    group = typer.main.get_command(app)
    for arg in argv:
        commands = getattr(group, "commands", None)
        if not isinstance(commands, dict) or arg not in commands:
            break
        words.append(arg)
        group = commands[arg]
    return " ".join(words)


def main() -> None:
    """The entry point: anything unexpected becomes one line and exit code 4, never a
    traceback with values in it (SIGNAL_RAG_DEBUG=1 shows a redacted one)."""
    from agent.observability.crash import install_thread_hook, report_crash

    command = command_path(sys.argv[1:])
    install_thread_hook(command)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        sys.exit(report_crash(exc, command))


if __name__ == "__main__":
    main()
