"""The `signal-rag backup create|verify|restore` commands: settings in, one line per result
out, exit codes from the `BackupError` raised (never a traceback)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, NoReturn

import typer

from agent.backup.config import config_snapshot, configured_pepper, pepper_notes, pepper_source
from agent.backup.create import create_backup
from agent.backup.format import (
    CONFIG,
    RESTORED_CONFIG,
    ROOTS,
    SIGNAL_CLI_ENV,
    BackupError,
    UsageError,
    io_message,
    is_inside,
    verify_backup,
)
from agent.backup.restore import restore_backup

if TYPE_CHECKING:
    from agent.settings import Settings


app = typer.Typer(pretty_exceptions_show_locals=False, no_args_is_help=True,
                  help="Back up and restore the bot's state (data dir, index, signal-cli "
                       "data, settings).")
SignalCliOption = Annotated[Path | None, typer.Option(
    "--signal-cli-dir", envvar=SIGNAL_CLI_ENV, show_envvar=True,
    help="signal-cli's data directory (holds the account's identity keys).")]
DataDirOption = Annotated[Path | None, typer.Option(
    "--data-dir", help="Instead of SIGNAL_RAG_DATA_DIR.")]


def _fail(exc: BackupError | OSError) -> NoReturn:
    if isinstance(exc, OSError):  # one line, never a traceback
        exc = BackupError(io_message(exc, lambda _path: False))
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(exc.code)


def _load(data_dir: Path | None) -> Settings:
    from agent.settings import ConfigError, load_settings

    try:
        return load_settings(**({"data_dir": data_dir} if data_dir is not None else {}))
    except ConfigError as exc:
        _fail(UsageError(str(exc)))


def _out(stream: IO[str], line: str) -> None:
    stream.write(line + "\n")
    stream.flush()


@app.command("create")
def create_command(
        path: Annotated[Path, typer.Argument(help="The archive to write (.tar.gz); must not "
                                                  "exist.")],
        signal_cli_dir: SignalCliOption = None, data_dir: DataDirOption = None,
        include_secrets: Annotated[bool, typer.Option(
            "--include-secrets",
            help="Also store the audit pepper, the prompt canary, secret settings, the "
                 "access lists and account number, and credentials in URLs.")] = False,
        allow_missing_index: Annotated[bool, typer.Option(
            "--allow-missing-index",
            help="Write the backup even if the index (or its last-good copy) cannot be "
                 "copied; without it that fails with exit 1.")] = False) -> None:
    """Write a consistent backup while the bot runs (SQLite online backup, sha256 manifest)."""
    settings = _load(data_dir)
    try:
        report = create_backup(
            path, data_dir=settings.data_dir, index_dir=settings.index_path,
            signal_cli_dir=signal_cli_dir,
            config=config_snapshot(settings, os.environ, include_secrets),
            include_secrets=include_secrets, pepper=configured_pepper(settings),
            pepper_source=pepper_source(settings, settings.data_dir),
            allow_missing_index=allow_missing_index)
    except (BackupError, OSError) as exc:
        _fail(exc)
    for warning in report.warnings:
        _out(sys.stderr, f"warning: {warning}")
    manifest = report.manifest
    roots = manifest.roots()
    parts = [root for root in ROOTS if root in roots]
    _out(sys.stdout, f"Backup written: {path} — {len(manifest.files)} files, "
         f"{manifest.total_size()} bytes ({', '.join(parts)}); secrets "
         f"{'INCLUDED' if include_secrets else 'not included'}")
    if is_inside(path.parent, settings.data_dir):
        _out(sys.stderr, "note: the archive is inside the data directory: copy it elsewhere, "
             "or it is lost with the data")
    if signal_cli_dir is None:
        _out(sys.stderr, "note: signal-cli data not included (--signal-cli-dir)")
    else:
        _out(sys.stderr, "note: the archive holds signal-cli's identity keys: keep it "
             "private")


@app.command("verify")
def verify_command(path: Annotated[Path, typer.Argument(help="The archive to check.")]) -> None:
    """Check every file of a backup against its manifest's sha256; writes nothing."""
    try:
        manifest = verify_backup(path)
    except (BackupError, OSError) as exc:
        _fail(exc)
    _out(sys.stdout, f"Backup OK: {path} — format {manifest.format_version}, made "
         f"{manifest.created_at} by signal-rag {manifest.app_version}, "
         f"{len(manifest.files)} files verified, secrets "
         f"{'included' if manifest.secrets_included else 'not included'}")


@app.command("restore")
def restore_command(
        path: Annotated[Path, typer.Argument(help="The archive to restore.")],
        signal_cli_dir: SignalCliOption = None, data_dir: DataDirOption = None,
        force: Annotated[bool, typer.Option(
            "--force", help="Restore over a non-empty directory, keeping its state aside.")]
        = False) -> None:
    """Verify a backup, then restore it into the data dir (the bot must be stopped)."""
    settings = _load(data_dir)
    try:
        report = restore_backup(path, data_dir=settings.data_dir,
                                index_dir=settings.index_path,
                                signal_cli_dir=signal_cli_dir, force=force)
    except (BackupError, OSError) as exc:
        _fail(exc)
    manifest = report.manifest
    _out(sys.stdout, f"Verified {path}: {len(manifest.files)} files, made "
         f"{manifest.created_at}")
    for label, where, aside in report.restored:
        kept = f" (previous state kept at {aside})" if aside else ""
        _out(sys.stdout, f"Restored {label} to {where}{kept}")
    if CONFIG in manifest.roots():
        _out(sys.stdout, f"The backed-up settings are in "
             f"{settings.data_dir / RESTORED_CONFIG}: configure the bot from them")
    for note in [*report.notes, *pepper_notes(manifest, settings, settings.data_dir)]:
        _out(sys.stderr, note if note.startswith(("warning", "audit")) else f"note: {note}")
