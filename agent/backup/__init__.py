"""`signal-rag backup create|verify|restore`: the bot's state as one checksummed archive (DEP-4).

Why our own format: the state is several SQLite databases in WAL mode (a file copy of a
live one can be torn or miss the WAL), an index that ingest swaps by renaming directories,
an append-only audit file and, optionally, signal-cli's account data. A backup must be
taken while the bot runs, and a restore must be refused unless every byte checks out.

The archive is a `.tar.gz` (mode 0600: it may hold signal-cli's identity keys) whose first
member is `manifest.json`: format and version, creation time, app version, whether secrets
are included, and the size and sha256 of every file. Members live under five roots:

    data/             the data dir: SQLite copies (online backup API), audit.jsonl, ...
    index/            the live index, checked against its own manifest after copying
    index.last-good/  the previous verified index, when there is one
    signal-cli/       signal-cli's data dir, when `--signal-cli-dir` is given
    config/           the effective settings; secret values only with --include-secrets

Restore reads the whole archive and checks every name, type, size and sha256 against the
manifest before it writes anything; it extracts into a staging directory inside each
target (so only the target, not its parent, must be writable), checks the staged files
again, and only then swaps the target's entries for the staged ones, keeping the previous
ones aside (`<dir>/.before-restore-<time>/`). Exit codes: 0 ok, 1 an I/O error (nothing
changed) or an index that could not be copied, 2 usage (refused: existing file, running
bot, non-empty target, a Python without tarfile filters), 3 the archive is damaged,
truncated, hostile or of an unknown format.

The package imports only typer and the standard library at import time. Its modules:
format.py (names, manifest, reading and verifying an archive), create.py, restore.py,
config.py (the settings snapshot and the pepper checks) and cli.py (the commands).
"""

from agent.backup.cli import app
from agent.backup.config import config_snapshot
from agent.backup.create import INDEX_COPY_ATTEMPTS, CreateReport, copy_index, create_backup
from agent.backup.format import (
    CANARY_FILE,
    FORMAT,
    FORMAT_VERSION,
    PEPPER_FILE,
    ROOTS,
    BackupError,
    BackupManifest,
    DamagedBackupError,
    UsageError,
    check_name,
    parse_manifest,
    pepper_check,
    verify_backup,
)
from agent.backup.restore import SPACE_MARGIN, RestoreReport, restore_backup

__all__ = [
    "CANARY_FILE", "FORMAT", "FORMAT_VERSION", "INDEX_COPY_ATTEMPTS", "PEPPER_FILE", "ROOTS",
    "SPACE_MARGIN", "BackupError", "BackupManifest", "CreateReport", "DamagedBackupError",
    "RestoreReport", "UsageError", "app", "check_name", "config_snapshot", "copy_index",
    "create_backup", "parse_manifest", "pepper_check", "restore_backup", "verify_backup",
]
