"""Fault campaign, the bot's own state (issue 11): the data directory's disk full, the
inbox, audit file and index damaged while the bot is stopped, `kill -9` during an ingest,
and the wall clock jumping; `serve` as a real process (tests/integration/campaign.py).

The same checks as for the dependencies: no exit and no crash loop, every message
answered exactly once (or apologised for), /readyz and alerts true to the state, recovery
without a restart, and every byte written scanned for secrets and message texts.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.observability.alerts import (
    DATA_DIR_UNWRITABLE,
    DISK_SPACE_LOW,
    INDEX_CORRUPT,
    STORE_DAMAGED,
)
from agent.testing.openai_server import EMBEDDINGS_PATH, FakeOpenAIServer, Reply, Slow
from agent.testing.signal_daemon import NETWORK_FAILURE
from tests.integration.conftest import EXAMPLES
from tests.integration.faults.campaign import (
    CLI,
    ROOT,
    Bot,
    Conversation,
    Deps,
    finish,
    python_with_clock_offset,
    wait_for,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]

ANSWER = "Exit code 3 means the index is missing or damaged [1]."
DAY = 86_400


def start_answering(bot: Bot, deps: Deps, chat: Conversation) -> None:
    deps.model.default = Reply(ANSWER)
    bot.start()
    wait_for(bot.ready, "ready")
    chat.activate()
    chat.ask()
    chat.wait_all_answered()


# --- disk full ----------------------------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(where: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of `size_mb` at `where` (root and mount permission needed, else skip)."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("disk full needs root to mount a small tmpfs (not root here)")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700",
                             "tmpfs", str(where)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path) -> None:
    """Write zeros to `path` until the file system is full."""
    block = b"\0" * (1 << 16)
    with path.open("wb", buffering=0) as handle:
        while True:
            try:
                handle.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                block = block[: len(block) // 2]
                if not block:
                    return


def test_disk_full_under_the_data_directory(deps: Deps, bot: Bot, chat: Conversation,
                                           tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "small", 32) as small:
        shutil.copytree(bot.data_dir, small / "data")
        bot.env["SIGNAL_RAG_DATA_DIR"] = str(small / "data")
        bot.env["SIGNAL_RAG_ALERTS__MIN_FREE_DISK_MB"] = "4"
        start_answering(bot, deps, chat)
        fill(small / "data" / "filler")
        chat.ask()
        chat.ask()
        wait_for(lambda: "data_dir" in bot.failing(), "/readyz: the data directory")
        assert "disk_full" in bot.checks()["data_dir"]["detail"]
        wait_for(lambda: {DISK_SPACE_LOW, DATA_DIR_UNWRITABLE} <= bot.alerts(),
                 f"disk_space_low and {DATA_DIR_UNWRITABLE} fired")
        assert bot.dependency_up("data_dir") == 0
        bot.assert_alive()
        (small / "data" / "filler").unlink()
        wait_for(bot.ready, "ready again once space is free")
        chat.wait_all_answered()
        chat.ask()
        chat.wait_all_answered()
        wait_for(lambda: {DISK_SPACE_LOW, DATA_DIR_UNWRITABLE} <= bot.alerts("resolved"),
                 "both alerts resolved")
        finish(bot, chat)


# --- state damaged while stopped ----------------------------------------------------------


def damage_stores(data: Path) -> None:
    """The inbox and the user directory: a SQLite header, then garbage."""
    for name in ("inbox.sqlite3", "users.sqlite3"):
        (data / name).write_bytes(b"SQLite format 3\0" + os.urandom(4096))
        for extra in ("-wal", "-shm"):
            (data / (name + extra)).unlink(missing_ok=True)


TORN_AUDIT_LINE = b'{"route": "answ\xff\xfe\x00 half a line'


def damage_audit(data: Path) -> None:
    with (data / "audit.jsonl").open("ab") as handle:
        handle.write(TORN_AUDIT_LINE)


def damage_index(data: Path) -> None:
    shutil.rmtree(data / "index.last-good", ignore_errors=True)
    dense = data / "index" / "dense.faiss"
    raw = bytearray(dense.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    dense.write_bytes(bytes(raw))


def test_inbox_audit_and_index_damaged_while_stopped(deps: Deps, bot: Bot,
                                                     chat: Conversation) -> None:
    """One restart for the four damages (each start costs seconds): the bot comes up,
    keeps the damaged inbox and user directory aside and alerts, appends to the damaged
    audit file after its half line, answers from the fallback without an index, and is
    ready again after `ingest --rebuild` without a restart."""
    start_answering(bot, deps, chat)
    assert bot.stop() == 0
    for damage in (damage_stores, damage_audit, damage_index):
        damage(bot.data_dir)
    bot.start()
    bot.assert_alive()
    for name in ("inbox.sqlite3", "users.sqlite3"):
        assert list(bot.data_dir.glob(f"{name}.damaged-*")), f"{name} kept aside"
    assert {e["file"] for e in bot.events("store_damaged")} == {"inbox.sqlite3",
                                                                 "users.sqlite3"}
    wait_for(lambda: bot.alert_count(STORE_DAMAGED) == 2, f"{STORE_DAMAGED} fired per file")
    damaged = re.findall(r'^signal_rag_stores_damaged_total\{[^}]*file="([^"]+)"[^}]*\} 1\.0$',
                         bot.metrics(), re.M)
    assert sorted(damaged) == ["inbox.sqlite3", "users.sqlite3"], damaged
    wait_for(lambda: "index" in bot.failing(), "/readyz: no verified index")
    wait_for(lambda: INDEX_CORRUPT in bot.alerts(), "index_corrupt fired")
    chat.activate()  # the fresh user directory knows no one: activate again
    chat.ask()  # answered from the documented fallback while the index is damaged
    chat.wait_all_answered()
    rebuild = subprocess.run([*CLI, "ingest", str(EXAMPLES), "--rebuild"], env=bot.env,
                             cwd=ROOT, capture_output=True, timeout=180, check=False)
    assert rebuild.returncode == 0, rebuild.stderr[-2000:]
    wait_for(bot.ready, "ready without a restart")
    wait_for(lambda: INDEX_CORRUPT in bot.alerts("resolved"), "index_corrupt resolved")
    chat.ask()
    chat.wait_all_answered()
    lines = (bot.data_dir / "audit.jsonl").read_bytes().splitlines()
    torn = lines.index(TORN_AUDIT_LINE)
    assert [json.loads(line)["route"] for line in lines[torn + 1:]], (
        "events after the torn line are whole and readable, none glued to it")
    finish(bot, chat, starts=2)


# --- kill -9 during an ingest -------------------------------------------------------------


def test_kill_9_during_ingest_keeps_the_served_index(deps: Deps, bot: Bot,
                                                    chat: Conversation, tmp_path: Path) -> None:
    start_answering(bot, deps, chat)
    docs = tmp_path / "docs"
    shutil.copytree(EXAMPLES, docs)
    (docs / "extra.md").write_text("# Extra\n\nExit code 7 means the disk is full.\n")
    # The killed ingest embeds through its own endpoint, which holds every request: the
    # kill lands while it is embedding (the bot's probes use the other one).
    bot.also_scan.append(tmp_path / "ingest.out")
    with FakeOpenAIServer(embedding_dim=32, default=Slow(60)) as stuck, \
            (tmp_path / "ingest.out").open("wb") as out:
        env = {**bot.env, "SIGNAL_RAG_EMBEDDINGS__BASE_URL": stuck.base_url}
        ingest = subprocess.Popen([*CLI, "ingest", str(docs), "--rebuild"], env=env,
                                  cwd=ROOT, stdout=out, stderr=out)
        try:
            wait_for(lambda: stuck.count(EMBEDDINGS_PATH) > 0, "the ingest is embedding")
            ingest.send_signal(signal.SIGKILL)
            assert ingest.wait(timeout=30) == -signal.SIGKILL
        finally:
            if ingest.poll() is None:
                ingest.kill()
    assert bot.ready(), "the served index is untouched"
    chat.ask()
    chat.wait_all_answered()
    loaded = len(bot.events("index_loaded"))
    again = subprocess.run([*CLI, "ingest", str(docs)], env=bot.env, cwd=ROOT,
                           capture_output=True, timeout=180, check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    wait_for(lambda: len(bot.events("index_loaded")) > loaded, "the new index is served")
    assert bot.ready()
    finish(bot, chat)


# --- the wall clock jumps -----------------------------------------------------------------


def test_wall_clock_jumps_forward_and_back(deps: Deps, bot: Bot, chat: Conversation,
                                          tmp_path: Path) -> None:
    clock = tmp_path / "clock-offset"
    clock.write_text("0")
    bot.launcher = python_with_clock_offset(clock)
    start_answering(bot, deps, chat)
    clock.write_text(str(2 * DAY))  # an NTP step forward
    chat.ask()
    chat.wait_all_answered()
    deps.sim.fail_next("send", NETWORK_FAILURE)  # a send to retry...
    chat.failed_sends += 1
    chat.ask()
    wait_for(lambda: len(chat.replies()) >= chat.delivered, "the failing send was tried")
    clock.write_text(str(-DAY))  # ...when the clock steps back three days
    chat.wait_all_answered(timeout=45)
    chat.ask()
    chat.wait_all_answered()
    clock.write_text("0")
    chat.ask()
    chat.wait_all_answered()
    assert bot.ready()
    finish(bot, chat)
