"""`backup create`: copy the live state into a staging directory (SQLite online backup,
complete audit lines, the index checked against its own manifest), then write the archive
with its manifest first, mode 0600."""

from __future__ import annotations

import errno
import io
import os
import shutil
import sqlite3
import stat
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.backup.format import (
    CHUNK,
    CONFIG,
    DATA,
    EXCLUDED_DATA_DIRS,
    INDEX,
    LAST_GOOD,
    LOST_FOUND,
    MANIFEST_NAME,
    SECRET_DATA_FILES,
    SIGNAL_CLI,
    SQLITE_MAGIC,
    SQLITE_SIDE_FILES,
    BackupError,
    BackupManifest,
    FileEntry,
    UsageError,
    app_version,
    fsync_dir,
    io_message,
    is_backup_archive,
    is_inside,
    pepper_check,
    sha256_of,
    tarinfo,
)

INDEX_COPY_ATTEMPTS = 5
INDEX_RETRY_DELAY = 0.2
"""Seconds between copies of an index caught in ingest's swap (live -> last-good, then
staging -> live): the directory is briefly missing."""


@dataclass(slots=True)
class CreateReport:
    manifest: BackupManifest
    warnings: list[str] = field(default_factory=list)


def is_sqlite(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC


def backup_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a live database (committed WAL content included) through the
    online backup API, in one step so the copy is one snapshot; checked with quick_check."""
    uri = f"{source.resolve().as_uri()}?mode=ro"
    src = sqlite3.connect(uri, uri=True, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            verdict = dst.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            dst.close()
    finally:
        src.close()
    if verdict != "ok":
        raise BackupError(f"the copy of {source.name} fails SQLite's quick_check: {verdict}")


def copy_complete_lines(source: Path, target: Path) -> None:
    """An append-only JSON-lines file up to its last newline: never a half-written line."""
    with source.open("rb") as src, target.open("wb") as dst:
        data = b""
        for block in iter(lambda: src.read(CHUNK), b""):
            data += block
            cut = data.rfind(b"\n") + 1
            dst.write(data[:cut])
            data = data[cut:]


def _data_excluded(rel: Path, include_secrets: bool) -> bool:
    name = rel.name
    if len(rel.parts) == 1 and (name in EXCLUDED_DATA_DIRS or name in {INDEX, LAST_GOOD,
                                                                       LOST_FOUND}):
        return True
    if len(rel.parts) == 1 and name in SECRET_DATA_FILES and not include_secrets:
        return True
    if name.endswith(SQLITE_SIDE_FILES) or ".damaged-" in name:  # index quarantine
        return True
    return name.startswith(".") and (  # our own staging, partial and kept-aside entries
        name.endswith(".partial")
        or any(part in name for part in (".restore-", ".staging-", ".before-restore-")))


def _walk(root: Path, skip: Callable[[Path], bool],
          warnings: list[str]) -> tuple[list[Path], list[Path]]:
    """Regular files and directories under `root` (relative), symlinks and specials left
    out with a warning: an archive of ours never holds them."""
    files: list[Path] = []
    dirs: list[Path] = []
    for current, dirnames, filenames in os.walk(root):
        base = Path(current)
        for name in sorted(dirnames):
            rel = (base / name).relative_to(root)
            if skip(rel):
                dirnames.remove(name)
            elif (base / name).is_symlink():
                warnings.append(f"skipped symlink {root.name}/{rel}")
                dirnames.remove(name)
            else:
                dirs.append(rel)
        for name in sorted(filenames):
            rel = (base / name).relative_to(root)
            if skip(rel):
                continue
            if not stat.S_ISREG((base / name).lstat().st_mode):
                warnings.append(f"skipped {root.name}/{rel} (not a regular file)")
                continue
            files.append(rel)
    return files, dirs


MISSING = "missing"


def _swapping(live: Path) -> bool:
    """Whether ingest is writing or swapping `live` (its staging directory exists)."""
    return any(live.parent.glob(f".{live.name}.staging-*"))


def copy_index(source: Path, target: Path, *, live: Path | None = None,
               attempts: int = INDEX_COPY_ATTEMPTS,
               copy: Callable[[Path, Path], object] | None = None,
               sleep: Callable[[float], None] | None = None) -> str | None:
    """Copy an index directory and check the copy against its own manifest. Ingest swaps
    directories by renaming (live -> last-good, staging -> live), so a copy may mix two
    versions, or find the directory briefly missing: then copy again, with a short
    backoff. `live` is the live index of the pair (default `source`). Returns None when
    the copy verifies, MISSING when there is nothing to copy (no swap under way), else
    why it could not be copied."""
    from knowledge.index import KnowledgeIndexError, last_good_path, verify_index

    live = live or source

    def ignore(directory: str, _names: list[str]) -> list[str]:
        return [LOST_FOUND] if Path(directory) == source else []

    copier = copy or (lambda src, dst: shutil.copytree(src, dst, symlinks=True,
                                                       ignore=ignore))
    reason = MISSING
    delay = INDEX_RETRY_DELAY
    for _ in range(attempts):
        if target.exists():
            shutil.rmtree(target)
        if not source.is_dir():
            if not (_swapping(live) or (source == live and last_good_path(live).is_dir())):
                return MISSING
            reason = "missing while ingest was swapping it"
            (sleep or time.sleep)(delay)  # the window between ingest's two renames
            delay *= 2
            continue
        try:
            copier(source, target)
            verify_index(target)
        except (FileNotFoundError, shutil.Error) as exc:  # swapped away while copying
            reason = f"changed while copying ({type(exc).__name__})"
            continue
        except KnowledgeIndexError as exc:
            reason = str(exc)
            continue
        return None
    if target.exists():
        shutil.rmtree(target)
    return reason


def create_backup(output: Path, *, data_dir: Path, index_dir: Path,
                  signal_cli_dir: Path | None = None,
                  config: Mapping[str, bytes] | None = None,
                  include_secrets: bool = False, pepper: bytes | None = None,
                  pepper_source: str | None = None, allow_missing_index: bool = False,
                  clock: Callable[[], float] = time.time,
                  sleep: Callable[[float], None] | None = None) -> CreateReport:
    """Write the archive to `output` (never over an existing file), mode 0600. `pepper` is
    the configured one only: a generated `.audit-pepper` may not be the bot's."""
    _check_create(output, data_dir, index_dir, signal_cli_dir)
    warnings: list[str] = []
    staging: Path | None = None

    def writing(path: Path) -> bool:
        return (path == output or output.is_relative_to(path)
                or (staging is not None and path.is_relative_to(staging))
                or (path.parent == output.parent and path.name.startswith(f".{output.name}.")))

    try:
        output.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.staging-", dir=output.parent))
        manifest = BackupManifest(
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock())),
            app_version=app_version(), secrets_included=include_secrets,
            pepper_check=pepper_check(pepper) if pepper else None,
            pepper_source=pepper_source,
            source={"data_dir": str(data_dir.resolve()), "index_dir": str(index_dir.resolve()),
                    "signal_cli_dir": str(signal_cli_dir.resolve()) if signal_cli_dir
                    else None})
        _stage_data(data_dir, index_dir, staging / DATA, include_secrets, warnings)
        _stage_index(index_dir, staging, warnings, allow_missing_index, sleep)
        if signal_cli_dir is not None:
            _stage_tree(signal_cli_dir, staging / SIGNAL_CLI, warnings,
                        lambda rel: rel == Path(LOST_FOUND)
                        or rel.name.endswith(SQLITE_SIDE_FILES))
        if config:
            (staging / CONFIG).mkdir()
            for filename, content in config.items():
                (staging / CONFIG / filename).write_bytes(content)
        _list_staged(staging, manifest, warnings)
        _write_archive(output, staging, manifest)
    except OSError as exc:
        raise BackupError(f"cannot write the backup: {io_message(exc, writing)}") from exc
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return CreateReport(manifest, warnings)


