"""Logs are JSON lines with content removed, identities hashed and control characters
escaped, whatever the field and whoever logs (OBS-1)."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from agent.observability.logs import REDACTED, REDACTOR, Redactor, configure_logging

PHONE = "+4915112345678"
UUID = "a1b2c3d4-0000-4000-8000-123456789abc"
API_KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz012345"
HOSTILE = [
    f"call {PHONE} now",
    f"user {UUID} said hi",
    f"key={API_KEY}",
    "Authorization: Bearer abcdefghijklmnop.qrstuv",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "xoxb-1234567890-abcdefghij",
    "AKIAABCDEFGHIJKLMNOP",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "-----BEGIN RSA PRIVATE KEY-----",
    'line one\n{"level":"info","event":"forged"}',
    "carriage\rreturn",
    "\x1b[31mred\x1b[0m and \x1b]0;title\x07",
    "bidi \u202eevil\u202c",
]


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    yield stream
    REDACTOR.hasher = None
    configure_logging("WARNING")


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def assert_clean(output: str) -> None:
    for secret in (PHONE, UUID, API_KEY, "abcdefghijklmnop.qrstuv", "ghp_abc", "xoxb-",
                   "AKIAABCD", "eyJhbGci", "PRIVATE KEY", "\x1b", "\u202e"):
        assert secret not in output, secret
    assert all(line.startswith("{") for line in output.splitlines()), "no forged lines"


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_in_extra_fields_and_in_the_event_are_cleaned(
        logged: io.StringIO, value: str) -> None:
    logging.getLogger("agent.test").warning(f"event {value}", extra={
        "detail": value, "nested": {"inner": [value, {"deep": value}]}, "kind": (value,)})
    structlog.get_logger("agent.test").warning("structlog_event", detail=value, other=[value])
    output = logged.getvalue()
    assert_clean(output)
    assert len(lines(logged)) == 2


def test_content_fields_are_dropped_by_name_at_any_depth(logged: io.StringIO) -> None:
    logging.getLogger("agent.test").error("reply_failed", extra={
        "text": "what is my diagnosis", "question": "q?", "reply": "a.",
        "passphrase": "open sesame", "context": {"answer": "secret answer", "count": 3}})
    (record,) = lines(logged)
    assert record["text"] == record["question"] == record["reply"] == REDACTED
    assert record["passphrase"] == REDACTED
    assert record["context"] == {"answer": REDACTED, "count": 3}
    assert "diagnosis" not in logged.getvalue()


def test_uuids_become_their_hmac_once_a_hasher_is_set(logged: io.StringIO) -> None:
    REDACTOR.hasher = lambda uuid: f"hmac-of-{uuid[:4]}-0123456789abcdef"
    logging.getLogger("agent.test").info("user_seen", extra={"who": UUID})
    (record,) = lines(logged)
    assert record["who"] == "user:hmac-of-a1b2-012"  # first 16 characters
    REDACTOR.hasher = None


def test_library_exceptions_are_logged_redacted(logged: io.StringIO) -> None:
    try:
        raise RuntimeError(f"upstream said: {API_KEY} for {PHONE}")
    except RuntimeError:
        logging.getLogger("some.library").exception("call_failed")
    (record,) = lines(logged)
    assert "RuntimeError" in str(record["exception"])
    assert_clean(logged.getvalue())


def test_noisy_libraries_are_capped_at_warning(logged: io.StringIO) -> None:
    logging.getLogger("httpx").info("HTTP Request: POST http://x/?token=abc")
    logging.getLogger("langgraph").info("retrying after error with text")
    assert logged.getvalue() == ""


def test_the_log_file_is_private_and_rotates(tmp_path: Path) -> None:
    file = tmp_path / "logs" / "bot.log"
    configure_logging("INFO", stream=io.StringIO(), file=file, max_bytes=2048, backups=2)
    try:
        log = logging.getLogger("agent.test")
        for i in range(100):
            log.info("tick", extra={"i": i, "padding": "x" * 50})
    finally:
        configure_logging("WARNING")
    assert stat.S_IMODE(os.stat(file).st_mode) == 0o600
    rotated = sorted(p.name for p in file.parent.iterdir())
    assert rotated == ["bot.log", "bot.log.1", "bot.log.2"], "two backups kept"
    assert stat.S_IMODE(os.stat(file.parent / "bot.log.1").st_mode) == 0o600
    last = json.loads(file.read_text(encoding="utf-8").splitlines()[-1])
    assert last["event"] == "tick" and last["i"] == 99


@given(st.text())
def test_clean_never_raises_and_leaves_no_control_characters(value: str) -> None:
    cleaned = Redactor().clean(value)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in cleaned)
    assert "\u2028" not in cleaned and "\u202e" not in cleaned


def test_a_full_disk_drops_lines_from_the_file_without_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With the disk full every line failed to reach the file and the logging module
    printed a traceback to stderr for each; now the file skips them and counts."""
    import errno

    from agent.observability.logs import PrivateRotatingFileHandler

    class FullDisk(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    handler = PrivateRotatingFileHandler(tmp_path / "bot.log", delay=True)
    handler.stream = FullDisk()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "disk_full_line", None, None)
    handler.emit(record)
    handler.emit(record)
    assert handler.failed_writes == 2
    assert capsys.readouterr().err == ""
    other = logging.LogRecord("x", logging.INFO, __file__, 1, "%d", ("not a number",), None)
    handler.stream = io.StringIO()
    handler.emit(other)  # any other error still reports as the logging module does
    assert "Traceback" in capsys.readouterr().err
    handler.stream = None
