"""A `signal-rag` process that crashes inside prints one line and exits 4, never a dump.

The fault is injected into a real process: a small launcher replaces one function of the
`ask` command with one that fails holding the secrets in its locals and its message, then
runs the real entry point (`agent.cli.main`) with the real command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.observability.crash import EXIT_INTERNAL

PASSPHRASE = "crash-test passphrase 7f3a"
PEPPER = "crash-test-pepper-0123456789abcdef"
API_KEY = "sk-crashtest0123456789abcdefghij"
PHONE = "+15550009876"
QUESTION = "What does exit code 3 mean for my secret plans?"

LAUNCHER = textwrap.dedent("""
    import sys
    import agent.cli

    question, note = sys.argv[1], sys.argv[2]

    def broken_assistant(settings):
        passphrase = settings.access.passphrase.get_secret_value()
        pepper = settings.audit.pepper.get_secret_value()
        raise RuntimeError(f"boom {passphrase} {pepper} {note}")

    agent.cli._assistant = broken_assistant
    sys.argv = ["signal-rag", "ask", question]
    agent.cli.main()
""")


@pytest.fixture
def env(tmp_path: Path, sample_data_dir: Path) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items()
              if not k.startswith("SIGNAL_RAG_") and k != "OPENAI_API_KEY"}
    data = tmp_path / "data"
    data.mkdir()
    (data / "index").symlink_to(sample_data_dir / "index")
    values.update(SIGNAL_RAG_DATA_DIR=str(data), SIGNAL_RAG_SECRETS_DIR=str(tmp_path),
                  SIGNAL_RAG_ACCESS__PASSPHRASE=PASSPHRASE, SIGNAL_RAG_AUDIT__PEPPER=PEPPER,
                  SIGNAL_RAG_LLM__API_KEY=API_KEY, SIGNAL_RAG_SIGNAL__ACCOUNT=PHONE,
                  SIGNAL_RAG_LOG__FILE_ENABLED="false")
    return values


def crash(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", LAUNCHER, QUESTION, f"call {PHONE}"],
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def assert_no_secrets(output: str) -> None:
    for value in (PASSPHRASE, PEPPER, API_KEY, PHONE, QUESTION, "secret plans"):
        assert value not in output, f"leaked {value[:6]}…"
    assert "passphrase=" not in output and "pepper =" not in output, "no locals"


def test_a_crash_is_one_line_with_the_part_and_the_class_and_exit_4(
        env: dict[str, str]) -> None:
    result = crash(env)
    assert result.returncode == EXIT_INTERNAL == 4
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[:2000]
    assert lines[0].startswith("error: internal error in signal-rag ask (")
    assert "RuntimeError" in lines[0] and "SIGNAL_RAG_DEBUG=1" in lines[0]
    assert "boom" not in lines[0], "never the error's message"
    assert_no_secrets(result.stdout + result.stderr)


def test_the_debug_switch_shows_the_traceback_redacted_without_locals(
        env: dict[str, str]) -> None:
    result = crash({**env, "SIGNAL_RAG_DEBUG": "1"})
    assert result.returncode == EXIT_INTERNAL
    assert "Traceback (most recent call last)" in result.stderr
    assert "broken_assistant" in result.stderr and "RuntimeError: boom" in result.stderr
    assert "[secret]" in result.stderr and "[phone]" in result.stderr
    for value in (PASSPHRASE, PEPPER, API_KEY, PHONE):
        assert value not in result.stdout + result.stderr


def test_a_usage_error_keeps_its_own_exit_code(env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "agent.cli", "ingest"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_ingest_of_a_missing_folder_is_a_clear_error_not_a_crash(
        env: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "agent.cli", "ingest",
                             str(tmp_path / "nowhere")], env=env, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 2, result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
