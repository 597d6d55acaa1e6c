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

This module imports only typer and the standard library at import time.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import io
import json
import os
import re
import shlex
import shutil
import sqlite3
import stat
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import typer

if TYPE_CHECKING:
    from agent.settings import Settings

FORMAT = "signal-rag-backup"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 16 << 20
DATA, INDEX, LAST_GOOD, SIGNAL_CLI, CONFIG = "data", "index", "index.last-good", "signal-cli", \
    "config"
ROOTS = (DATA, INDEX, LAST_GOOD, SIGNAL_CLI, CONFIG)
PEPPER_FILE = ".audit-pepper"  # agent.audit.PEPPER_FILE (a test keeps them equal)
CANARY_FILE = ".prompt-canary"  # agent.assistant.CANARY_FILE
SECRET_DATA_FILES = frozenset({PEPPER_FILE, CANARY_FILE})
RESTORED_CONFIG = "restored-config"
SIGNAL_CLI_ENV = "SIGNAL_RAG_SIGNAL_CLI_DIR"
EXCLUDED_DATA_DIRS = frozenset({"logs", RESTORED_CONFIG})
"""`logs/` rotates, is written constantly and is rebuilt by a running bot; it stays out."""
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
PEPPER_CHECK_MESSAGE = b"signal-rag backup: audit pepper check v1"
INDEX_COPY_ATTEMPTS = 5
INDEX_RETRY_DELAY = 0.2
"""Seconds between copies of an index caught in ingest's swap (live -> last-good, then
staging -> live): the directory is briefly missing."""
LOST_FOUND = "lost+found"
"""ext4 puts it at the root of a volume (root-owned, 0700): never ours, left where it is."""
MAX_MEMBERS = 200_000
"""More members (or manifest entries) than any bot's state has: a hostile archive."""
SPACE_MARGIN = 100 << 20
"""A restore leaves this much (or 5% of a small filesystem) free on every filesystem."""
MIN_PYTHON_FOR_FILTERS = "3.11.4"
EXIT_IO, EXIT_USAGE, EXIT_DAMAGED = 1, 2, 3
_CHUNK = 1 << 20


class BackupError(Exception):
    """A backup command cannot go on; `code` is the exit code, the message one line."""

    code = EXIT_IO


class UsageError(BackupError):
    code = EXIT_USAGE


class DamagedBackupError(BackupError):
    code = EXIT_DAMAGED


# --- the manifest -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str
    size: int
    sha256: str


@dataclass(slots=True)
class BackupManifest:
    created_at: str
    app_version: str
    secrets_included: bool
    files: list[FileEntry] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    pepper_check: str | None = None
    """HMAC-SHA256(pepper, constant): tells on restore whether the configured pepper is the
    backed-up bot's, without revealing it. Only for a configured pepper."""
    pepper_source: str | None = None
    """"configured" (SIGNAL_RAG_AUDIT__PEPPER), "generated-file" (only the data dir's
    .audit-pepper, as `ask`/`chat` create it: no check recorded) or "none"."""
    source: dict[str, str | None] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def roots(self) -> set[str]:
        return {entry.path.split("/", 1)[0] for entry in self.files} | {
            name.split("/", 1)[0] for name in self.dirs}

    def total_size(self) -> int:
        return sum(entry.size for entry in self.files)

    def to_json(self) -> bytes:
        return json.dumps({
            "format": self.format, "format_version": self.format_version,
            "created_at": self.created_at, "app_version": self.app_version,
            "secrets_included": self.secrets_included, "pepper_check": self.pepper_check,
            "pepper_source": self.pepper_source,
            "source": self.source, "dirs": self.dirs,
            "files": [{"path": e.path, "size": e.size, "sha256": e.sha256}
                      for e in self.files],
        }, indent=2, sort_keys=True).encode()


def check_name(name: str) -> str:
    """A member name we would write: relative, normalised, under a known root, printable."""
    if not name or len(name) > 4096 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise DamagedBackupError(f"unsafe member name {name!r}")
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(p in {"", ".", ".."} for p in parts):
        raise DamagedBackupError(f"unsafe member name {name!r}")
    if parts[0] not in ROOTS:
        raise DamagedBackupError(f"unexpected member {name!r} (not under {', '.join(ROOTS)})")
    return name


