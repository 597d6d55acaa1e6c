"""`signal-rag eval feedback`: the stored reactions (EV-4), summed up or exported.

Attached to the `eval` command group by agent/cli.py (evals/ does not import the bot).
Imports only typer and rich; the store and index load inside the command.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

EXIT_CONFIG = 2
err = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_CONFIG)


def _similarity(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def feedback_command(
        *,
        export: Annotated[Path | None, typer.Option(
            "--export", help="Write the kept reactions as a BEIR dataset to this new folder "
                             "(needs SIGNAL_RAG_FEEDBACK__KEEP_TEXT=true while they came).")]
        = None,
        all_passages: Annotated[bool, typer.Option(
            "--all-passages", help="With --export: every passage of the index in "
                                   "corpus.jsonl, not only the cited ones.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
        = False,
) -> None:
    """Reactions on answers per route and cited source: 👍 helpful, 👎 not helpful, and the
    mean top similarity of each."""
    from agent.feedback import FeedbackExportError, export_beir, index_chunks, summarize
    from agent.settings import ConfigError, load_settings
    from agent.users import UserDirectory
    from knowledge.index import KnowledgeIndexError

    try:
        settings = load_settings()
    except ConfigError as exc:
        _fail(str(exc))
    path = settings.data_dir / "users.sqlite3"
    rows = []
    if path.is_file():  # never create the bot's state file from a report
        try:
            users = UserDirectory(path, set_aside=False)  # a report never moves it
        except sqlite3.DatabaseError as exc:
            _fail(f"{path} cannot be read ({exc}); restore it from a backup (docs/backup.md)")
        try:
            rows = users.feedback_rows()
        finally:
            users.close()
    if export is not None:
        try:
            chunks = index_chunks(settings.index_path) if rows else {}
            result = export_beir(rows, chunks, export, all_passages=all_passages)
        except KnowledgeIndexError as exc:
            _fail(f"the index at {settings.index_path} cannot be read: {exc}")
        except (FeedbackExportError, OSError) as exc:
            _fail(str(exc))
        typer.echo(f"Wrote {result.queries} queries ({result.scored} with a helpful "
                   f"judgement, which eval retrieval scores), {result.documents} passages "
                   f"to {export}"
                   + (f"; {result.missing_chunks} cited passages are no longer in the index "
                      "and were left out" if result.missing_chunks else ""))
        return
    summary = summarize(rows)
    if as_json:
        typer.echo(json.dumps(summary.to_json(), indent=2, ensure_ascii=False))
        return
    if not summary.reactions:
        typer.echo("No reactions stored yet.")
        return
    console = Console()
    for title, tallies in (("route", summary.routes), ("cited source", summary.sources)):
        table = Table(title, "helpful", "not helpful", "top sim. helpful",
                      "top sim. not helpful", title=f"reactions by {title}")
        for name, tally in sorted(tallies.items()):
            table.add_row(escape(name), str(tally.helpful), str(tally.not_helpful),
                          _similarity(tally.mean_similarity("helpful")),
                          _similarity(tally.mean_similarity("not_helpful")))
        console.print(table)
    plural = "" if summary.reactions == 1 else "s"
    typer.echo(f"{summary.reactions} reaction{plural}, {summary.kept_questions} with their "
               "question kept.")