def _stage_index(index_dir: Path, staging: Path, warnings: list[str],
                 allow_missing_index: bool, sleep: Callable[[float], None] | None) -> None:
    """The live index and its last-good copy. A bot that never ingested has neither (a
    note); one left out for any other reason fails the backup unless allowed, so a
    scheduled backup never silently lacks the index."""
    from knowledge.index import last_good_path

    left_out: list[str] = []
    for name, source in ((INDEX, index_dir), (LAST_GOOD, last_good_path(index_dir))):
        problem = copy_index(source, staging / name, live=index_dir, sleep=sleep)
        if problem == MISSING and name == INDEX:
            warnings.append(f"{INDEX} not included: there is none yet (no ingest has run)")
        elif problem is not None and problem != MISSING:
            left_out.append(f"{name} not included: {problem}")
    if left_out and not allow_missing_index:
        raise BackupError(f"{'; '.join(left_out)} (pass --allow-missing-index to write the "
                          "backup without it; ingest rebuilds an index from the documents)")
    warnings.extend(left_out)


def _check_create(output: Path, data_dir: Path, index_dir: Path,
                  signal_cli_dir: Path | None) -> None:
    if output.exists() or output.is_symlink():
        raise UsageError(f"{output} exists: a backup is never overwritten")
    if not data_dir.is_dir():
        raise UsageError(f"no data directory at {data_dir} (SIGNAL_RAG_DATA_DIR)")
    if signal_cli_dir is not None and not signal_cli_dir.is_dir():
        raise UsageError(f"--signal-cli-dir: {signal_cli_dir} is not a directory")
    from knowledge.index import last_good_path

    for root in (index_dir, last_good_path(index_dir), signal_cli_dir):
        if root is not None and is_inside(output.parent, root):
            raise UsageError(f"write the backup outside {root}: it would back itself up")


