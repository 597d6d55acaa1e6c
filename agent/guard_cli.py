"""`signal-rag guard ...` and the threat scan after `ingest` (SEC-2).

This module imports only typer and rich, so `signal-rag --help` stays fast; the detector and
its weights load inside the commands. Nothing here prints or logs a scanned text: an input
line or a chunk may be an attack or private data, so errors name line numbers and sources.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

EXIT_USAGE, EXIT_GUARD = 2, 4

app = typer.Typer(pretty_exceptions_show_locals=False, no_args_is_help=True,
                  help="Threat guard: scan prompt sets.")
err = Console(stderr=True)


@app.command("scan")
def scan(
        file: Annotated[Path, typer.Argument(help="JSON lines {\"text\": ..., \"label\": 0|1}; "
                                                  "'-' reads standard input.")],
        out: Annotated[Path | None, typer.Option("--out", "-o",
                                                 help="Write verdicts here, not stdout.")] = None,
        passages: Annotated[bool, typer.Option(
            "--passages", help="Score as retrieved passages (higher learned threshold).")] = False,
) -> None:
    """One JSON verdict per input line (blocked, score, categories, reason).

    With labels, recall on label 1, false-positive rate on label 0 and balanced accuracy go
    to stderr. A malformed line stops the scan before any output (exit 2), naming its number.
    """
    from guards.learned import DetectorUnavailableError
    from guards.scan import (
        ScanInputError,
        describe,
        json_lines,
        metrics,
        parse_lines,
        verdict_row,
    )
    from guards.threats import detect

    try:
        raw = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"[bold red]error:[/] cannot read {file}: {type(exc).__name__}",
                  highlight=False)
        raise typer.Exit(EXIT_USAGE) from exc
    try:
        items = parse_lines(json_lines(raw))
    except ScanInputError as exc:
        err.print(f"[bold red]error:[/] {file}: {exc}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from exc
    source: Literal["message", "passage"] = "passage" if passages else "message"
    try:
        verdicts = [detect(item.text, source) for item in items]
    except DetectorUnavailableError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_GUARD) from exc
    lines = "".join(json.dumps(verdict_row(v)) + "\n" for v in verdicts)
    if out is not None:
        out.write_text(lines, encoding="utf-8")
    else:
        sys.stdout.write(lines)
        sys.stdout.flush()
    labels = [item.label for item in items]
    if any(label is not None for label in labels):
        err.print(describe(metrics(labels, [v.blocked for v in verdicts])), highlight=False,
                  soft_wrap=True)


def report_flagged_chunks(index_path: Path, console: Console) -> int:
    """Scan every chunk of the index as a passage and report how many are flagged, by source.

    Reported, not removed: retrieval drops flagged passages at query time anyway, and the
    operator decides whether the document belongs in the collection. Returns the count.
    """
    from guards.learned import DetectorUnavailableError
    from guards.threats import scan_chunks
    from knowledge.index import KnowledgeIndexError, open_index

    try:
        chunks = open_index(index_path).chunks
    except KnowledgeIndexError as exc:
        console.print(f"[yellow]warning:[/] threat scan skipped: {exc}", highlight=False)
        return 0
    try:
        verdicts = scan_chunks(chunk.text for chunk in chunks)
    except DetectorUnavailableError as exc:
        console.print(f"[yellow]warning:[/] threat scan unavailable: {exc}", highlight=False)
        return 0
    flagged: dict[str, int] = {}
    for chunk, verdict in zip(chunks, verdicts, strict=True):
        if verdict.blocked:
            flagged[chunk.source] = flagged.get(chunk.source, 0) + 1
    if flagged:
        count = sum(flagged.values())
        console.print(f"[yellow]warning:[/] {count} of {len(chunks)} chunks look like prompt "
                      "injection and will not be used in answers:", highlight=False)
        for source_name, n in sorted(flagged.items()):
            console.print(f"  {source_name}: {n} chunk(s)", highlight=False, markup=False)
    return sum(flagged.values())
