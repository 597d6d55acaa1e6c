"""Session-wide check: no log line or audit event of the whole test run carries a test
phone number, passphrase, question text or API key (OBS-1, OBS-2).

Every log record any test creates is rendered with the product's own JSON formatter (what
an operator would see, after redaction) and every audit event is serialised; at the end
of the session the run fails if one of the sensitive test values appears in any of them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from agent.testing.signal_daemon import ALICE_NUMBER, BOB_NUMBER, BOT_NUMBER

SENSITIVE = (
    ALICE_NUMBER, BOB_NUMBER, BOT_NUMBER, "+15559876543",           # test phone numbers
    "sk-test-key", "sk-test-123", "sk-embed", "sk-proj-",            # test API keys
    "open sesame 42", "let me in please",                            # test passphrases
    "How often should I oil the bicycle chain",                     # a test question
)
PHONE_NUMBER = re.compile(r"\+1555\d{7}")
"""Every phone number the tests use is a +1555 number (the fake daemon's, the bot's)."""
_leaks: list[str] = []
_checked = [0]


def _forms(needle: str) -> set[str]:
    """A value as it may appear in output: itself, JSON-escaped, and Python's repr."""
    return {needle, json.dumps(needle)[1:-1], repr(needle)[1:-1]}


def secrets_in(output: bytes | str, extra: Iterable[str] = ()) -> list[str]:
    """The sensitive test values (and `extra` ones, e.g. a test's pepper or message texts)
    found in `output`: raw bytes a process wrote, a log file, a rendered record.

    One scanner for every check: the session-wide check below, the fault campaign's scan
    of every byte a `serve` process wrote, and the fuzzers' captured logs.
    """
    text = output.decode("utf-8", errors="replace") if isinstance(output, bytes) else output
    found = [needle for needle in (*SENSITIVE, *extra) if needle
             and any(form in text for form in _forms(needle))]
    found += sorted(set(PHONE_NUMBER.findall(text)) - set(found))
    return found


def _scan(kind: str, rendered: str) -> None:
    _checked[0] += 1
    for needle in secrets_in(rendered):
        _leaks.append(f"{kind}: {needle!r} in {rendered[:300]!r}")


def pytest_configure(config: pytest.Config) -> None:
    from agent.audit import JsonLinesAuditSink, MemoryAuditSink
    from agent.observability.logs import json_formatter

    formatter = json_formatter()
    original_handle = logging.Logger.handle

    def handle(self: logging.Logger, record: logging.LogRecord) -> Any:
        try:
            rendered = formatter.format(record)
        except Exception:  # a record the product could not render either
            rendered = ""
        _scan("log", rendered)
        return original_handle(self, record)

    logging.Logger.handle = handle  # type: ignore[method-assign]
    for sink in (JsonLinesAuditSink, MemoryAuditSink):
        original_emit = sink.emit

        def emit(self: Any, event: Mapping[str, Any], _emit: Any = original_emit) -> None:
            _scan("audit", json.dumps(event, default=str))
            _emit(self, event)

        sink.emit = emit  # type: ignore[method-assign]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_line(
        f"leak check: {_checked[0]} log records and audit events scanned, "
        f"{len(_leaks)} leaks")
    for leak in _leaks[:20]:
        terminalreporter.write_line(f"  LEAK {leak}", red=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _leaks and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