def _list_staged(staging: Path, manifest: BackupManifest, warnings: list[str]) -> None:
    """Every staged file's size and sha256 into the manifest (roots are implied)."""
    files, dirs = _walk(staging, lambda _rel: False, warnings)
    manifest.dirs.extend(rel.as_posix() for rel in dirs if len(rel.parts) > 1)
    for rel in files:
        path = staging / rel
        manifest.files.append(FileEntry(rel.as_posix(), path.stat().st_size, sha256_of(path)))


def _stage_data(data_dir: Path, index_dir: Path, target: Path, include_secrets: bool,
                warnings: list[str]) -> None:
    from knowledge.index import last_good_path

    skipped = set()
    for special in (index_dir, last_good_path(index_dir)):  # staged by copy_index
        if is_inside(special, data_dir) and special.resolve() != data_dir.resolve():
            skipped.add(special.resolve().relative_to(data_dir.resolve()))

    def skip(rel: Path) -> bool:
        if rel in skipped or _data_excluded(rel, include_secrets):
            return True
        if rel.name.endswith(".tar.gz") and is_backup_archive(data_dir / rel):
            warnings.append(f"left out {DATA}/{rel} (a backup archive)")
            return True
        return False

    _stage_tree(data_dir, target, warnings, skip)


def _stage_tree(source: Path, target: Path, warnings: list[str],
                skip: Callable[[Path], bool] | None = None) -> None:
    """Copy a directory: SQLite databases through the backup API, JSON-lines files up to
    their last complete line, anything else as it is."""
    files, dirs = _walk(source, skip or (lambda rel: rel.name.endswith(SQLITE_SIDE_FILES)),
                        warnings)
    target.mkdir(mode=0o700)
    for rel in dirs:
        (target / rel).mkdir(mode=0o700, exist_ok=True)
    for rel in files:
        original, copy = source / rel, target / rel
        try:
            if is_sqlite(original):
                backup_sqlite(original, copy)
            elif original.suffix == ".jsonl":
                copy_complete_lines(original, copy)
            else:
                shutil.copyfile(original, copy)
        except FileNotFoundError:  # removed since the walk (a rotated or temporary file)
            warnings.append(f"skipped {target.name}/{rel} (removed while copying)")
        except sqlite3.Error as exc:
            raise BackupError(f"cannot copy the database {target.name}/{rel}: {exc}") from exc


def _write_archive(output: Path, staging: Path, manifest: BackupManifest) -> None:
    """Write beside `output`, then link it into place: an existing file is never replaced
    and a half-written archive never carries the final name."""
    fd, partial_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial",
                                        dir=output.parent)
    partial = Path(partial_name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz",
                                                      format=tarfile.PAX_FORMAT) as tar:
            now = time.time()
            body = manifest.to_json()
            tar.addfile(tarinfo(MANIFEST_NAME, tarfile.REGTYPE, 0o600, now, len(body)),
                        io.BytesIO(body))
            for name in manifest.dirs:
                tar.addfile(tarinfo(name, tarfile.DIRTYPE, 0o700, now))
            for entry in manifest.files:
                with (staging / entry.path).open("rb") as handle:
                    tar.addfile(tarinfo(entry.path, tarfile.REGTYPE, 0o600, now, entry.size),
                                handle)
            raw.flush()
            os.fsync(raw.fileno())
        try:
            os.link(partial, output)
        except FileExistsError:
            raise UsageError(f"{output} exists: a backup is never overwritten") from None
        except OSError as exc:  # a filesystem without hard links
            if exc.errno not in {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP}:
                raise
            if output.exists():
                raise UsageError(f"{output} exists: a backup is never overwritten") from None
            partial.rename(output)
        fsync_dir(output.parent)  # the new name survives a crash
    finally:
        partial.unlink(missing_ok=True)
