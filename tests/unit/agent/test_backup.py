"""`signal-rag backup`: the archive format, round trips, refusals and every hostile archive.

Real SQLite files, a real index (built with the hashing embedder) and real tar archives;
the only fakes are the injected copy/extract hooks that simulate a concurrent index swap
and a failing disk, and one forced mount-point check.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agent import backup
from agent.backup import (
    DamagedBackupError,
    check_name,
    config_snapshot,
    copy_index,
    parse_manifest,
    verify_backup,
)
from agent.backup import cli as backup_cli
from agent.backup import format as backup_format
from agent.backup import restore as backup_restore
from agent.cli import app
from agent.settings import load_settings
from agent.testing.embeddings import HashingEmbedder
from agent.users import UserDirectory
from knowledge.index import IndexCorruptError, last_good_path, verify_index
from knowledge.ingest import ingest

runner = CliRunner()
PASSPHRASE = "a very private passphrase"
PEPPER = "pepper-0123456789abcdef-pepper"
USER = "hmac-of-some-user"


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SIGNAL_RAG_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name)
    monkeypatch.setenv("SIGNAL_RAG_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "secrets").mkdir()
    monkeypatch.setenv("SIGNAL_RAG_SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.setenv("SIGNAL_RAG_ACCESS__PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("SIGNAL_RAG_AUDIT__PEPPER", PEPPER)
    monkeypatch.setenv("SIGNAL_RAG_RETRIEVAL__TOP_K", "3")


WRITER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode = WAL")
db.execute("PRAGMA wal_autocheckpoint = 0")  # committed rows stay in the WAL file
db.execute("CREATE TABLE inbox (id INTEGER PRIMARY KEY, payload TEXT)")
db.executemany("INSERT INTO inbox (payload) VALUES (?)", [(f"m{i}",) for i in range(50)])
db.execute("BEGIN IMMEDIATE")  # a write in progress: not committed, not backed up
db.execute("INSERT INTO inbox (payload) VALUES ('uncommitted')")
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def data_dir(built_index: Path) -> Iterator[Path]:
    """A bot's data dir while the bot runs: an inbox another process holds open with its
    rows only in the WAL and a write transaction open, an audit trail whose last line is
    half-written, secret files, logs."""
    data = built_index.parent
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(data / "inbox.sqlite3")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
    assert (data / "inbox.sqlite3-wal").stat().st_size > 0
    users = UserDirectory(data / "users.sqlite3")
    users.activate(USER)
    users.touch_thread(USER, "dm")
    users.close()
    (data / "audit.jsonl").write_text('{"route":"answered"}\n{"route":"fallback"}\n{"rou')
    (data / ".audit-pepper").write_text("generated-pepper-0123456789")
    (data / ".prompt-canary").write_text("canary-0123456789abcdef")
    (data / "logs").mkdir()
    (data / "logs" / "signal-rag.log").write_text("a log line\n")
    (data / "extra").mkdir()
    (data / "extra" / "notes.txt").write_text("kept")
    try:
        yield data
    finally:
        writer.communicate("", timeout=30)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha(p) for p in sorted(root.rglob("*"))
            if p.is_file()}


def create(tmp_path: Path, *args: str, name: str = "backup.tar.gz") -> Path:
    out = tmp_path / "backups" / name
    result = runner.invoke(app, ["backup", "create", str(out), *args])
    assert result.exit_code == 0, result.output
    return out


def restore(archive: Path, target: Path, *args: str) -> Any:
    return runner.invoke(app, ["backup", "restore", str(archive), "--data-dir", str(target),
                               *args])


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: (tar.extractfile(m).read() if m.isreg() else b"")  # type: ignore[union-attr]
                for m in tar}


# --- create and restore -------------------------------------------------------------------


def test_round_trip_keeps_every_database_row_the_index_and_complete_audit_lines(
        tmp_path: Path, data_dir: Path) -> None:
    archive = create(tmp_path)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600, "it may hold identity keys"
    target = tmp_path / "restored"
    result = restore(archive, target)
    assert result.exit_code == 0, result.output
    assert f"Restored data to {target}" in result.stdout

    inbox = sqlite3.connect(target / "inbox.sqlite3")
    assert inbox.execute("SELECT count(*) FROM inbox").fetchone()[0] == 50  # WAL rows too
    inbox.close()
    users = UserDirectory(target / "users.sqlite3")
    assert users.is_activated(USER)
    users.close()
    assert (target / "audit.jsonl").read_text() == '{"route":"answered"}\n{"route":"fallback"}\n'
    assert verify_index(target / "index").files == verify_index(data_dir / "index").files
    assert (target / "extra" / "notes.txt").read_text() == "kept"
    assert not (target / "logs").exists(), "logs are not backed up"
    assert not (target / ".audit-pepper").exists() and not (target / ".prompt-canary").exists()
    for path in target.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600)
    assert not [p for p in tmp_path.iterdir() if "restore-" in p.name], "no staging left"


def test_archive_is_self_describing_and_holds_no_secret(tmp_path: Path, data_dir: Path) -> None:
    archive = create(tmp_path)
    content = members(archive)
    assert next(iter(content)) == "manifest.json"
    manifest = json.loads(content["manifest.json"])
    assert manifest["format"] == "signal-rag-backup" and manifest["format_version"] == 1
    assert manifest["secrets_included"] is False and manifest["app_version"]
    assert manifest["created_at"].endswith("Z")
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == {name for name, _ in content.items()
                           if name != "manifest.json" and name not in manifest["dirs"]}
    for name, entry in listed.items():
        assert entry["size"] == len(content[name])
        assert entry["sha256"] == hashlib.sha256(content[name]).hexdigest()
    assert {"data/inbox.sqlite3", "data/users.sqlite3", "data/audit.jsonl",
            "index/manifest.json", "index/dense.faiss", "config/settings.json"} <= set(listed)
    assert not any(n.endswith(("-wal", "-shm")) for n in listed)
    everything = b"".join(content.values())
    for secret in (PASSPHRASE, PEPPER, "generated-pepper", "canary-0123"):
        assert secret.encode() not in everything
    settings = json.loads(content["config/settings.json"])
    assert settings["settings"]["SIGNAL_RAG_RETRIEVAL__TOP_K"] == 3
    assert "SIGNAL_RAG_ACCESS__PASSPHRASE" in settings["secrets_omitted"]
    assert b"SIGNAL_RAG_RETRIEVAL__TOP_K=3\n" in content["config/settings.env"]


def test_include_secrets_stores_the_pepper_canary_and_secret_settings(
        tmp_path: Path, data_dir: Path) -> None:
    archive = create(tmp_path, "--include-secrets")
    content = members(archive)
    assert json.loads(content["manifest.json"])["secrets_included"] is True
    assert content["data/.audit-pepper"] == b"generated-pepper-0123456789"
    assert content["data/.prompt-canary"] == b"canary-0123456789abcdef"
    assert f"SIGNAL_RAG_ACCESS__PASSPHRASE='{PASSPHRASE}'".encode() in content[
        "config/settings.env"]
    target = tmp_path / "restored"
    assert restore(archive, target).exit_code == 0
    assert (target / ".audit-pepper").read_text() == "generated-pepper-0123456789"


def test_the_secret_file_names_are_the_ones_the_bot_writes() -> None:
    from agent.assistant import CANARY_FILE
    from agent.audit import PEPPER_FILE

    assert backup.PEPPER_FILE == PEPPER_FILE and backup.CANARY_FILE == CANARY_FILE


def test_a_backup_is_never_overwritten(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "backups" / "b.tar.gz"
    out.parent.mkdir()
    out.write_bytes(b"an older backup")
    result = runner.invoke(app, ["backup", "create", str(out)])
    assert result.exit_code == 2 and "exists" in result.stderr
    assert out.read_bytes() == b"an older backup"
    assert os.listdir(out.parent) == ["b.tar.gz"], "no partial files left"


def test_a_backup_kept_in_the_data_dir_is_not_copied_into_the_next_one(
        tmp_path: Path, data_dir: Path) -> None:
    first = data_dir / "before-upgrade.tar.gz"
    result = runner.invoke(app, ["backup", "create", str(first)])
    assert result.exit_code == 0 and "inside the data directory" in result.stderr
    second = tmp_path / "second.tar.gz"
    result = runner.invoke(app, ["backup", "create", str(second)])
    assert result.exit_code == 0 and "left out data/before-upgrade.tar.gz" in result.stderr
    assert not [name for name in members(second) if name.endswith(".tar.gz")]
    assert not [p for p in data_dir.iterdir() if ".staging-" in p.name or "partial" in p.name]


def test_a_backup_inside_the_index_is_refused(tmp_path: Path, data_dir: Path) -> None:
    result = runner.invoke(app, ["backup", "create", str(data_dir / "index" / "b.tar.gz")])
    assert result.exit_code == 2 and "outside" in result.stderr
    assert not (data_dir / "index" / "b.tar.gz").exists()
    verify_index(data_dir / "index")


def test_verify_reports_a_good_backup(tmp_path: Path, data_dir: Path) -> None:
    archive = create(tmp_path)
    result = runner.invoke(app, ["backup", "verify", str(archive)])
    assert result.exit_code == 0 and result.stdout.startswith("Backup OK:")


def test_a_swap_during_the_index_copy_is_copied_again(
        tmp_path: Path, data_dir: Path, docs_dir: Path, embedder: HashingEmbedder) -> None:
    index = data_dir / "index"
    calls = []

    def racing_copy(src: Path, dst: Path) -> None:
        calls.append(src)
        if len(calls) == 1:  # the old manifest, then ingest swaps in a new generation
            dst.mkdir()
            shutil.copy(src / "manifest.json", dst / "manifest.json")
            (docs_dir / "new.md").write_text("# New\n\nA new document about kayaks.")
            ingest(docs_dir, src, embedder, provider="test", chunk_size=200, chunk_overlap=40)
            shutil.copytree(src, dst, dirs_exist_ok=True,
                            ignore=lambda d, _n: ["manifest.json"] if Path(d) == src else [])
        else:
            shutil.copytree(src, dst)

    copy = tmp_path / "copy"
    assert copy_index(index, copy, copy=racing_copy) is None
    assert len(calls) == 2
    assert "new.md" in verify_index(copy).documents
    assert last_good_path(index).is_dir(), "the swap kept the previous generation"


def test_a_damaged_index_fails_the_backup_unless_allowed(tmp_path: Path, data_dir: Path) -> None:
    (data_dir / "index" / "chunks.json").write_text("[]")
    with pytest.raises(IndexCorruptError):
        verify_index(data_dir / "index")
    out = tmp_path / "b.tar.gz"
    result = runner.invoke(app, ["backup", "create", str(out)])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: index not included")
    assert "--allow-missing-index" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".b.tar.gz*"))
    result = runner.invoke(app, ["backup", "create", str(out), "--allow-missing-index"])
    assert result.exit_code == 0, result.output
    assert "warning: index not included" in result.stderr
    assert not any(name.startswith("index/") for name in members(out))


def test_a_bot_that_never_ingested_is_backed_up_with_a_note(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    data.mkdir()
    (data / "notes.txt").write_text("x")
    out = tmp_path / "b.tar.gz"
    result = runner.invoke(app, ["backup", "create", str(out), "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "there is none yet" in result.stderr
    assert set(members(out)) >= {"manifest.json", "data/notes.txt"}


def test_an_index_missing_in_ingests_swap_window_is_copied_after_a_backoff(
        tmp_path: Path, data_dir: Path) -> None:
    """ingest renames live -> last-good, then staging -> live: between the two the live
    index is missing while its staging directory (and the last-good copy) exist."""
    index = data_dir / "index"
    staged = data_dir / ".index.staging-abc"
    shutil.copytree(index, staged)
    shutil.rmtree(index)  # the window: live renamed away, staging not yet in place
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # ingest finishes its swap while we wait
        waits.append(seconds)
        if len(waits) == 2:
            staged.rename(index)

    copy = tmp_path / "copy"
    assert copy_index(index, copy, sleep=sleep) is None
    assert waits == [0.2, 0.4]
    verify_index(copy)


def test_an_index_that_stays_missing_in_a_swap_fails_the_backup(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = data_dir / "index"
    shutil.copytree(index, last_good_path(index), dirs_exist_ok=True)
    shutil.rmtree(index)
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    out = tmp_path / "b.tar.gz"
    result = runner.invoke(app, ["backup", "create", str(out)])
    assert result.exit_code == 1, result.output
    assert "index not included: missing while ingest was swapping it" in result.stderr
    assert len(waits) == backup.INDEX_COPY_ATTEMPTS and not out.exists()
    result = runner.invoke(app, ["backup", "create", str(out), "--allow-missing-index"])
    assert result.exit_code == 0 and "warning: index not included" in result.stderr
    assert any(name.startswith("index.last-good/") for name in members(out))


def test_signal_cli_data_round_trips_only_when_asked(tmp_path: Path, data_dir: Path) -> None:
    signal_cli = tmp_path / "signal-cli"
    (signal_cli / "data" / "+100.d").mkdir(parents=True)
    (signal_cli / "data" / "accounts.json").write_text('{"accounts": []}')
    db = sqlite3.connect(signal_cli / "data" / "+100.d" / "account.db")
    db.execute("CREATE TABLE identity (key BLOB)")
    db.execute("INSERT INTO identity VALUES (x'0102')")
    db.commit()
    db.close()
    (signal_cli / "data" / "empty").mkdir()
    archive = create(tmp_path, "--signal-cli-dir", str(signal_cli))
    result = restore(archive, tmp_path / "restored")
    assert result.exit_code == 0 and "not restored" in result.stderr
    assert not (tmp_path / "new-signal-cli").exists()
    result = restore(archive, tmp_path / "restored2", "--signal-cli-dir",
                     str(tmp_path / "new-signal-cli"))
    assert result.exit_code == 0, result.output
    restored = tmp_path / "new-signal-cli" / "data"
    assert (restored / "accounts.json").read_text() == '{"accounts": []}'
    assert (restored / "empty").is_dir()
    db = sqlite3.connect(restored / "+100.d" / "account.db")
    assert db.execute("SELECT key FROM identity").fetchone()[0] == b"\x01\x02"
    db.close()


def test_an_index_outside_the_data_dir_goes_back_to_the_configured_index_dir(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "volumes" / "index" / "current"
    outside.parent.mkdir(parents=True)
    shutil.move(data_dir / "index", outside)
    monkeypatch.setenv("SIGNAL_RAG_INDEX_DIR", str(outside))
    archive = create(tmp_path)
    assert "index/manifest.json" in members(archive)
    shutil.rmtree(outside)
    new_index = tmp_path / "new-volume" / "current"
    monkeypatch.setenv("SIGNAL_RAG_INDEX_DIR", str(new_index))
    result = restore(archive, tmp_path / "restored")
    assert result.exit_code == 0, result.output
    verify_index(new_index)
    assert not (tmp_path / "restored" / "index").exists()


# --- restore refusals and failures --------------------------------------------------------


def test_a_non_empty_target_needs_force_and_its_state_is_kept_aside(
        tmp_path: Path, data_dir: Path) -> None:
    archive = create(tmp_path)
    target = tmp_path / "live"
    target.mkdir()
    (target / "users.sqlite3").write_bytes(b"newer state")
    result = restore(archive, target)
    assert result.exit_code == 2 and "--force" in result.stderr
    assert tree(target) == {"users.sqlite3": sha(target / "users.sqlite3")}
    result = restore(archive, target, "--force")
    assert result.exit_code == 0, result.output
    [aside] = [p for p in target.iterdir() if p.name.startswith(".before-restore-")]
    assert (aside / "users.sqlite3").read_bytes() == b"newer state"
    assert not [p for p in tmp_path.iterdir() if "restore" in p.name], "nothing beside it"
    assert f"previous state kept at {aside}" in result.stdout
    assert UserDirectory(target / "users.sqlite3").is_activated(USER)


def test_restore_refuses_a_data_dir_a_running_process_holds_open(
        tmp_path: Path, data_dir: Path) -> None:
    archive = create(tmp_path)
    target = tmp_path / "live"
    target.mkdir()
    shutil.copy(data_dir / "users.sqlite3", target / "users.sqlite3")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
         "db.execute('PRAGMA journal_mode=WAL'); db.execute('SELECT 1 FROM activated').fetchall(); "
         "print('open', flush=True); sys.stdin.read()", str(target / "users.sqlite3")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        before = tree(target)
        result = restore(archive, target, "--force")
        assert result.exit_code == 2, result.output
        assert "running process" in result.stderr and "stop the bot" in result.stderr
        assert tree(target) == before
        assert not [p for p in tmp_path.iterdir() if "restore-" in p.name]
    finally:
        holder.communicate("", timeout=30)
    assert restore(archive, target, "--force").exit_code == 0, "stopped: now it restores"


def test_a_failed_extraction_changes_nothing(tmp_path: Path, data_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    archive = create(tmp_path)
    target = tmp_path / "live"
    shutil.copytree(data_dir, target)
    before = tree(target)
    count = []

    def failing(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
        count.append(member)
        if len(count) == 4:
            raise OSError(28, "No space left on device")
        tar.extract(member, path, filter="data")

    real = backup_cli.restore_backup
    monkeypatch.setattr(backup_cli, "restore_backup",
                        lambda *a, **k: real(*a, **k, extract=failing))
    result = restore(archive, target, "--force")
    assert result.exit_code == 1 and "nothing was changed" in result.stderr
    assert "No space left on device" in result.stderr
    assert tree(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backups", "data", "docs", "live",
                                                          "secrets"]


def test_an_archive_changed_after_verification_is_caught_before_install(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = create(tmp_path)
    target = tmp_path / "live"
    shutil.copytree(data_dir, target)
    before = tree(target)

    def tampering(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
        tar.extract(member, path, filter="data")
        if member.name == "audit.jsonl":
            (path / member.name).write_text('{"route":"forged"}\n')

    real = backup_cli.restore_backup
    monkeypatch.setattr(backup_cli, "restore_backup",
                        lambda *a, **k: real(*a, **k, extract=tampering))
    result = restore(archive, target, "--force")
    assert result.exit_code == 3 and "changed since it was verified" in result.stderr
    assert tree(target) == before


def test_a_failure_on_the_second_target_puts_the_first_one_back(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "volumes" / "index" / "current"
    index.parent.mkdir(parents=True)
    shutil.move(data_dir / "index", index)
    monkeypatch.setenv("SIGNAL_RAG_INDEX_DIR", str(index))
    archive = create(tmp_path)
    live = tmp_path / "live"
    shutil.copytree(data_dir, live)
    before_data, before_index = tree(live), tree(index)
    real_install = backup_restore._install

    def install(target: backup_restore.Target, stamp: str) -> None:
        if target.label == "index":
            raise OSError(5, "Input/output error")
        real_install(target, stamp)

    monkeypatch.setattr(backup_restore, "_install", install)
    result = restore(archive, live, "--force")
    assert result.exit_code == 1 and "nothing was changed" in result.stderr
    assert tree(live) == before_data and tree(index) == before_index
    assert not list(tmp_path.glob("live.before-restore-*"))
    assert not list(tmp_path.rglob(".*restore-*"))


def test_a_target_is_restored_by_moving_its_contents(
        tmp_path: Path, data_dir: Path) -> None:
    """Also how a mount point (which cannot be renamed) is restored."""
    archive = create(tmp_path)
    target = tmp_path / "volume"
    target.mkdir()
    (target / "old.txt").write_text("old state")
    result = restore(archive, target, "--force")
    assert result.exit_code == 0, result.output
    [aside] = [p for p in target.iterdir() if p.name.startswith(".before-restore-")]
    assert (aside / "old.txt").read_text() == "old state"
    assert not (target / "old.txt").exists()
    assert UserDirectory(target / "users.sqlite3").is_activated(USER)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backups", "data", "docs", "secrets",
                                                          "volume"]
    again = tmp_path / "again.tar.gz"
    assert runner.invoke(app, ["backup", "create", str(again), "--data-dir",
                               str(target)]).exit_code == 0
    assert not [name for name in members(again) if "before-restore" in name]


def test_a_failed_move_into_the_target_is_undone(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = create(tmp_path)
    target = tmp_path / "volume"
    target.mkdir()
    (target / "old.txt").write_text("old state")
    (target / "users.sqlite3").write_bytes(b"old users")
    before = tree(target)
    real_move = backup_restore._move_entries

    def move(entries: list[Path], into: Path, moved: list[tuple[Path, Path]]) -> None:
        if into == target:  # the staged entries: one goes in, then the disk fails
            first = entries[0]
            first.rename(into / first.name)
            moved.append((into / first.name, first))
            raise OSError(5, "Input/output error", str(into / first.name))
        real_move(entries, into, moved)

    monkeypatch.setattr(backup_restore, "_move_entries", move)
    result = restore(archive, target, "--force")
    assert result.exit_code == 1 and "nothing was changed" in result.stderr
    assert f"writing {target}/" in result.stderr and "Input/output error" in result.stderr
    assert tree(target) == before
    assert sorted(p.name for p in target.iterdir()) == ["old.txt", "users.sqlite3"]


def test_a_symlinked_data_dir_is_restored_where_it_points(
        tmp_path: Path, data_dir: Path) -> None:
    archive = create(tmp_path)
    real = tmp_path / "private" / "signal-rag"
    real.mkdir(parents=True)
    (real / "old.txt").write_text("old")
    link = tmp_path / "state"
    link.symlink_to(real)
    result = restore(archive, link, "--force")
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and link.resolve() == real
    assert UserDirectory(real / "users.sqlite3").is_activated(USER)
    [aside] = real.glob(".before-restore-*")
    assert (aside / "old.txt").read_text() == "old"


@pytest.mark.parametrize(("configured", "expected"), [
    (PEPPER, "the configured pepper is the backed-up bot's"),
    ("another-pepper-0123456789", "not the one the backup was made with"),
    (None, "no audit pepper is configured"),
])
def test_restore_says_whether_the_pepper_will_recognise_the_users(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch,
        configured: str | None, expected: str) -> None:
    archive = create(tmp_path)
    if configured is None:
        monkeypatch.delenv("SIGNAL_RAG_AUDIT__PEPPER")
    else:
        monkeypatch.setenv("SIGNAL_RAG_AUDIT__PEPPER", configured)
    result = restore(archive, tmp_path / "restored")
    assert result.exit_code == 0 and expected in result.stderr
    assert PEPPER not in result.output and "generated-pepper" not in result.output


# --- hostile and damaged archives ---------------------------------------------------------


def _entry(name: str, data: bytes) -> dict[str, Any]:
    return {"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _manifest(files: list[dict[str, Any]], **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "format": "signal-rag-backup", "format_version": 1,
        "created_at": "2026-01-01T00:00:00Z", "app_version": "0.1.0",
        "secrets_included": False, "pepper_check": None, "source": {}, "dirs": [],
        "files": files}
    document.update(changes)
    return document


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, b""


def write_tar(path: Path, manifest: dict[str, Any] | bytes | None,
              items: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        if manifest is not None:
            body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
            tar.addfile(*_as_member(_file("manifest.json", body)))
        for item in items:
            tar.addfile(*_as_member(item))
    return path


def _as_member(item: tuple[tarfile.TarInfo, bytes]) -> tuple[tarfile.TarInfo, io.BytesIO | None]:
    info, data = item
    return info, io.BytesIO(data) if info.isreg() else None


GOOD = b'{"route":"answered"}\n'


def _hostile_cases() -> Iterator[tuple[str, Callable[[Path], Path], str]]:
    ok = [_entry("data/audit.jsonl", GOOD)]
    good_file = _file("data/audit.jsonl", GOOD)
    yield ("dot-dot", lambda p: write_tar(p, _manifest(ok), [good_file,
           _file("data/../../evil", b"x")]), "unsafe member name")
    yield ("absolute", lambda p: write_tar(p, _manifest(ok), [good_file,
           _file("/tmp/evil", b"x")]), "unsafe member name")
    yield ("unknown root", lambda p: write_tar(p, _manifest(ok), [good_file,
           _file("etc/passwd", b"x")]), "unexpected member")
    yield ("symlink", lambda p: write_tar(p, _manifest(ok), [good_file,
           _special("data/link", tarfile.SYMTYPE, "/etc/passwd")]), "link or special")
    yield ("hard link", lambda p: write_tar(p, _manifest(ok), [good_file,
           _special("data/hard", tarfile.LNKTYPE, "data/audit.jsonl")]), "link or special")
    yield ("device", lambda p: write_tar(p, _manifest(ok), [good_file,
           _special("data/null", tarfile.CHRTYPE)]), "link or special")
    yield ("fifo", lambda p: write_tar(p, _manifest(ok), [good_file,
           _special("data/pipe", tarfile.FIFOTYPE)]), "link or special")
    yield ("sha256 lies", lambda p: write_tar(p, _manifest(ok), [
        _file("data/audit.jsonl", GOOD.replace(b"answered", b"forgeddd"))]), "sha256")
    yield ("size lies", lambda p: write_tar(p, _manifest(ok), [
        _file("data/audit.jsonl", GOOD + b"\n")]), "the manifest says")
    yield ("file missing", lambda p: write_tar(p, _manifest(
        [*ok, _entry("data/users.sqlite3", b"db")]), [good_file]), "missing from the archive")
    yield ("file not listed", lambda p: write_tar(p, _manifest(ok), [good_file,
           _file("data/extra", b"x")]), "not in the manifest")
    yield ("duplicate member", lambda p: write_tar(p, _manifest(ok), [good_file, good_file]),
           "appears twice")
    yield ("directory not listed", lambda p: write_tar(p, _manifest(ok), [good_file,
           _special("data/sub", tarfile.DIRTYPE)]), "not in the manifest")
    yield ("wrong version", lambda p: write_tar(p, _manifest(ok, format_version=2),
           [good_file]), "unsupported backup format version 2")
    yield ("other format", lambda p: write_tar(p, _manifest(ok, format="something-else"),
           [good_file]), "not a signal-rag backup")
    yield ("manifest not json", lambda p: write_tar(p, b"{not json", [good_file]),
           "not valid JSON")
    yield ("no manifest", lambda p: write_tar(p, None, [good_file]), "first member")
    yield ("manifest path escapes", lambda p: write_tar(p, _manifest(
        [_entry("data/../x", GOOD)]), [good_file]), "unsafe member name")
    yield ("manifest bad sha", lambda p: write_tar(p, _manifest(
        [{"path": "data/audit.jsonl", "size": 21, "sha256": "zz"}]), [good_file]),
           "malformed file entry")
    yield ("secret despite no secrets", lambda p: write_tar(p, _manifest(
        [*ok, _entry("data/.audit-pepper", b"pepper-pepper-pepper")]),
        [good_file, _file("data/.audit-pepper", b"pepper-pepper-pepper")]),
           "lists a secret file")
    yield ("file under a file", lambda p: write_tar(p, _manifest(
        [*ok, _entry("data/audit.jsonl/x", b"x")]), [good_file]), "lies under a file")
    yield ("not gzip", lambda p: _write(p, b"PK\x03\x04 not a tar.gz at all" * 10),
           "not a readable .tar.gz")
    yield ("gzip but not tar", lambda p: _write(p, gzip.compress(b"\x01" * 2000)),
           "not a signal-rag backup")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


HOSTILE = list(_hostile_cases())


@pytest.mark.parametrize(("make", "message"), [(m, msg) for _, m, msg in HOSTILE],
                         ids=[name for name, _, _ in HOSTILE])
def test_a_hostile_or_damaged_archive_is_refused_and_nothing_is_written(
        tmp_path: Path, make: Callable[[Path], Path], message: str) -> None:
    archive = make(tmp_path / "hostile.tar.gz")
    work = tmp_path / "work"
    work.mkdir()
    target = work / "data"
    for command in (["backup", "verify", str(archive)],
                    ["backup", "restore", str(archive), "--data-dir", str(target)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 3, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (
            result.stderr)
        assert os.listdir(work) == [], "nothing written"
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()


def test_a_truncated_archive_is_refused(tmp_path: Path, data_dir: Path) -> None:
    archive = create(tmp_path)
    whole = archive.read_bytes()
    for cut in (len(whole) // 2, len(whole) - 40, 30):
        truncated = tmp_path / f"cut-{cut}.tar.gz"
        truncated.write_bytes(whole[:cut])
        result = runner.invoke(app, ["backup", "restore", str(truncated), "--data-dir",
                                     str(tmp_path / "target")])
        assert result.exit_code == 3, (cut, result.output)
        assert len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "target").exists()


def test_an_archive_cut_after_its_last_member_is_refused(tmp_path: Path,
                                                         data_dir: Path) -> None:
    """Cut inside the tar's end padding or the gzip trailer (its CRC): every member reads
    whole, and it used to pass as whole; the stream is now read to its end."""
    whole = create(tmp_path).read_bytes()
    for cut in (len(whole) - 8, len(whole) - 1):
        truncated = tmp_path / f"cut-{cut}.tar.gz"
        truncated.write_bytes(whole[:cut])
        result = runner.invoke(app, ["backup", "verify", str(truncated)])
        assert result.exit_code == 3 and "truncated" in result.stderr, (cut, result.output)


def test_a_missing_archive_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["backup", "verify", str(tmp_path / "nope.tar.gz")])
    assert result.exit_code == 2 and "no backup file" in result.stderr


@pytest.mark.parametrize("name", ["", "/abs", "data/../x", "data//x", "data/./x", "./data/x",
                                  "data\\x", "data/\x1b[31m", "other/x"])
def test_check_name_refuses_unsafe_names(name: str) -> None:
    with pytest.raises(DamagedBackupError):
        check_name(name)


def test_manifest_round_trips_through_its_parser(tmp_path: Path, data_dir: Path) -> None:
    archive = create(tmp_path)
    manifest = verify_backup(archive)
    assert parse_manifest(manifest.to_json()) == manifest


def test_config_snapshot_quotes_values_and_keeps_secrets_out(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SIGNAL_RAG_ACCESS__ALLOWED", "uuid-1, uuid-2")
    monkeypatch.setenv("SIGNAL_RAG_LLM__API_KEY", "sk-very-secret")
    monkeypatch.setenv("SIGNAL_RAG_NOT_A_SETTING", "maybe-secret")
    settings = load_settings(tmp_path / "secrets")
    plain = config_snapshot(settings, os.environ, include_secrets=False)
    text = b"".join(plain.values())
    assert b"sk-very-secret" not in text and b"maybe-secret" not in text
    assert PASSPHRASE.encode() not in text and b"uuid-1" not in text
    assert b"# SIGNAL_RAG_ACCESS__ALLOWED= (phone numbers or ids, not included)" in text
    assert b"# SIGNAL_RAG_LLM__API_KEY= (secret, not included)" in plain["settings.env"]
    full = config_snapshot(settings, os.environ, include_secrets=True)
    assert b"SIGNAL_RAG_ACCESS__ALLOWED='uuid-1, uuid-2'\n" in full["settings.env"]
    assert b"SIGNAL_RAG_LLM__API_KEY=sk-very-secret\n" in full["settings.env"]
    assert json.loads(full["settings.json"])["settings"]["SIGNAL_RAG_AUDIT__PEPPER"] == PEPPER


def test_an_io_error_is_one_line_and_exit_1(tmp_path: Path, data_dir: Path) -> None:
    (tmp_path / "not-a-dir").write_text("a file")
    result = runner.invoke(app, ["backup", "create", str(tmp_path / "not-a-dir" / "b.tar.gz")])
    assert result.exit_code == 1, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: ") and "Traceback" not in result.output
    assert f"writing {tmp_path / 'not-a-dir'} failed" in result.stderr


# --- review fixes: credentials, pepper source, lost+found, limits, space ------------------


def test_url_credentials_are_left_out_unless_secrets_are_included(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SIGNAL_RAG_LIMITS__STORAGE_URL", "redis://:hunter2-pw@redis:6379/0")
    monkeypatch.setenv("SIGNAL_RAG_LLM__BASE_URL",
                       "https://me:llm-pw@llm.example/v1?api_key=tok-123&region=eu")
    monkeypatch.setenv("SIGNAL_RAG_SIGNAL__ACCOUNT", "+15550001111")
    settings = load_settings(tmp_path / "secrets")
    plain = config_snapshot(settings, os.environ, include_secrets=False)
    text = b"".join(plain.values())
    for secret in (b"hunter2-pw", b"llm-pw", b"tok-123", b"+15550001111", b"me:"):
        assert secret not in text
    document = json.loads(plain["settings.json"])
    assert document["settings"]["SIGNAL_RAG_LIMITS__STORAGE_URL"] == "redis://redis:6379/0"
    assert document["settings"]["SIGNAL_RAG_LLM__BASE_URL"] == \
        "https://llm.example/v1?api_key=REDACTED&region=eu"
    assert {"SIGNAL_RAG_LIMITS__STORAGE_URL", "SIGNAL_RAG_LLM__BASE_URL"} <= set(
        document["url_credentials_removed"])
    assert "SIGNAL_RAG_SIGNAL__ACCOUNT" in document["personal_omitted"]
    assert b"SIGNAL_RAG_LIMITS__STORAGE_URL=redis://redis:6379/0\n" in plain["settings.env"]
    full = b"".join(config_snapshot(settings, os.environ, include_secrets=True).values())
    assert b"hunter2-pw" in full and b"tok-123" in full and b"+15550001111" in full


def test_a_generated_pepper_file_records_no_check_and_restore_says_so(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ask`/`chat` write .audit-pepper when no pepper is configured: a backup run without
    the bot's credentials must not record that pepper as the bot's."""
    monkeypatch.delenv("SIGNAL_RAG_AUDIT__PEPPER")
    archive = create(tmp_path)
    manifest = verify_backup(archive)
    assert manifest.pepper_check is None and manifest.pepper_source == "generated-file"
    monkeypatch.setenv("SIGNAL_RAG_AUDIT__PEPPER", PEPPER)
    result = restore(archive, tmp_path / "restored")
    assert result.exit_code == 0, result.output
    assert "note: this backup has no pepper check" in result.stderr
    assert "not the one the backup was made with" not in result.stderr
    configured = verify_backup(create(tmp_path, name="configured.tar.gz"))
    assert configured.pepper_source == "configured"
    assert configured.pepper_check == backup.pepper_check(PEPPER.encode())


