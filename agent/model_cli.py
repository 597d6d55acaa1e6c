"""`signal-rag model export|verify`: the local embedding model's ONNX files.

This module imports only typer and rich; the export (torch, the `export` extra) and the
check load inside each command. Exit codes as the CLI's: 2 for a missing extra, a model
that cannot be exported or a missing or damaged model directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

EXIT_CONFIG = 2
DEFAULT_MODEL = "all-MiniLM-L6-v2"  # knowledge.embeddings.DEFAULT_LOCAL_MODEL (not imported)

app = typer.Typer(no_args_is_help=True,
                  help="Export or check the local embedding model (ONNX).")
err = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_CONFIG)


@app.command("export")
def export_command(
        out: Annotated[Path | None, typer.Option(
            "--out", help="Directory to write (replaced whole); default: where the local "
                          "embedder looks for this model, inside the Python environment.")
                       ] = None,
        model: Annotated[str, typer.Option(
            "--model", help="all-MiniLM-L6-v2 (the packaged weights), a folder of "
                            "sentence-transformers files, or a name already in the local "
                            "Hugging Face cache; never downloaded.")] = DEFAULT_MODEL,
        int8: Annotated[bool, typer.Option(
            "--int8", help="Quantise the weights to int8 (a model of its own name, "
                           "'<model>-int8').")] = False) -> None:
    """Export a sentence-transformers model to ONNX with its tokenizer and a sha256
    manifest (needs the 'export' extra: torch)."""
    from knowledge.embeddings import EmbeddingError, default_model_dir
    from knowledge.export import export_model, exported_name
    from knowledge.extras import MissingExtraError

    target = out if out is not None else default_model_dir(exported_name(model, int8=int8))
    try:
        manifest = export_model(target, model, int8=int8)
    except (MissingExtraError, EmbeddingError, OSError) as exc:
        _fail(str(exc))
    typer.echo(f"Exported {manifest.model} ({manifest.dimension} dimensions, "
               f"{manifest.pooling} pooling, {manifest.max_seq_length} tokens) to {target}")


@app.command("verify")
def verify_command(
        model_dir: Annotated[Path | None, typer.Option(
            "--dir", help="Model directory (default: SIGNAL_RAG_EMBEDDINGS__MODEL_DIR, else "
                          "the default location for SIGNAL_RAG_EMBEDDINGS__MODEL).")] = None,
) -> None:
    """Check the model directory's manifest and the sha256 of every file, then load it."""
    from agent.settings import ConfigError, load_settings
    from knowledge.embeddings import EmbeddingError, LocalEmbedder, default_model_dir

    if model_dir is None:
        try:
            cfg = load_settings().embeddings
        except ConfigError as exc:
            _fail(str(exc))
        model_dir = cfg.model_dir or default_model_dir(cfg.model)
    try:
        embedder = LocalEmbedder(_model_of(model_dir), model_dir=model_dir)
        dimension = embedder.dimension
    except EmbeddingError as exc:
        _fail(str(exc))
    typer.echo(f"Model OK: {embedder.model_name} ({dimension} dimensions) in {model_dir}")


def _model_of(model_dir: Path) -> str:
    """The name the manifest records (it is checked again when the model loads)."""
    import json

    from knowledge.embeddings import MODEL_MANIFEST

    try:
        return str(json.loads((model_dir / MODEL_MANIFEST).read_text(encoding="utf-8"))["model"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""  # the load reports what is wrong with the directory
