"""Run `signal-rag` with its wall clock shifted: `python -m tests.integration.faults.shifted_clock
OFFSET_FILE ARGS...`. The fault campaign's clock jump (docs/reliability.md).

The file holds an offset in seconds (float; missing or unreadable = unchanged), read at
most every 50 ms, so a test jumps the clock of a running `serve` by rewriting it, as an
NTP step or a VM resume would. Only the wall clock moves (`time.time`, `time.time_ns`,
which the bot's stores, alerts, audit and rate limits read); `time.monotonic`, which its
timeouts, backoffs and watchdogs use, stays steady as it does on a real machine.

Why not libfaketime: Debian's 0.9.10 makes CPython 3.11's `time.sleep` fail with EINVAL
(it intercepts clock_nanosleep) and moves the monotonic clock with the file's offset, even
backwards, which no real machine does. The shift is installed before the bot is imported,
so every `clock=time.time` default picks it up; C code (SQLite, `datetime.now`) keeps the
real clock.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

_real_time, _real_time_ns, _monotonic = time.time, time.time_ns, time.monotonic
_state = {"offset": 0.0, "read_at": float("-inf")}


def offset(path: Path) -> float:
    now = _monotonic()
    if now - _state["read_at"] >= 0.05:
        _state["read_at"] = now
        with contextlib.suppress(OSError, ValueError):
            _state["offset"] = float(path.read_text() or 0)
    return _state["offset"]


def install(path: Path) -> None:
    time.time = lambda: _real_time() + offset(path)
    time.time_ns = lambda: _real_time_ns() + int(offset(path) * 1e9)


if __name__ == "__main__":
    install(Path(sys.argv[1]))
    from agent.cli import main

    sys.argv = ["signal-rag", *sys.argv[2:]]
    main()