def _manifest_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DamagedBackupError(f"{MANIFEST_NAME} is not valid JSON ({exc})") from None
    except RecursionError:  # found by tests/fuzz/test_fuzz_backup.py
        raise DamagedBackupError(f"{MANIFEST_NAME} is not valid JSON (nested too "
                                 "deeply)") from None


def _check_printable(*texts: str) -> None:
    """Header strings are printed by verify and restore: a forged one must not carry
    terminal escapes or line breaks (found by tests/fuzz/test_fuzz_backup.py)."""
    if not all(text.isprintable() for text in texts):
        raise DamagedBackupError(f"{MANIFEST_NAME}: control characters in header fields")


def _is_sha256(value: object) -> bool:
    return (isinstance(value, str) and len(value) == 64
            and all(c in "0123456789abcdef" for c in value))


def _check_count(count: int) -> None:
    if count > MAX_MEMBERS:
        raise DamagedBackupError(f"{MANIFEST_NAME} lists more than {MAX_MEMBERS} entries")


def parse_manifest(raw: bytes) -> BackupManifest:
    """The manifest, checked field by field; DamagedBackupError names what is wrong."""
    data = _manifest_json(raw)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DamagedBackupError(f"not a signal-rag backup ({MANIFEST_NAME} has no "
                                 f"format {FORMAT!r})")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise DamagedBackupError(f"unsupported backup format version {version!r} (this "
                                 f"signal-rag reads version {FORMAT_VERSION})")
    files, dirs = data.get("files"), data.get("dirs")
    if not isinstance(files, list) or not isinstance(dirs, list):
        raise DamagedBackupError(f"{MANIFEST_NAME}: files and dirs must be lists")
    _check_count(len(files) + len(dirs))
    entries: list[FileEntry] = []
    for item in files:
        # A file lies under a top-level folder: one named `data` itself verified, then made
        # restore fail late, after creating the target folders (found by the fuzzer).
        if not (isinstance(item, dict) and isinstance(item.get("path"), str)
                and "/" in item["path"]
                and isinstance(item.get("size"), int) and not isinstance(item["size"], bool)
                and item["size"] >= 0 and _is_sha256(item.get("sha256"))):
            raise DamagedBackupError(f"{MANIFEST_NAME}: malformed file entry")
        entries.append(FileEntry(check_name(item["path"]), item["size"], item["sha256"]))
    if not all(isinstance(d, str) for d in dirs):
        raise DamagedBackupError(f"{MANIFEST_NAME}: malformed dirs")
    dir_names = [check_name(d) for d in dirs]
    paths = [e.path for e in entries]
    if len(set(paths) | set(dir_names)) != len(paths) + len(dir_names):
        raise DamagedBackupError(f"{MANIFEST_NAME}: a path is listed twice")
    file_set = set(paths)
    for name in [*paths, *dir_names]:
        parts = name.split("/")
        if any("/".join(parts[:i]) in file_set for i in range(1, len(parts))):
            raise DamagedBackupError(f"{MANIFEST_NAME}: {name!r} lies under a file")
    secrets = data.get("secrets_included")
    check = data.get("pepper_check")
    source = data.get("source", {})
    pepper_source = data.get("pepper_source")
    if (not isinstance(secrets, bool) or not isinstance(data.get("created_at"), str)
            or not isinstance(data.get("app_version"), str)
            or not (check is None or _is_sha256(check)) or not isinstance(source, dict)
            or not (pepper_source is None or isinstance(pepper_source, str))):
        raise DamagedBackupError(f"{MANIFEST_NAME}: malformed header fields")
    _check_printable(data["created_at"], data["app_version"], pepper_source or "",
                     *map(str, source), *(v for v in source.values() if isinstance(v, str)))
    if not secrets and any(p.startswith(DATA + "/") and p.count("/") == 1
                           and p.split("/")[1] in SECRET_DATA_FILES for p in paths):
        raise DamagedBackupError(f"{MANIFEST_NAME} says no secrets are included but lists "
                                 "a secret file")
    return BackupManifest(created_at=data["created_at"], app_version=data["app_version"],
                          secrets_included=secrets, files=entries, dirs=dir_names,
                          pepper_check=check, pepper_source=pepper_source,
                          source={str(k): v if isinstance(v, str) else None
                                  for k, v in source.items()})


