"""`signal-rag backup` against a real `signal-rag serve` process and the daemon simulator.

A backup taken while the bot answers, restored into a fresh data dir, holds every answered
message, activated user, conversation thread and audit line that existed when it started,
and a verified index; a bot started on the restored dir knows its users and its inbox.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.testing.openai_server import CHAT_PATH, FakeOpenAIServer, Reply
from agent.testing.ports import free_port
from agent.testing.signal_daemon import (
    BOB_UUID,
    BOT_NUMBER,
    BOT_UUID,
    FakeSignalDaemon,
    direct_message,
)
from tests.integration.conftest import EXAMPLES
from tests.integration.test_serve_process import CLI, answers, start_serve, stop, wait_until

pytestmark = pytest.mark.slow

PASSPHRASE = "let me in please"
PEPPER = "backup-test-pepper-0123456789abcdef"
ANSWER = "Exit code 3 means the index is missing or damaged [1]."
BOB = {"source_uuid": BOB_UUID, "source_number": None}


@pytest.fixture
def model() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(embedding_dim=32, default=Reply(ANSWER)) as server:
        yield server


@pytest.fixture
def env(tmp_path: Path, model: FakeOpenAIServer, sim: FakeSignalDaemon) -> dict[str, str]:
    (tmp_path / "secrets").mkdir()
    values = {k: v for k, v in os.environ.items()
              if not k.startswith("SIGNAL_RAG_") and k != "OPENAI_API_KEY"}
    values.update(
        SIGNAL_RAG_DATA_DIR=str(tmp_path / "data"),
        SIGNAL_RAG_SECRETS_DIR=str(tmp_path / "secrets"), SIGNAL_RAG_LOG_LEVEL="INFO",
        SIGNAL_RAG_EMBEDDINGS__PROVIDER="openai", SIGNAL_RAG_EMBEDDINGS__MODEL="embed-test",
        SIGNAL_RAG_LLM__BASE_URL=model.base_url, SIGNAL_RAG_LLM__MODEL="chat-test",
        SIGNAL_RAG_LLM__API_KEY="sk-test", SIGNAL_RAG_RETRIEVAL__MIN_SIMILARITY="-1",
        SIGNAL_RAG_SIGNAL__URL=sim.http_url, SIGNAL_RAG_SIGNAL__ACCOUNT=BOT_NUMBER,
        SIGNAL_RAG_SIGNAL__BOT_UUID=BOT_UUID, SIGNAL_RAG_ACCESS__PASSPHRASE=PASSPHRASE,
        SIGNAL_RAG_HEALTH__ADDR=f"127.0.0.1:{free_port()}", SIGNAL_RAG_AUDIT__PEPPER=PEPPER)
    result = cli(values, "ingest", str(EXAMPLES))
    assert result.returncode == 0, result.stderr
    return values


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True,
                          timeout=180, check=False)


def rows(database: Path, sql: str) -> set[tuple[object, ...]]:
    """Read a live database the way any other process would (read-only)."""
    db = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        return set(db.execute(sql).fetchall())
    finally:
        db.close()


def state(data: Path) -> dict[str, set[tuple[object, ...]]]:
    return {
        "closed messages": rows(data / "inbox.sqlite3",
                                "SELECT sender_uuid, msg_timestamp, status FROM inbox "
                                "WHERE status IN ('answered', 'ignored')"),
        "users": rows(data / "users.sqlite3", "SELECT user FROM activated"),
        "threads": rows(data / "memory.sqlite3", "SELECT DISTINCT thread_id FROM checkpoints"),
        "sent parts": rows(data / "inbox.sqlite3",
                           "SELECT sender_uuid, msg_timestamp, part FROM outbox "
                           "WHERE status = 'sent'"),
    }


def audit_lines(data: Path) -> list[str]:
    return (data / "audit.jsonl").read_text(encoding="utf-8").splitlines()


def ask(sim: FakeSignalDaemon, text: str, count: int, **sender: object) -> dict[str, object]:
    """Deliver a message and wait until the bot has sent `count` messages in all."""
    message = direct_message(text, **sender)
    sim.deliver(message)
    wait_until(lambda: len(answers(sim)) >= count, timeout=60)
    return message


def test_backup_of_a_running_bot_restores_every_answer_user_thread_and_audit_line(
        env: dict[str, str], sim: FakeSignalDaemon, model: FakeOpenAIServer,
        tmp_path: Path) -> None:
    data = Path(env["SIGNAL_RAG_DATA_DIR"])
    archive = tmp_path / "backups" / "signal-rag.tar.gz"
    process = start_serve(env, tmp_path / "serve.log")
    try:
        ask(sim, PASSPHRASE, 1)
        first = ask(sim, "What does exit code 3 mean?", 2)
        ask(sim, PASSPHRASE, 3, **BOB)
        ask(sim, "Where is the data directory?", 4, **BOB)
        ask(sim, "And exit code 2?", 5)
        wait_until(lambda: len(audit_lines(data)) >= 3)
        before, audit_before = state(data), audit_lines(data)
        assert len(before["users"]) == 2 and len(before["threads"]) == 2, before
        assert len(before["closed messages"]) == 5, before

        backup = subprocess.Popen([*CLI, "backup", "create", str(archive)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ask(sim, "A question while the backup runs?", 6, **BOB)  # the bot keeps answering
        out, err = backup.communicate(timeout=180)
        assert backup.returncode == 0, err
        assert out.startswith(f"Backup written: {archive}"), out
        ask(sim, "One after the backup?", 7)
        assert sum(text.startswith(ANSWER) for text in answers(sim)) == 5
        assert process.poll() is None
    finally:
        stop(process)
    assert process.returncode == 0
    assert (archive.stat().st_mode & 0o777) == 0o600

    verified = cli(env, "backup", "verify", str(archive))
    assert verified.returncode == 0 and verified.stdout.startswith("Backup OK:"), verified

    restored_dir = tmp_path / "restored"
    restored_env = {**env, "SIGNAL_RAG_DATA_DIR": str(restored_dir),
                    "SIGNAL_RAG_HEALTH__ADDR": f"127.0.0.1:{free_port()}"}
    result = cli(restored_env, "backup", "restore", str(archive))
    assert result.returncode == 0, result.stderr
    assert f"Restored data to {restored_dir}" in result.stdout
    assert "the configured pepper is the backed-up bot's" in result.stderr

    after = state(restored_dir)
    for kind, before_rows in before.items():
        assert before_rows <= after[kind], f"{kind} lost: {before_rows - after[kind]}"
    restored_audit = audit_lines(restored_dir)
    assert restored_audit[:len(audit_before)] == audit_before, "audit lines lost or changed"
    assert restored_audit == audit_lines(data)[:len(restored_audit)], "a prefix, nothing torn"
    assert all(json.loads(line) for line in restored_audit)
    verify = cli(restored_env, "index", "verify")
    assert verify.returncode == 0 and verify.stdout.startswith("Index OK"), verify.stderr
    settings = json.loads((restored_dir / "restored-config" / "settings.json").read_text())
    assert settings["settings"]["SIGNAL_RAG_LLM__MODEL"] == "chat-test"
    assert PASSPHRASE not in json.dumps(settings) and PEPPER not in json.dumps(settings)
    assert BOT_NUMBER not in json.dumps(settings), "the account number only when asked"

    # A bot on the restored dir knows its users (no passphrase again) and its inbox (a
    # redelivered, already answered message is not answered twice).
    sent_before = len(answers(sim))
    chats_before = model.count(CHAT_PATH)
    process = start_serve(restored_env, tmp_path / "restored-serve.log")
    try:
        sim.deliver(first)  # redelivery of an answered message: ignored
        ask(sim, "Back after the restore?", sent_before + 1)
        refused = cli(restored_env, "backup", "restore", str(archive), "--force")
        assert refused.returncode == 2 and "running process" in refused.stderr, refused
    finally:
        stop(process)
    again = cli(restored_env, "backup", "restore", "--force", str(archive))
    assert again.returncode == 0, again.stderr
    assert f"(previous state kept at {restored_dir}/.before-restore-" in again.stdout
    new = answers(sim)[sent_before:]
    assert len(new) == 1 and new[0].startswith(ANSWER), "one answer, from the model: the " \
                                                        "restored bot knew the user"
    assert model.count(CHAT_PATH) == chats_before + 1
    log = (tmp_path / "serve.log").read_text() + (tmp_path / "restored-serve.log").read_text()
    assert PASSPHRASE not in log and "What does exit code 3 mean?" not in log


NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user (nobody) needs root")
def test_restore_as_the_bots_user_under_a_root_owned_parent(tmp_path: Path) -> None:
    """`/var/lib` belongs to root and the bot's user owns only `/var/lib/signal-rag`: the
    restore (docs/upgrade.md's rollback) must work with write access to the target alone,
    and leave the volume's root-owned `lost+found` where it is.

    The restore runs in a forked child that drops to uid/gid 65534 (nobody): exec'ing the
    venv's interpreter as nobody is not possible here (it lives under /root)."""
    from agent import backup
    from agent.users import UserDirectory
    from knowledge import index as _index  # noqa: F401  imported before dropping root

    source = tmp_path / "source"
    source.mkdir()
    users = UserDirectory(source / "users.sqlite3")
    users.activate("hmac-of-a-user")
    users.close()
    (source / "audit.jsonl").write_text('{"route":"answered"}\n')
    archive = tmp_path / "b.tar.gz"
    backup.create_backup(archive, data_dir=source, index_dir=source / "index")

    base = Path(tempfile.mkdtemp(prefix="signal-rag-nobody-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        lib = base / "var-lib"  # root-owned 0755: not writable by the bot's user
        lib.mkdir(mode=0o755)
        target = lib / "signal-rag"
        target.mkdir(mode=0o700)
        (target / "old.txt").write_text("state before the rollback")
        (target / "lost+found").mkdir(mode=0o700)  # root's, as mkfs.ext4 makes it
        for path in (target, target / "old.txt"):
            os.chown(path, NOBODY, NOBODY)
        mine = base / "b.tar.gz"
        shutil.copy(archive, mine)
        os.chown(mine, NOBODY, NOBODY)

        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 70
            try:
                os.close(read)
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                report = backup.restore_backup(mine, data_dir=target,
                                               index_dir=target / "index", force=True)
                os.write(write, f"ok {report.restored[0][2]}".encode())
                code = 0
            except BaseException as exc:  # reported to the parent, which fails the test
                os.write(write, f"{type(exc).__name__}: {exc}".encode())
            finally:
                os._exit(code)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            said = pipe.read().decode()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, said
        aside = Path(said.split(" ", 1)[1])
        assert aside.parent == target and aside.name.startswith(".before-restore-")
        assert (aside / "old.txt").read_text() == "state before the rollback"
        assert UserDirectory(target / "users.sqlite3").is_activated("hmac-of-a-user")
        assert (target / "users.sqlite3").stat().st_uid == NOBODY
        assert (target / "lost+found").stat().st_uid == 0, "lost+found stays in place"
        assert sorted(p.name for p in lib.iterdir()) == ["signal-rag"], "nothing beside it"
    finally:
        shutil.rmtree(base, ignore_errors=True)
