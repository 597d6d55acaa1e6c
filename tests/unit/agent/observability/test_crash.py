"""The crash line names a command, a module and error classes, never a value."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from agent.cli import command_path
from agent.observability.crash import (
    EXIT_INTERNAL,
    known_secrets,
    redacted_traceback,
    report_crash,
    summary,
)


def test_the_command_path_keeps_only_command_names() -> None:
    assert command_path(["ask", "my secret question +15550001234"]) == "signal-rag ask"
    assert command_path(["index", "verify"]) == "signal-rag index verify"
    assert command_path(["--help"]) == "signal-rag"
    assert command_path(["backup", "create", "/tmp/secret-path"]) == "signal-rag backup create"


def _raise_chained() -> None:
    try:
        raise ConnectionRefusedError("connect to +15550001234 with sk-abcdefghijklmnop1234")
    except ConnectionRefusedError as exc:
        raise RuntimeError("wrapped: passphrase hunter2hunter2") from exc


def test_the_summary_names_the_classes_and_the_module_never_the_message() -> None:
    with pytest.raises(RuntimeError) as caught:
        _raise_chained()
    line = summary(caught.value, "signal-rag serve")
    assert line == ("internal error in signal-rag serve "
                    "(tests.unit.agent.observability.test_crash): "
                    "RuntimeError from ConnectionRefusedError")


def test_known_secrets_come_from_the_environment_and_the_secrets_dir(tmp_path: Path) -> None:
    (tmp_path / "signal_rag_audit__pepper").write_text("pepper-from-a-file\n")
    (tmp_path / "other_program_key").write_text("not ours")
    found = known_secrets({"SIGNAL_RAG_ACCESS__PASSPHRASE": "hunter2hunter2",
                           "SIGNAL_RAG_LOG_LEVEL": "INFO", "OPENAI_API_KEY": "key-123456"},
                          tmp_path)
    assert set(found) == {"hunter2hunter2", "key-123456", "pepper-from-a-file"}


def test_debug_mode_prints_the_traceback_with_secrets_masked(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SIGNAL_RAG_ACCESS__PASSPHRASE", "hunter2hunter2")
    monkeypatch.setenv("SIGNAL_RAG_SECRETS_DIR", str(tmp_path))
    with pytest.raises(RuntimeError) as caught:
        _raise_chained()
    text = "\n".join(redacted_traceback(caught.value))
    assert "Traceback" in text and "_raise_chained" in text
    for value in ("hunter2hunter2", "+15550001234", "sk-abcdefghijklmnop1234"):
        assert value not in text
    monkeypatch.setenv("SIGNAL_RAG_DEBUG", "1")
    out = io.StringIO()
    assert report_crash(caught.value, "signal-rag ask", out) == EXIT_INTERNAL
    assert out.getvalue().startswith("error: internal error in signal-rag ask (")
    assert "hunter2hunter2" not in out.getvalue()