def pepper_check(pepper: bytes) -> str:
    return hmac.new(pepper, PEPPER_CHECK_MESSAGE, hashlib.sha256).hexdigest()


def app_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("signal-rag")
    except PackageNotFoundError:
        return "unknown"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


# --- create -------------------------------------------------------------------------------


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
        for block in iter(lambda: src.read(_CHUNK), b""):
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


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def io_message(exc: OSError, writing: Callable[[Path], bool]) -> str:
    """One line naming the file and whether reading or writing it failed."""
    problem = exc.strerror or str(exc)
    if exc.filename is None:
        return f"{problem} ({type(exc).__name__})"
    path = Path(os.fsdecode(exc.filename))
    return f"{'writing' if writing(path) else 'reading'} {path} failed: {problem}"


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
        if root is not None and _inside(output.parent, root):
            raise UsageError(f"write the backup outside {root}: it would back itself up")


def is_backup_archive(path: Path) -> bool:
    """Whether `path` is one of our archives (skipped when it lies in the data dir, so a
    backup kept there is not copied into the next one)."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            first = tar.next()
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        return False
    return first is not None and first.name == MANIFEST_NAME


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
        if _inside(special, data_dir) and special.resolve() != data_dir.resolve():
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
            tar.addfile(_tarinfo(MANIFEST_NAME, tarfile.REGTYPE, 0o600, now, len(body)),
                        io.BytesIO(body))
            for name in manifest.dirs:
                tar.addfile(_tarinfo(name, tarfile.DIRTYPE, 0o700, now))
            for entry in manifest.files:
                with (staging / entry.path).open("rb") as handle:
                    tar.addfile(_tarinfo(entry.path, tarfile.REGTYPE, 0o600, now, entry.size),
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
        _fsync_dir(output.parent)  # the new name survives a crash
    finally:
        partial.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tarinfo(name: str, kind: bytes, mode: int, mtime: float, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.size = kind, mode, int(mtime), size
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


# --- verify -------------------------------------------------------------------------------


def _open_archive(path: Path) -> tarfile.TarFile:
    if not path.is_file():
        raise UsageError(f"no backup file at {path}")
    if not os.access(path, os.R_OK):
        raise UsageError(f"cannot read {path} (permission denied)")
    try:
        return tarfile.open(path, "r:gz")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DamagedBackupError(f"{path} is not a signal-rag backup (not a readable "
                                 f".tar.gz: {type(exc).__name__})") from None


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Members one by one; a truncated or corrupt stream becomes DamagedBackupError. At
    most MAX_MEMBERS, and `tar.members` (where TarFile keeps every header) stays empty,
    so a hostile archive cannot exhaust memory."""
    try:
        for count in range(MAX_MEMBERS + 2):  # the manifest, then the entries
            member = tar.next()
            tar.members = []  # type: ignore[attr-defined]  # typeshed omits it
            if member is None:
                return
            if count > MAX_MEMBERS:
                break
            yield member
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DamagedBackupError(f"the archive is truncated or damaged "
                                 f"({type(exc).__name__})") from None
    raise DamagedBackupError(f"the archive has more than {MAX_MEMBERS} members")


def _read_manifest(tar: tarfile.TarFile, members: Iterator[tarfile.TarInfo]) -> BackupManifest:
    first = next(members, None)
    if first is None or first.name != MANIFEST_NAME or not first.isreg():
        raise DamagedBackupError(f"not a signal-rag backup: the first member is not "
                                 f"{MANIFEST_NAME}")
    if first.size > MAX_MANIFEST_BYTES:
        raise DamagedBackupError(f"{MANIFEST_NAME} is implausibly large")
    handle = tar.extractfile(first)
    assert handle is not None  # a regular file
    try:
        raw = handle.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DamagedBackupError(f"the archive is truncated or damaged "
                                 f"({type(exc).__name__})") from None
    return parse_manifest(raw)


def _hash_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    handle = tar.extractfile(member)
    assert handle is not None
    digest = hashlib.sha256()
    try:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DamagedBackupError(f"the archive is truncated or damaged "
                                 f"({type(exc).__name__})") from None
    return digest.hexdigest()


