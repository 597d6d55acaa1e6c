"""The archive format of `signal-rag backup` (version 1): names, the manifest, its checks,
and reading an archive back (`verify_backup`). Shared by create and restore."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
LOST_FOUND = "lost+found"
"""ext4 puts it at the root of a volume (root-owned, 0700): never ours, left where it is."""
MAX_MEMBERS = 200_000
"""More members (or manifest entries) than any bot's state has: a hostile archive."""
EXIT_IO, EXIT_USAGE, EXIT_DAMAGED = 1, 2, 3
CHUNK = 1 << 20


class BackupError(Exception):
    """A backup command cannot go on; `code` is the exit code, the message one line."""

    code = EXIT_IO


class UsageError(BackupError):
    code = EXIT_USAGE


class DamagedBackupError(BackupError):
    code = EXIT_DAMAGED


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
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def is_inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def io_message(exc: OSError, writing: Callable[[Path], bool]) -> str:
    """One line naming the file and whether reading or writing it failed."""
    problem = exc.strerror or str(exc)
    if exc.filename is None:
        return f"{problem} ({type(exc).__name__})"
    path = Path(os.fsdecode(exc.filename))
    return f"{'writing' if writing(path) else 'reading'} {path} failed: {problem}"


def is_backup_archive(path: Path) -> bool:
    """Whether `path` is one of our archives (skipped when it lies in the data dir, so a
    backup kept there is not copied into the next one)."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            first = tar.next()
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        return False
    return first is not None and first.name == MANIFEST_NAME


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tarinfo(name: str, kind: bytes, mode: int, mtime: float, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.size = kind, mode, int(mtime), size
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def open_archive(path: Path) -> tarfile.TarFile:
    if not path.is_file():
        raise UsageError(f"no backup file at {path}")
    if not os.access(path, os.R_OK):
        raise UsageError(f"cannot read {path} (permission denied)")
    try:
        return tarfile.open(path, "r:gz")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DamagedBackupError(f"{path} is not a signal-rag backup (not a readable "
                                 f".tar.gz: {type(exc).__name__})") from None


def safe_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Members one by one; a truncated or corrupt stream becomes DamagedBackupError. At
    most MAX_MEMBERS, and `tar.members` (where TarFile keeps every header) stays empty,
    so a hostile archive cannot exhaust memory."""
    try:
        for count in range(MAX_MEMBERS + 2):  # the manifest, then the entries
            member = tar.next()
            tar.members = []  # type: ignore[attr-defined]  # typeshed omits it
            if member is None:
                _read_to_the_end(tar)
                return
            if count > MAX_MEMBERS:
                break
            yield member
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DamagedBackupError(f"the archive is truncated or damaged "
                                 f"({type(exc).__name__})") from None
    raise DamagedBackupError(f"the archive has more than {MAX_MEMBERS} members")


TRAILING_LIMIT = 1 << 20
"""Bytes after the end-of-archive marker we read through (tar pads to 10 KiB records)."""


def _read_to_the_end(tar: tarfile.TarFile) -> None:
    """The end-of-archive marker is not the end of the file: read the rest of the
    compressed stream, so one cut off inside the tar's padding (its gzip trailer, with the
    CRC, missing) is noticed (EOFError) instead of restored as if whole."""
    stream = tar.fileobj
    if stream is None:
        return
    left = TRAILING_LIMIT
    while chunk := stream.read(min(CHUNK, left + 1)):
        left -= len(chunk)
        if left < 0:
            raise DamagedBackupError("the archive has data after its end")


def read_manifest(tar: tarfile.TarFile, members: Iterator[tarfile.TarInfo]) -> BackupManifest:
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
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DamagedBackupError(f"the archive is truncated or damaged "
                                 f"({type(exc).__name__})") from None
    return digest.hexdigest()


def verify_backup(path: Path) -> BackupManifest:
    """Read the whole archive and check it against its manifest; writes nothing. Raises
    DamagedBackupError for anything we would not restore."""
    with open_archive(path) as tar:
        members = safe_members(tar)
        manifest = read_manifest(tar, members)
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
