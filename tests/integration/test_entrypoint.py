"""docker/entrypoint.sh run as a plain shell script (no Docker engine needed).

Secrets and data live in temp folders (SIGNAL_RAG_SECRETS_DIR, SIGNAL_RAG_DATA_DIR,
SIGNAL_RAG_DOCUMENTS_DIR); configuration is validated by the real docker/check_config.py
with this venv's interpreter; `signal-rag` is a fake on PATH that records how it was called,
so ingest-on-first-start and the final exec are observable.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
CHECK = ROOT / "docker" / "check_config.py"
PEPPER = "p" * 32

# Records each call (argv, pid, the secrets it sees) as one JSON line; `serve` then waits
# for SIGTERM and exits 0 when it arrives; `ingest` exits with $FAKE_INGEST_EXIT.
FAKE_SIGNAL_RAG = f"""#!{sys.executable}
import json, os, signal, sys, time
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "pid": os.getpid(),
                          "pepper": os.environ.get("SIGNAL_RAG_AUDIT__PEPPER"),
                          "key": os.environ.get("SIGNAL_RAG_LLM__API_KEY"),
                          "openai": os.environ.get("OPENAI_API_KEY"),
                          "key_file": os.environ.get("SIGNAL_RAG_LLM__API_KEY_FILE")}}) + "\\n")
if sys.argv[1:2] == ["ingest"]:
    sys.exit(int(os.environ.get("FAKE_INGEST_EXIT", "0")))
if sys.argv[1:2] == ["serve"] and os.environ.get("FAKE_SERVE_WAIT"):
    def stop(signum, frame):
        with open(os.environ["FAKE_LOG"], "a") as log:
            log.write(json.dumps({{"signal": signum}}) + "\\n")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    open(os.environ["FAKE_SERVE_WAIT"], "w").close()
    while True:
        time.sleep(0.05)