def verify_backup(path: Path) -> BackupManifest:
    """Read the whole archive and check it against its manifest; writes nothing. Raises
    DamagedBackupError for anything we would not restore."""
    with _open_archive(path) as tar:
        members = _members(tar)
        manifest = _read_manifest(tar, members)
        expected = {entry.path: entry for entry in manifest.files}
        dirs = set(manifest.dirs)
        seen: set[str] = set()
        for member in members:
            name = check_name(member.name)
            if name in seen:
                raise DamagedBackupError(f"member {name!r} appears twice")
            seen.add(name)
            if member.isdir():
                if name not in dirs and name not in ROOTS:
                    raise DamagedBackupError(f"directory {name!r} is not in the manifest")
                continue
            if not member.isreg():
                raise DamagedBackupError(f"member {name!r} is a link or special file")
            entry = expected.get(name)
            if entry is None:
                raise DamagedBackupError(f"file {name!r} is not in the manifest")
            if member.size != entry.size:
                raise DamagedBackupError(f"file {name!r} has {member.size} bytes, the "
                                         f"manifest says {entry.size}")
            if _hash_member(tar, member) != entry.sha256:
                raise DamagedBackupError(f"file {name!r} does not match its sha256 in the "
                                         "manifest")
        missing = sorted(set(expected) - seen)
        if missing:
            raise DamagedBackupError(f"{len(missing)} file(s) of the manifest are missing "
                                     f"from the archive (first: {missing[0]!r}): truncated?")
    return manifest


# --- restore ------------------------------------------------------------------------------


def held_lock(root: Path) -> Path | None:
    """A file under `root` that another process holds a POSIX or flock lock on, if any.

    Why locks and not the health port: the port may be disabled, moved or taken by another
    bot, while a running `serve` always has its SQLite databases open, and SQLite (like
    signal-cli's Java file lock) holds fcntl locks on them (the WAL `-shm` file) for as
    long as they are open — also across containers sharing the volume. Testing a lock
    takes it for an instant and releases it at once.
    """
    if not root.is_dir():
        return None
    for current, _dirs, names in os.walk(root):
        for name in names:
            path = Path(current) / name
            try:
                if not stat.S_ISREG(path.lstat().st_mode):
                    continue  # never open a device or a FIFO
                fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue  # gone, or read-only to us: then we could not replace it either
            try:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 0, 0)
                    fcntl.lockf(fd, fcntl.LOCK_UN, 0, 0)
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(fd, fcntl.LOCK_UN)
                except OSError as exc:
                    if exc.errno in {errno.EACCES, errno.EAGAIN}:
                        return path
                    raise BackupError(f"cannot tell whether a process holds {path} open: "
                                      f"{exc.strerror} (a file system without locks?)") from exc
            finally:
                os.close(fd)
    return None


@dataclass(slots=True)
class Target:
    """One directory a restore replaces, with its staging directory."""

    label: str
    path: Path
    staging: Path | None = None
    """Always inside the target: only the target itself must be writable, not its parent
    (`/var/lib`), and a mount point (which cannot be renamed) needs no other way."""
    aside: Path | None = None
    undo: Callable[[], None] | None = None


@dataclass(slots=True)
class RestoreReport:
    manifest: BackupManifest
    restored: list[tuple[str, Path, Path | None]] = field(default_factory=list)
    """(what, where, where the previous state was kept)."""
    notes: list[str] = field(default_factory=list)


