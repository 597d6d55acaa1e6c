"""Crash safety of the inbox/outbox for real: `kill -9` at random points (SIG-2, RES-2).

A child process plays the bot: the daemon delivers N messages (and, after every restart,
delivers all of them again, so redelivery dedupe is exercised too), each is accepted,
claimed, answered with 1-3 parts through the store, and the parts go to a fake daemon
that appends each send to a log file and fsyncs it before returning — so the log is the
ground truth of what users received. Some sends fail transiently once and are retried.
The parent kills the child with SIGKILL at random moments, restarts it, and finally lets
it finish; then every message must be answered exactly once, with at most one duplicate
part per kill, and no message content left in the database.

With `threads` > 1 the child answers each sender in a thread of its own, as the bot's
SQLite pool does, so writes are group-committed (several in one transaction) and a kill
can land inside a group: it must keep all of the group's writes or none.

This file is also the child program: `python -m tests.integration.test_store_crash`.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from agent.store import InboxKey, InboxMessage, ReplyPart, Store

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = 500
SENDERS = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(4)]
KILLS = 12
# Each kill lands after the child has sent a random number of parts (0 = during start-up or
# recovery), plus a random slack of up to 20 ms so it can hit any statement, not only the
# one after a send. Counting progress rather than sleeping a random time keeps the kills
# inside the work whatever the machine's speed: 12 kills of at most 60 parts each (plus
# what the slack lets through) stay well below the ~1,000 parts there are to send.
MAX_PARTS_BEFORE_KILL = 60
MAX_KILL_SLACK_S = 0.02
PROGRESS_BOUND_S = 60.0  # a child that makes no progress for this long is hung
KILL_PHASE_BUDGET_S = 60.0  # then the final run; bounded by construction, not asserted


def message(i: int) -> tuple[str, int]:
    return SENDERS[i % len(SENDERS)], 1_700_000_000_000 + i


def expected_parts(timestamp: int) -> list[str]:
    return [f"answer {timestamp} part {part}" for part in range(1 + timestamp % 3)]


# --- the child: a minimal bot loop over the store --------------------------------------


def child_main(db_path: str, log_path: str, threads: int = 1) -> None:
    store = Store(db_path)
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    print("ready", flush=True)

    def deliver_outbox(sender: str | None = None) -> None:
        """Send what is due (only `sender`'s replies when given: one thread per sender)."""
        while due := [item for item in store.due_outbox(limit=1000)
                      if sender is None or item.key.sender_uuid == sender]:
            for item in due:  # one part at a time, each marked before the next is sent
                if item.id % 4 == 0 and item.attempts == 0:
                    store.mark_retry(item.id, time.time(), "TransientSendError")
                    continue
                recipient = item.recipient or "?"
                line = f"{recipient} {item.key.msg_timestamp} {item.part} {item.text}\n"
                os.write(log, line.encode())  # the daemon accepted the send...
                os.fsync(log)
                store.mark_sent(item.id, time.time_ns() // 1_000_000)  # ...and we record it

    def answer(claimed: InboxMessage, sender: str | None = None) -> None:
        assert claimed.payload is not None
        parts = [ReplyPart(text, recipient=claimed.key.sender_uuid)
                 for text in expected_parts(int(claimed.payload["ts"]))]
        store.record_reply(claimed.key, parts)
        deliver_outbox(sender)

    def receive(senders: list[str]) -> None:
        for i in range(MESSAGES):  # the daemon (re)delivers everything
            sender, timestamp = message(i)
            if sender not in senders:
                continue
            if store.accept(sender, timestamp, sender,
                            {"text": f"question {i}", "ts": timestamp}):
                fresh = store.claim(InboxKey(sender, timestamp))
                assert fresh is not None
                answer(fresh, sender if threads > 1 else None)

    deliver_outbox()  # recovery: replies queued before the crash
    for claimed in store.claim_pending():  # recovery: messages not answered yet
        answer(claimed)
    if threads == 1:
        receive(SENDERS)
    else:
        workers = [threading.Thread(target=receive, args=(SENDERS[n::threads],))
                   for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    deliver_outbox()
    store.close()
    print("done", flush=True)


# --- the parent: kill, restart, check --------------------------------------------------


def start_child(db_path: Path, log_path: Path, threads: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.test_store_crash", str(db_path),
         str(log_path), str(threads)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", "child did not start"
    return proc


def sent_lines(log_path: Path) -> int:
    return log_path.read_bytes().count(b"\n") if log_path.exists() else 0


def wait_for_sends(proc: subprocess.Popen[str], log_path: Path, parts: int,
                   context: str) -> None:
    """Return once the child has logged `parts` more sends, or has exited."""
    target = sent_lines(log_path) + parts
    deadline = time.monotonic() + PROGRESS_BOUND_S
    while sent_lines(log_path) < target and proc.poll() is None:
        if time.monotonic() > deadline:
            pytest.fail(f"the child made no progress for {PROGRESS_BOUND_S:.0f} s {context}")
        time.sleep(0.005)


@pytest.mark.parametrize("threads", [1, len(SENDERS)], ids=["one-thread", "group-commits"])
def test_kill_9_at_random_points_answers_every_message_once(tmp_path: Path,
                                                             threads: int) -> None:
    seed = int(os.environ.get("STORE_CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    context = f"(reproduce with STORE_CRASH_SEED={seed})"
    db_path, log_path = tmp_path / "bot.sqlite3", tmp_path / "sent.log"
    started = time.monotonic()

    kills = 0
    for _ in range(KILLS):
        if time.monotonic() - started > KILL_PHASE_BUDGET_S:  # a very slow machine
            break
        proc = start_child(db_path, log_path, threads)
        try:
            wait_for_sends(proc, log_path, rng.randint(0, MAX_PARTS_BEFORE_KILL), context)
            time.sleep(rng.uniform(0.0, MAX_KILL_SLACK_S))
            if proc.poll() is not None:  # finished before the kill: nothing left to crash
                break
            os.kill(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
            if returncode == 0:  # it finished between poll() and kill(): no crash to count
                break
            assert returncode == -signal.SIGKILL, context
            kills += 1
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()

    final = start_child(db_path, log_path, threads)
    try:
        # A bound against a hung child, not a speed limit: ~3,000 fsyncs on a busy shared
        # disk (~4 ms each) took more than the 10 s this was.
        out, _ = final.communicate(timeout=120)
    finally:
        if final.poll() is None:
            final.kill()
            final.wait()
    assert final.returncode == 0 and out.strip() == "done", context
    assert kills >= 3, f"only {kills} kills landed before the work was done {context}"

    # What users received: every part of every answer, duplicates only from kills.
    sent = Counter(log_path.read_text().splitlines())
    expected = Counter(
        f"{sender} {timestamp} {part} {text}"
        for sender, timestamp in map(message, range(MESSAGES))
        for part, text in enumerate(expected_parts(timestamp)))
    assert set(sent) == set(expected), f"missing or unexpected sends {context}"
    duplicates = sent - expected
    print(f"{kills} kills, {sum(duplicates.values())} duplicate parts {context}")
    # One part per chat being sent to at the kill: one per sending thread.
    assert sum(duplicates.values()) <= kills * threads, \
        f"{duplicates} after {kills} kills {context}"

    # What the database keeps: everything closed, no content left.
    db = sqlite3.connect(db_path)
    inbox = db.execute("SELECT status, COUNT(*), COUNT(payload) FROM inbox "
                       "GROUP BY status").fetchall()
    outbox = db.execute("SELECT status, COUNT(*), COUNT(text) FROM outbox "
                        "GROUP BY status").fetchall()
    db.close()
    assert inbox == [("answered", MESSAGES, 0)], context
    assert outbox == [("sent", sum(expected.values()), 0)], context


if __name__ == "__main__":
    child_main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