def test_lost_and_found_is_neither_backed_up_nor_moved_nor_counted(
        tmp_path: Path, data_dir: Path) -> None:
    (data_dir / "lost+found").mkdir(mode=0o700)
    (data_dir / "lost+found" / "#1234").write_bytes(b"fsck leftovers")
    archive = create(tmp_path)
    assert not any("lost+found" in name for name in members(archive))
    volume = tmp_path / "volume"
    (volume / "lost+found").mkdir(parents=True, mode=0o700)
    (volume / "lost+found" / "#99").write_bytes(b"kept")
    result = restore(archive, volume)  # no --force: lost+found alone is an empty volume
    assert result.exit_code == 0, result.output
    assert (volume / "lost+found" / "#99").read_bytes() == b"kept"
    assert not list(volume.glob(".before-restore-*")), "nothing was moved aside"
    assert UserDirectory(volume / "users.sqlite3").is_activated(USER)


def test_restore_needs_tarfile_filters_and_says_which_python(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = create(tmp_path)
    monkeypatch.delattr(tarfile, "data_filter")
    target = tmp_path / "restored"
    result = restore(archive, target)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: restore needs Python 3.11.4 or newer")
    assert len(result.stderr.strip().splitlines()) == 1 and not target.exists()


def test_member_and_manifest_counts_are_capped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup_format, "MAX_MEMBERS", 3)
    files = [_file(f"data/f{i}", b"x") for i in range(5)]
    listed = write_tar(tmp_path / "listed.tar.gz",
                       _manifest([_entry(f"data/f{i}", b"x") for i in range(5)]), files)
    with pytest.raises(DamagedBackupError, match="lists more than 3 entries"):
        verify_backup(listed)
    flooded = write_tar(tmp_path / "flooded.tar.gz", _manifest([_entry("data/f0", b"x")]),
                        [files[0], *[_special(root, tarfile.DIRTYPE) for root in backup.ROOTS]])
    with pytest.raises(DamagedBackupError, match="more than 3 members"):
        verify_backup(flooded)


