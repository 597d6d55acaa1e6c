"""`backup restore`: verify the whole archive, extract into a staging directory inside each
target, check the staged files again, then swap each target's entries for the staged ones,
keeping the previous ones aside (and putting everything back when a step fails)."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import sys
import tarfile
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.backup.format import (
    CONFIG,
    DATA,
    INDEX,
    LAST_GOOD,
    LOST_FOUND,
    RESTORED_CONFIG,
    SIGNAL_CLI,
    SIGNAL_CLI_ENV,
    BackupError,
    BackupManifest,
    DamagedBackupError,
    UsageError,
    check_name,
    io_message,
    is_inside,
    open_archive,
    read_manifest,
    safe_members,
    sha256_of,
    verify_backup,
)

SPACE_MARGIN = 100 << 20
"""A restore leaves this much (or 5% of a small filesystem) free on every filesystem."""
MIN_PYTHON_FOR_FILTERS = "3.11.4"


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
    if is_inside(index_dir, data_dir) and index_dir.resolve() != data_dir.resolve():
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
    with open_archive(archive) as tar:
        members = safe_members(tar)
        read_manifest(tar, members)
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