"""

pytestmark = pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")


@pytest.fixture
def box(tmp_path: Path) -> dict[str, Path]:
    paths = {name: tmp_path / name for name in ("bin", "secrets", "data", "documents")}
    for path in paths.values():
        path.mkdir()
    fake = paths["bin"] / "signal-rag"
    fake.write_text(FAKE_SIGNAL_RAG)
    fake.chmod(0o755)
    paths["log"] = tmp_path / "calls.jsonl"
    return paths


def base_env(box: dict[str, Path], **extra: str) -> dict[str, str]:
    env = {
        "PATH": f"{box['bin']}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(box["data"]),
        "SIGNAL_RAG_SECRETS_DIR": str(box["secrets"]),
        "SIGNAL_RAG_DATA_DIR": str(box["data"]),
        "SIGNAL_RAG_DOCUMENTS_DIR": str(box["documents"]),
        "SIGNAL_RAG_CHECK_CONFIG": str(CHECK),
        "SIGNAL_RAG_PYTHON": sys.executable,
        "SIGNAL_RAG_LOG__FILE_ENABLED": "false",
        "FAKE_LOG": str(box["log"]),
    }
    env.update(extra)
    return env


def serve_env(box: dict[str, Path], **extra: str) -> dict[str, str]:
    (box["secrets"] / "signal_rag_audit__pepper").write_text(PEPPER + "\n")
    return base_env(box, SIGNAL_RAG_ACCESS__PASSPHRASE="open sesame please", **extra)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(ENTRYPOINT), *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def calls(box: dict[str, Path]) -> list[dict[str, object]]:
    if not box["log"].exists():
        return []
    return [json.loads(line) for line in box["log"].read_text().splitlines()]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "config error" in line]


def test_valid_serve_config_execs_serve_with_the_secrets_exported(box):
    (box["secrets"] / "signal_rag_llm__api_key").write_text("sk-test-key\n")
    (box["secrets"] / "unrelated_secret").write_text("not for us")
    result = run(serve_env(box, SIGNAL_RAG_AUTO_INGEST="false"))
    assert result.returncode == 0, result.stderr
    [call] = calls(box)
    assert call["argv"] == ["serve"]
    assert call["pepper"] == PEPPER  # trailing newline dropped
    assert call["key"] == "sk-test-key"


def test_missing_serve_settings_each_get_one_line_and_exit_2(box):
    result = run(base_env(box))
    assert result.returncode == 2
    lines = error_lines(result.stderr)
    assert len(lines) == 1
    assert "SIGNAL_RAG_ACCESS__PASSPHRASE" in lines[0]
    assert calls(box) == []  # nothing was started


def test_missing_pepper_is_named(box):
    result = run(base_env(box, SIGNAL_RAG_ACCESS__PASSPHRASE="open sesame please"))
    assert result.returncode == 2
    assert any("SIGNAL_RAG_AUDIT__PEPPER" in line for line in error_lines(result.stderr))
    assert calls(box) == []


def test_malformed_variables_one_line_each(box):
    env = serve_env(box, SIGNAL_RAG_HEALTH__ADDR="no-port", SIGNAL_RAG_RETRIEVAL__TOP_K="many",
                    SIGNAL_RAG_SIGNAL__URL="ftp://daemon")
    result = run(env)
    assert result.returncode == 2
    lines = error_lines(result.stderr)
    assert len(lines) == 3, result.stderr
    for name in ("SIGNAL_RAG_HEALTH__ADDR", "SIGNAL_RAG_RETRIEVAL__TOP_K",
                 "SIGNAL_RAG_SIGNAL__URL"):
        assert sum(name in line for line in lines) == 1, (name, lines)
    assert calls(box) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root reads files whatever their mode")
def test_unreadable_secret_file_exits_2(box):
    secret = box["secrets"] / "signal_rag_audit__pepper"
    secret.write_text(PEPPER)
    secret.chmod(0)
    result = run(base_env(box, SIGNAL_RAG_ACCESS__PASSPHRASE="open sesame please"))
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert "SIGNAL_RAG_AUDIT__PEPPER" in line and str(secret) in line


def test_secret_that_is_not_a_file_exits_2(box):
    # Works as root too: a directory where a secret file should be is never readable text.
    (box["secrets"] / "signal_rag_audit__pepper").mkdir()
    result = run(base_env(box, SIGNAL_RAG_ACCESS__PASSPHRASE="open sesame please"))
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert "SIGNAL_RAG_AUDIT__PEPPER: cannot read secret file" in line


def test_empty_secret_file_exits_2(box):
    (box["secrets"] / "signal_rag_audit__pepper").write_text("\n")
    result = run(base_env(box, SIGNAL_RAG_ACCESS__PASSPHRASE="open sesame please"))
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert "is empty" in line


def test_file_variables_are_read_and_exported_without_the_suffix(box, tmp_path):
    key = tmp_path / "key.txt"
    key.write_text("sk-from-file\n")
    openai = tmp_path / "openai.txt"
    openai.write_text("sk-openai")
    env = serve_env(box, SIGNAL_RAG_LLM__API_KEY_FILE=str(key),
                    OPENAI_API_KEY_FILE=str(openai), SIGNAL_RAG_AUTO_INGEST="false",
                    SIGNAL_RAG_LOG__FILE=str(tmp_path / "bot.log"))  # a setting, not a secret
    result = run(env)
    assert result.returncode == 0, result.stderr
    [call] = calls(box)
    assert call["key"] == "sk-from-file"
    assert call["openai"] == "sk-openai"
    assert call["key_file"] is None  # consumed


def test_file_variable_pointing_nowhere_exits_2(box, tmp_path):
    missing = tmp_path / "nope"
    result = run(serve_env(box, SIGNAL_RAG_LLM__API_KEY_FILE=str(missing)))
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert "SIGNAL_RAG_LLM__API_KEY_FILE" in line and str(missing) in line


def test_variable_and_its_file_both_set_exits_2(box, tmp_path):
    key = tmp_path / "key.txt"
    key.write_text("sk-from-file")
    result = run(serve_env(box, SIGNAL_RAG_LLM__API_KEY="sk-env",
                           SIGNAL_RAG_LLM__API_KEY_FILE=str(key)))
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert "both set" in line


def test_variable_in_the_environment_and_the_secrets_folder_exits_2(box):
    """Compose's env_file (.env) and ./secrets/ both giving the pepper: neither may win
    silently, or a stale copy in .env would shadow the secret file."""
    secret = box["secrets"] / "signal_rag_audit__pepper"
    result = run(serve_env(box, SIGNAL_RAG_AUDIT__PEPPER="e" * 32,
                           SIGNAL_RAG_AUTO_INGEST="false"))
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert line == ("entrypoint: config error: SIGNAL_RAG_AUDIT__PEPPER: set in the "
                    f"environment and by the secret file {secret}: keep one (secrets belong "
                    "in files, not in an env_file or environment:)")
    assert PEPPER not in result.stderr and "e" * 32 not in result.stderr
    assert calls(box) == []  # nothing was started


def test_empty_variable_and_a_secret_file_also_exit_2(box):
    # set but empty counts as set: `KEY=` in an env_file is still a second source
    (box["secrets"] / "signal_rag_llm__api_key").write_text("sk-file")
    result = run(serve_env(box, SIGNAL_RAG_LLM__API_KEY=""))
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert "SIGNAL_RAG_LLM__API_KEY: set in the environment and by the secret file" in line
    assert "sk-file" not in result.stderr


def test_file_variable_and_the_secrets_folder_both_set_exits_2(box, tmp_path):
    key = tmp_path / "key.txt"
    key.write_text("sk-from-variable")
    (box["secrets"] / "signal_rag_llm__api_key").write_text("sk-from-folder")
    result = run(serve_env(box, SIGNAL_RAG_LLM__API_KEY_FILE=str(key)))
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert ("SIGNAL_RAG_LLM__API_KEY: set by both SIGNAL_RAG_LLM__API_KEY_FILE and the "
            "secret file") in line
    assert "sk-from" not in result.stderr
    assert calls(box) == []


def test_unrelated_environment_and_secret_files_do_not_clash(box, tmp_path):
    # the pepper from the folder, the key from a _FILE variable, the passphrase from the
    # environment: three sources, no name twice
    key = tmp_path / "key.txt"
    key.write_text("sk-from-variable")
    result = run(serve_env(box, SIGNAL_RAG_LLM__API_KEY_FILE=str(key),
                           SIGNAL_RAG_AUTO_INGEST="false"))
    assert result.returncode == 0, result.stderr
    [call] = calls(box)
    assert (call["pepper"], call["key"]) == (PEPPER, "sk-from-variable")


def test_explicit_secrets_dir_that_does_not_exist_exits_2(box, tmp_path):
    env = base_env(box, SIGNAL_RAG_SECRETS_DIR=str(tmp_path / "absent"))
    result = run(env, "signal-rag", "index", "verify")
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert "SIGNAL_RAG_SECRETS_DIR" in line


def test_first_start_ingests_mounted_documents_then_serves(box):
    (box["documents"] / "guide.md").write_text("# Guide\n\nHello.\n")
    result = run(serve_env(box))
    assert result.returncode == 0, result.stderr
    assert [c["argv"] for c in calls(box)] == [["ingest", str(box["documents"])], ["serve"]]
    assert "first start" in result.stderr


def test_existing_index_is_not_reingested(box):
    (box["documents"] / "guide.md").write_text("# Guide\n")
    index = box["data"] / "index"
    index.mkdir()
    (index / "manifest.json").write_text("{}")
    result = run(serve_env(box))
    assert result.returncode == 0, result.stderr
    assert [c["argv"] for c in calls(box)] == [["serve"]]


def test_last_good_copy_counts_as_an_index(box, tmp_path):
    (box["documents"] / "guide.md").write_text("# Guide\n")
    index = tmp_path / "idx" / "current"
    (tmp_path / "idx" / "current.last-good").mkdir(parents=True)
    result = run(serve_env(box, SIGNAL_RAG_INDEX_DIR=str(index)))
    assert result.returncode == 0, result.stderr
    assert [c["argv"] for c in calls(box)] == [["serve"]]


def test_no_documents_starts_degraded_without_ingest(box):
    (box["documents"] / ".hidden").write_text("x")
    result = run(serve_env(box))
    assert result.returncode == 0, result.stderr
    assert [c["argv"] for c in calls(box)] == [["serve"]]
    assert "degraded" in result.stderr


@pytest.mark.parametrize(("ingest_exit", "expected", "served"),
                         [(1, 0, True), (3, 0, True), (2, 2, False)])
def test_ingest_outcome(box, ingest_exit, expected, served):
    (box["documents"] / "guide.md").write_text("# Guide\n")
    result = run(serve_env(box, FAKE_INGEST_EXIT=str(ingest_exit)))
    assert result.returncode == expected, result.stderr
    argvs = [c["argv"] for c in calls(box)]
    assert argvs[0][0] == "ingest"
    assert (["serve"] in argvs) is served


def test_bare_subcommand_runs_under_signal_rag_without_serve_checks(box):
    # `ask` needs neither passphrase nor pepper, and gets no ingest.
    (box["documents"] / "guide.md").write_text("# Guide\n")
    result = run(base_env(box), "ask", "what is this?")
    assert result.returncode == 0, result.stderr
    assert [c["argv"] for c in calls(box)] == [["ask", "what is this?"]]


def test_other_commands_run_without_the_config_check(box):
    result = run(base_env(box, SIGNAL_RAG_HEALTH__ADDR="broken"), "sh", "-c", "echo hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"


def test_exec_replaces_the_shell_and_sigterm_reaches_the_app(box):
    ready = box["data"] / "serving"
    env = serve_env(box, SIGNAL_RAG_AUTO_INGEST="false", FAKE_SERVE_WAIT=str(ready))
    proc = subprocess.Popen(["sh", str(ENTRYPOINT)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "serve never started"
            time.sleep(0.05)
        [call] = calls(box)
        assert call["pid"] == proc.pid  # exec: the app is the process we started
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert calls(box)[-1] == {"signal": signal.SIGTERM}


def test_entrypoint_is_executable():
    assert os.access(ENTRYPOINT, os.X_OK)