def test_tarfile_does_not_keep_every_member_in_memory(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = create(tmp_path)
    kept: list[int] = []
    real_next = tarfile.TarFile.next

    def recording_next(self: tarfile.TarFile) -> tarfile.TarInfo | None:
        kept.append(len(self.members))  # type: ignore[attr-defined]
        return real_next(self)

    monkeypatch.setattr(tarfile.TarFile, "next", recording_next)
    manifest = verify_backup(archive)
    assert len(kept) > len(manifest.files) and max(kept) <= 1


def test_the_space_check_adds_up_targets_on_one_filesystem_and_keeps_a_margin(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "elsewhere" / "index"
    index.parent.mkdir()
    shutil.move(data_dir / "index", index)
    monkeypatch.setenv("SIGNAL_RAG_INDEX_DIR", str(index))
    archive = create(tmp_path)
    need = verify_backup(archive).total_size()
    data_part = sum(e.size for e in verify_backup(archive).files
                    if e.path.startswith(("data/", "config/")))
    assert 0 < data_part < need
    total = 10 << 30
    free = [0]
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda _p: shutil._ntuple_diskusage(total, total - free[0], free[0]))  # type: ignore[attr-defined]
    target = tmp_path / "live"
    monkeypatch.setenv("SIGNAL_RAG_INDEX_DIR", str(tmp_path / "restored-index" / "index"))
    free[0] = need + backup.SPACE_MARGIN - 1  # each target alone fits; both do not
    result = restore(archive, target)
    assert result.exit_code == 1, result.output
    assert "not enough space for data and index" in result.stderr
    assert f"{need} bytes needed plus a margin of {backup.SPACE_MARGIN}" in result.stderr
    assert not target.exists() or not any(target.iterdir())
    free[0] = need + backup.SPACE_MARGIN
    assert restore(archive, target).exit_code == 0


def test_the_output_folder_is_private_and_a_read_error_names_the_file(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = create(tmp_path)
    assert stat.S_IMODE(archive.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600

    def unreadable(src: Path, dst: Path) -> None:
        raise PermissionError(13, "Permission denied", str(src))

    monkeypatch.setattr(shutil, "copyfile", unreadable)
    result = runner.invoke(app, ["backup", "create", str(tmp_path / "backups" / "2.tar.gz")])
    assert result.exit_code == 1, result.output
    assert f"error: cannot write the backup: reading {data_dir}/" in result.stderr
    assert "Permission denied" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