def _route(manifest: BackupManifest, data_dir: Path, index_dir: Path,
           signal_cli_dir: Path | None) -> tuple[dict[str, Target],
                                                 dict[str, tuple[str, str]], list[str]]:
    """Which target (and subpath inside it) each archive root goes to. Targets are
    resolved: a symlinked data dir is restored where it points, and the link stays."""
    from knowledge.index import last_good_path

    data_dir, index_dir = data_dir.resolve(), index_dir.resolve()
    signal_cli_dir = signal_cli_dir.resolve() if signal_cli_dir is not None else None
    notes: list[str] = []
    targets = {DATA: Target("data", data_dir)}
    routes: dict[str, tuple[str, str]] = {DATA: (DATA, ""), CONFIG: (DATA, RESTORED_CONFIG)}
    if _inside(index_dir, data_dir) and index_dir.resolve() != data_dir.resolve():
        rel = index_dir.resolve().relative_to(data_dir.resolve()).as_posix()
        routes[INDEX] = (DATA, rel)
        routes[LAST_GOOD] = (DATA, last_good_path(Path(rel)).as_posix())
    else:
        targets[INDEX] = Target("index", index_dir)
        targets[LAST_GOOD] = Target("previous index", last_good_path(index_dir))
        routes[INDEX], routes[LAST_GOOD] = (INDEX, ""), (LAST_GOOD, "")
    roots = manifest.roots()
    if SIGNAL_CLI in roots:
        if signal_cli_dir is None:
            notes.append("the backup holds signal-cli data; it was not restored (pass "
                         f"--signal-cli-dir or set {SIGNAL_CLI_ENV})")
        else:
            targets[SIGNAL_CLI] = Target("signal-cli data", signal_cli_dir)
            routes[SIGNAL_CLI] = (SIGNAL_CLI, "")
    used = {routes[root][0] for root in roots if root in routes} | {DATA}
    return {k: v for k, v in targets.items() if k in used}, routes, notes


def _dest(name: str, routes: Mapping[str, tuple[str, str]]) -> tuple[str, str] | None:
    root, _, rest = name.partition("/")
    if root not in routes:
        return None
    target, sub = routes[root]
    inner = "/".join(p for p in (sub, rest) if p)
    if inner.split("/", 1)[0] == LOST_FOUND:  # the volume's, never restored over
        return None
    return target, inner


def _stamp(clock: Callable[[], float]) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))


def restore_backup(archive: Path, *, data_dir: Path, index_dir: Path,
                   signal_cli_dir: Path | None = None, force: bool = False,
                   clock: Callable[[], float] = time.time,
                   extract: Callable[..., None] | None = None) -> RestoreReport:
    """Verify `archive`, then replace the targets' contents through staging directories."""
    check_python()
    manifest = verify_backup(archive)
    targets, routes, notes = _route(manifest, data_dir, index_dir, signal_cli_dir)
    report = RestoreReport(manifest, notes=notes)
    for target in targets.values():
        _check_target(target, force)
    _check_space(manifest, targets, routes)
    stamp = _stamp(clock)
    try:
        for target in targets.values():
            _make_staging(target, stamp)
        _extract(archive, manifest, targets, routes, extract)
        if os.geteuid() == 0:
            for target in targets.values():
                _chown_like_target(target)
        installed: list[Target] = []
        try:
            for target in targets.values():
                _install(target, stamp)
                installed.append(target)
        except OSError as exc:
            _undo_installs(installed, exc)
            raise
    except OSError as exc:
        message = io_message(exc, lambda path: path != archive)
        raise BackupError(f"restore failed, nothing was changed: {message}") from exc
    finally:
        for target in targets.values():
            if target.staging is not None and target.staging.exists():
                shutil.rmtree(target.staging, ignore_errors=True)
    report.restored = [(t.label, t.path, t.aside) for t in targets.values()]
    return report


def check_python() -> None:
    """tarfile's extraction filters (PEP 706) came with Python 3.11.4; Debian 12 ships
    3.11.2, where `filter=` would be a TypeError half-way through a restore."""
    if not hasattr(tarfile, "data_filter"):
        version = ".".join(str(n) for n in sys.version_info[:3])
        raise UsageError(f"restore needs Python {MIN_PYTHON_FOR_FILTERS} or newer (tarfile "
                         f"extraction filters); this is Python {version}")


def _undo_installs(installed: list[Target], cause: OSError) -> None:
    """Put back what the targets held before; say exactly where things are if that fails."""
    for done in reversed(installed):
        if done.undo is None:
            continue
        try:
            done.undo()
        except OSError as exc:
            kept = f"; its previous state is in {done.aside}" if done.aside else ""
            raise BackupError(
                f"restore failed ({cause.strerror or cause}) and undoing it failed too "
                f"({exc.strerror or exc}): check {done.path} ({done.label}){kept}") from exc


def _check_target(target: Target, force: bool) -> None:
    path = target.path
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} exists and is not a directory")
    locked = held_lock(path)
    if locked is not None:
        raise UsageError(f"a running process holds {locked.relative_to(path)} in {path} "
                         "open: stop the bot (and signal-cli) before restoring")
    if path.is_dir() and _own_entries(path, set()) and not force:
        raise UsageError(f"{path} is not empty: pass --force to restore over it (the "
                         "current state is kept aside, not deleted)")


def _own_entries(path: Path, skip: set[Path]) -> list[Path]:
    """The entries of a target a restore replaces: not `lost+found`, not the state an
    earlier restore kept aside, not our own staging."""
    return sorted(entry for entry in path.iterdir()
                  if entry not in skip and entry.name != LOST_FOUND
                  and not entry.name.startswith((".before-restore-", ".restore-")))


def _space_margin(total: int) -> int:
    return min(SPACE_MARGIN, total // 20)


def _check_space(manifest: BackupManifest, targets: Mapping[str, Target],
                 routes: Mapping[str, tuple[str, str]]) -> None:
    """Every filesystem must hold what goes to all the targets on it, plus a margin (the
    previous state stays aside, so nothing is freed)."""
    need: dict[int, int] = {}
    where: dict[int, tuple[Path, list[str]]] = {}
    for entry in manifest.files:
        dest = _dest(entry.path, routes)
        if dest is None:
            continue
        target = targets[dest[0]]
        probe = target.path
        while not probe.exists():
            probe = probe.parent
        device = os.stat(probe).st_dev
        need[device] = need.get(device, 0) + entry.size
        labels = where.setdefault(device, (probe, []))[1]
        if target.label not in labels:
            labels.append(target.label)
    for device, size in need.items():
        probe, labels = where[device]
        usage = shutil.disk_usage(probe)
        margin = _space_margin(usage.total)
        if size + margin > usage.free:
            raise BackupError(f"not enough space for {' and '.join(labels)} on the "
                              f"filesystem of {probe}: {size} bytes needed plus a margin of "
                              f"{margin}, {usage.free} free")


def _unused(path: Path) -> Path:
    """`path`, or `path-1`, `path-2`...: two restores in one second must not collide."""
    candidate, number = path, 1
    while candidate.exists() or candidate.is_symlink():
        candidate, number = path.with_name(f"{path.name}-{number}"), number + 1
    return candidate


def _make_staging(target: Target, stamp: str) -> None:
    path = target.path
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    target.staging = _unused(path / f".restore-{stamp}")
    target.staging.mkdir(mode=0o700)


def _extract(archive: Path, manifest: BackupManifest, targets: Mapping[str, Target],
             routes: Mapping[str, tuple[str, str]],
             extract: Callable[..., None] | None) -> None:
    """Extract with tarfile's `data` filter (names are checked again, by us and by it),
    then check every staged file's sha256 once more: the archive may have changed since
    it was verified."""
    expected = {entry.path: entry for entry in manifest.files}
    with _open_archive(archive) as tar:
        members = _members(tar)
        _read_manifest(tar, members)
        for member in members:
            name = check_name(member.name)
            dest = _dest(name, routes)
            if dest is None or not dest[1]:
                continue
            if not (member.isreg() and name in expected) and not member.isdir():
                raise DamagedBackupError(f"member {name!r} changed since it was verified")
            staging = targets[dest[0]].staging
            assert staging is not None
            renamed = member.replace(name=dest[1], deep=False)
            try:
                if extract is not None:
                    extract(tar, renamed, staging)
                else:
                    tar.extract(renamed, staging, filter="data")
            except (tarfile.TarError, EOFError, zlib.error) as exc:
                raise DamagedBackupError(f"cannot extract {name!r}: {exc}") from None
    for target in targets.values():
        assert target.staging is not None
        _private_modes(target.staging)
    _check_staged(manifest, targets, routes)


def _private_modes(root: Path) -> None:
    """The state is private: directories 0700, files 0600, whatever the archive said."""
    for current, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.chmod(Path(current) / name, 0o700)
        for name in filenames:
            os.chmod(Path(current) / name, 0o600)


def _check_staged(manifest: BackupManifest, targets: Mapping[str, Target],
                  routes: Mapping[str, tuple[str, str]]) -> None:
    for entry in manifest.files:
        dest = _dest(entry.path, routes)
        if dest is None:
            continue
        staging = targets[dest[0]].staging
        assert staging is not None
        staged = staging / dest[1]
        if not staged.is_file() or sha256_of(staged) != entry.sha256:
            raise DamagedBackupError(f"file {entry.path!r} changed since it was verified")


def _chown_like_target(target: Target) -> None:
    """Run as root, give restored files the owner of the directory they go to, so the
    bot (a non-root user) can write them."""
    probe = target.path
    while not probe.exists():
        probe = probe.parent
    owner = probe.stat()
    assert target.staging is not None
    for current, dirnames, filenames in os.walk(target.staging):
        for name in [".", *dirnames, *filenames]:
            os.lchown(Path(current) / name, owner.st_uid, owner.st_gid)


def _move_entries(entries: list[Path], target: Path,
                  moved: list[tuple[Path, Path]]) -> None:
    """Rename `entries` into `target`, recording (now, was) for an undo."""
    for entry in entries:
        entry.rename(target / entry.name)
        moved.append((target / entry.name, entry))


def _undo_moves(moved: list[tuple[Path, Path]]) -> None:
    for now, was in reversed(moved):
        was.parent.mkdir(mode=0o700, exist_ok=True)
        now.rename(was)


def _install(target: Target, stamp: str) -> None:
    """Swap the target's entries for the staged ones: the previous entries go into
    `<target>/.before-restore-<time>/`, the staged ones in; if a move fails, the moves
    made are undone. Renames inside the target need only the target to be writable."""
    path, staging = target.path, target.staging
    assert staging is not None
    aside = _unused(path / f".before-restore-{stamp}")
    aside.mkdir(mode=0o700)
    out: list[tuple[Path, Path]] = []
    into: list[tuple[Path, Path]] = []
    try:
        _move_entries(_own_entries(path, {staging, aside}), aside, out)
        _move_entries(sorted(staging.iterdir()), path, into)
    except OSError:
        _undo_moves(into)
        _undo_moves(out)
        aside.rmdir()
        raise
    staging.rmdir()
    if not out:
        aside.rmdir()
    target.aside, target.staging = (aside if out else None), None

    def undo() -> None:
        _undo_moves(into)
        target.staging = staging
        _undo_moves(out)
        if out:
            aside.rmdir()
        target.aside = None

    target.undo = undo


# --- configuration ------------------------------------------------------------------------


def _flatten(model: Any, prefix: str) -> Iterator[tuple[str, Any, bool]]:
    """(environment variable, value, is secret) for every field of a settings model."""
    from pydantic import BaseModel, SecretStr

    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        env = prefix + name.upper()
        if isinstance(value, BaseModel):
            yield from _flatten(value, env + "__")
        else:
            secret = isinstance(value, SecretStr) or "SecretStr" in str(info.annotation)
            yield env, value, secret


def _plain(value: Any) -> Any:
    from pydantic import SecretStr

    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    return value


PERSONAL_SETTINGS = frozenset({"SIGNAL_RAG_ACCESS__ALLOWED", "SIGNAL_RAG_ACCESS__ADMINS",
                               "SIGNAL_RAG_SIGNAL__ACCOUNT"})
"""Phone numbers and Signal ids in clear: treated like secrets (only with --include-secrets)."""
_TOKEN_NAME = re.compile(r"token|key|secret|pass|auth|sig|credential|session", re.IGNORECASE)


def strip_url_credentials(value: str) -> str:
    """A URL without its userinfo (`redis://:password@host`) and with the values of query
    parameters named like tokens replaced; anything else is returned as it is."""
    parts = urlsplit(value)
    if not parts.scheme or not parts.netloc:
        return value
    netloc = parts.netloc.rpartition("@")[2]
    query = parse_qsl(parts.query, keep_blank_values=True)
    new_query = parts.query
    if any(_TOKEN_NAME.search(name) for name, _ in query):
        new_query = urlencode([(name, "REDACTED" if _TOKEN_NAME.search(name) else item)
                               for name, item in query])
    return urlunsplit((parts.scheme, netloc, parts.path, new_query, parts.fragment))


def config_snapshot(settings: Settings, environ: Mapping[str, str],
                    include_secrets: bool) -> dict[str, bytes]:
    """`settings.json` (every effective setting by its variable name) and `settings.env`
    (the variables set in the environment). Unless asked: no secret values, no phone
    numbers or ids (PERSONAL_SETTINGS), and URLs without the credentials they may carry."""
    effective: dict[str, Any] = {}
    omitted: list[str] = []
    personal: list[str] = []
    stripped: list[str] = []
    env_lines = ["# signal-rag settings of the backed-up bot (SIGNAL_RAG_* variables set "
                 "in its environment)"]
    given = {name.upper(): value for name, value in environ.items()}
    for env, value, secret in _flatten(settings, "SIGNAL_RAG_"):
        if secret and not include_secrets:
            if value is not None:
                omitted.append(env)
                env_lines.append(f"# {env}= (secret, not included)")
            continue
        if env in PERSONAL_SETTINGS and not include_secrets:
            if value:
                personal.append(env)
                env_lines.append(f"# {env}= (phone numbers or ids, not included)")
            continue
        plain = _plain(value)
        shown = plain if secret else given.get(env)
        if isinstance(plain, str) and not include_secrets:
            clean = strip_url_credentials(plain)
            if clean != plain or (shown is not None and strip_url_credentials(shown) != shown):
                stripped.append(env)
                env_lines.append(f"# {env}: credentials removed from the URL")
            plain = clean
            shown = strip_url_credentials(shown) if shown is not None else None
        effective[env] = plain
        if (secret and value is not None) or env in given:
            env_lines.append(f"{env}={shlex.quote(str(shown))}")
    document = {"settings": effective, "secrets_omitted": omitted,
                "personal_omitted": personal, "url_credentials_removed": stripped,
                "secrets_included": include_secrets}
    return {"settings.json": json.dumps(document, indent=2, sort_keys=True).encode(),
            "settings.env": ("\n".join(env_lines) + "\n").encode()}


def configured_pepper(settings: Settings) -> bytes | None:
    """SIGNAL_RAG_AUDIT__PEPPER, the pepper `serve` uses. Not the data dir's generated
    `.audit-pepper`: `ask`/`chat` create one when none is configured, so it says nothing
    about the bot's pepper when `backup create` runs without the bot's credentials."""
    if settings.audit.pepper is None:
        return None
    return settings.audit.pepper.get_secret_value().encode()


def pepper_source(settings: Settings, data_dir: Path) -> str:
    if settings.audit.pepper is not None:
        return "configured"
    return "generated-file" if (data_dir / PEPPER_FILE).is_file() else "none"


def _restored_pepper(settings: Settings, data_dir: Path) -> bytes | None:
    """The pepper the restored bot will use (as agent.audit.load_or_create_pepper
    reads it): the configured one, else the restored data dir's file."""
    pepper = configured_pepper(settings)
    if pepper is not None:
        return pepper
    path = data_dir / PEPPER_FILE
    return path.read_bytes().strip() if path.is_file() else None


def pepper_notes(manifest: BackupManifest, settings: Settings, data_dir: Path) -> list[str]:
    """What the restored bot will make of its users: they are keyed by HMAC(pepper)."""
    if manifest.pepper_check is None:
        why = {"generated-file": "the backed-up bot had no configured pepper, only a "
                                 "generated .audit-pepper file",
               "none": "the backed-up bot had no pepper"}.get(
            manifest.pepper_source or "", "it was made without SIGNAL_RAG_AUDIT__PEPPER "
                                          "configured")
        return [f"this backup has no pepper check ({why}): make sure the restored bot uses "
                "the pepper the backed-up bot used, or its users must activate again"]
    pepper = _restored_pepper(settings, data_dir)
    if pepper is None:
        return ["warning: no audit pepper is configured and this backup holds none (made "
                "without --include-secrets): set SIGNAL_RAG_AUDIT__PEPPER to the pepper the "
                "backed-up bot used, or its users, threads and memory will not be "
                "recognised (a new pepper would be generated)"]
    if hmac.compare_digest(pepper_check(pepper), manifest.pepper_check):
        return ["audit pepper: the configured pepper is the backed-up bot's"]
    return ["warning: the configured audit pepper is not the one the backup was made with: "
            "activated users, their threads and memory will not be recognised (users must "
            "activate again) unless you configure the original SIGNAL_RAG_AUDIT__PEPPER"]


# --- the command line ---------------------------------------------------------------------

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
    if _inside(path.parent, settings.data_dir):
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
