"""setup.sh run as a user or CI would: real bash, real make, the real settings check.

Installing is a no-op here: VENV points at this test run's own virtual environment, which
`make install` already built. Every run writes to a temporary --env-file with HOME and the
data folder in temporary folders, so the repository's own .env is never touched. The link
step runs a fake signal-cli from PATH that prints a realistic device-link URI and a number:
the real `signal-cli link` would contact Signal's servers.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import stat
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.integration.signal_cli_daemon import cache_dir, require_signal_cli
from tests.unit.agent.test_linking import expected_rows, read_qr, realistic_uri

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "setup.sh"
VENV = Path(sys.prefix)  # the venv running these tests
PASSPHRASE = "open sesame 42"
API_KEY = "sk-test-123"
NUMBER = "+15559876543"
LINKED = "+15550001234"

FAKE_SIGNAL_CLI = f"""#!{sys.executable}
import json, os, sys, time
with open(os.environ["FAKE_CALLS"], "a") as calls:
    calls.write(json.dumps({{"argv": sys.argv[1:], "pid": os.getpid()}}) + "\\n")
mode = os.environ.get("FAKE_MODE", "ok")
if mode == "error":
    print("The user {LINKED} already exists", file=sys.stderr)
    sys.exit(1)
print(os.environ["FAKE_URI"], flush=True)
time.sleep(60 if mode == "hang" else 0.3)  # the phone scanning the code
print("Associated with: {LINKED}", flush=True)
"""


@pytest.fixture
def box(tmp_path: Path) -> dict[str, Path]:
    paths = {name: tmp_path / name for name in ("home", "bin", "data", "conf")}
    for path in paths.values():
        path.mkdir()
    fake = paths["bin"] / "signal-cli"
    fake.write_text(FAKE_SIGNAL_CLI)
    fake.chmod(0o755)
    paths["env"] = paths["conf"] / ".env"
    paths["calls"] = tmp_path / "calls.jsonl"
    paths["root"] = tmp_path
    return paths


def base_env(box: dict[str, Path], **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()  # MAKE*: under `make test`
           if not name.startswith(("SIGNAL_RAG_", "SIGNAL_CLI", "MAKE", "MFLAGS"))
           and name not in ("OPENAI_API_KEY", "JAVA_HOME")}
    env.update(PATH=f"{box['bin']}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
               HOME=str(box["home"]), VENV=str(VENV), SIGNAL_RAG_DATA_DIR=str(box["data"]),
               FAKE_CALLS=str(box["calls"]))
    env.update(extra)
    return env


def run(box: dict[str, Path], *args: str, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SETUP), "--env-file", str(box["env"]), *args],
                          env=env or base_env(box), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def sourced(path: Path) -> dict[str, str]:
    """The variables a shell gets from `set -a; . FILE` (how the bot is started)."""
    shown = subprocess.run(
        ["bash", "-c", 'set -a; . "$1"; set +a; "$2" -c "import json, os; '
         'print(json.dumps(dict(os.environ)))"', "sh", str(path), sys.executable],
        env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True)
    return {k: v for k, v in json.loads(shown.stdout).items() if k.startswith("SIGNAL_RAG_")}


def assert_private(path: Path) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_non_interactive_install(box):
    """docs/installation.md's non-interactive command, with the test's own paths."""
    key_file, passphrase_file = box["root"] / "llm-api-key", box["root"] / "passphrase"
    key_file.write_text(API_KEY + "\n")
    passphrase_file.write_text(PASSPHRASE)
    result = run(box, "--non-interactive", "--account", NUMBER,
                 "--llm-base-url", "http://127.0.0.1:11434/v1", "--llm-model", "llama3.2",
                 "--llm-api-key-file", str(key_file),
                 "--passphrase-file", str(passphrase_file), "--skip-smoke")
    assert result.returncode == 0, result.stderr
    assert "already installed and up to date" in result.stderr
    assert "ok: settings valid for signal-rag serve" in result.stderr
    assert "no bot running yet" in result.stderr
    values = sourced(box["env"])
    assert values["SIGNAL_RAG_SIGNAL__ACCOUNT"] == NUMBER
    assert values["SIGNAL_RAG_SIGNAL__URL"] == "http://127.0.0.1:8080"
    assert values["SIGNAL_RAG_LLM__MODEL"] == "llama3.2"
    assert values["SIGNAL_RAG_LLM__BASE_URL"] == "http://127.0.0.1:11434/v1"
    assert values["SIGNAL_RAG_LLM__API_KEY"] == API_KEY
    assert values["SIGNAL_RAG_ACCESS__PASSPHRASE"] == PASSPHRASE
    assert re.fullmatch(r"[0-9a-f]{64}", values["SIGNAL_RAG_AUDIT__PEPPER"])
    assert values["SIGNAL_RAG_DATA_DIR"] == str(box["data"])
    # the local embedding model: the example's API model is commented out
    assert "SIGNAL_RAG_EMBEDDINGS__MODEL" not in values
    assert_private(box["env"])
    output = result.stdout + result.stderr
    for secret in (PASSPHRASE, API_KEY, values["SIGNAL_RAG_AUDIT__PEPPER"], NUMBER):
        assert secret not in output
    assert sorted(p.name for p in box["conf"].iterdir()) == [".env"]  # no temp file left
    # what the bot will see is a valid `serve` configuration
    check = subprocess.run(
        ["bash", "-c", 'set -a; . "$1"; set +a; exec "$2" docker/check_config.py --serve',
         "sh", str(box["env"]), sys.executable], cwd=ROOT, capture_output=True, text=True,
        env={"PATH": os.environ["PATH"], "HOME": str(box["home"]),
             "SIGNAL_RAG_SECRETS_DIR": str(box["home"])}, check=False)
    assert check.returncode == 0, check.stderr


def test_rerun_keeps_values_and_pepper_and_force_replaces(box):
    env = base_env(box, SIGNAL_RAG_ACCESS__PASSPHRASE=PASSPHRASE)
    assert run(box, "--non-interactive", "--account", NUMBER, "--skip-smoke",
               env=env).returncode == 0
    first = box["env"].read_bytes()
    with box["env"].open("a") as handle:  # an operator's own line
        handle.write("SIGNAL_RAG_ACCESS__ADMINS=+15550000001\n")
    edited = box["env"].read_bytes()

    # no secrets in the environment this time: the .env already has them
    again = run(box, "--non-interactive", "--account", "+15550000002", "--skip-smoke")
    assert again.returncode == 0, again.stderr
    assert box["env"].read_bytes() == edited
    assert edited.startswith(first)
    assert "SIGNAL_RAG_SIGNAL__ACCOUNT: kept the value" in again.stderr

    forced = run(box, "--non-interactive", "--force", "--account", "+15550000002",
                 "--skip-smoke", env=base_env(box, SIGNAL_RAG_ACCESS__PASSPHRASE="new words"))
    assert forced.returncode == 0, forced.stderr
    before, after = sourced_bytes(edited, box), sourced(box["env"])
    assert after["SIGNAL_RAG_SIGNAL__ACCOUNT"] == "+15550000002"
    assert after["SIGNAL_RAG_ACCESS__PASSPHRASE"] == "new words"
    assert after["SIGNAL_RAG_AUDIT__PEPPER"] == before["SIGNAL_RAG_AUDIT__PEPPER"]
    assert after["SIGNAL_RAG_ACCESS__ADMINS"] == "+15550000001"
    assert_private(box["env"])
    assert "new words" not in forced.stderr + forced.stdout


def sourced_bytes(content: bytes, box: dict[str, Path]) -> dict[str, str]:
    copy = box["root"] / "copy.env"
    copy.write_bytes(content)
    return sourced(copy)


@pytest.mark.parametrize(("args", "message"), [
    (["--bogus"], "unknown option: --bogus"),
    (["--account"], "--account needs a value"),
    (["--account", "--force"], "--account needs a value"),
    (["--passphrase", "hunter2hunter2"], "--passphrase: secrets are not taken as arguments"),
    (["hunter2hunter2"], "unexpected argument"),
    (["--non-interactive", "--account", "4242"], "SIGNAL_RAG_SIGNAL__ACCOUNT must be"),
    (["--non-interactive", "--account", NUMBER, "--signal-url", "localhost:8080"],
     "SIGNAL_RAG_SIGNAL__URL must start with"),
    (["--passphrase-file", "/nonexistent/file"], "--passphrase-file: cannot read"),
    (["--llm-api-key-file", "/"], "--llm-api-key-file: cannot read / (missing, a folder"),
    (["--non-interactive", "--env-file", "/nonexistent/dir/.env"], "does not exist"),
])
def test_bad_options_exit_2_with_one_line(box, args, message):
    secret = ({} if "--passphrase-file" in args
              else {"SIGNAL_RAG_ACCESS__PASSPHRASE": PASSPHRASE})
    result = run(box, *args, env=base_env(box, **secret))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("setup.sh: error: ") and message in line, line
    assert "hunter2" not in line and "4242" not in line
    assert not box["env"].exists()


def test_secrets_from_pipes_a_symlinked_env_and_the_daemon_hint(box):
    """--passphrase-file <(...) and --llm-api-key-file /dev/stdin (pipes, not regular
    files); a symlinked .env stays a link to the rewritten file; the closing hint starts
    the daemon where --signal-url points; a Compose folder next to the .env gets a note."""
    private = box["root"] / "private"
    private.mkdir()
    target = private / "bot.env"
    target.write_text(f"SIGNAL_RAG_SIGNAL__ACCOUNT={NUMBER}\n")
    box["env"].symlink_to(os.path.relpath(target, box["conf"]))
    (box["conf"] / "docker-compose.yml").write_text("services: {}\n")
    (box["conf"] / "secrets").mkdir()
    script = ('exec bash "$1" --env-file "$2" --non-interactive --skip-smoke '
              '--signal-url http://127.0.0.1:18080/ --llm-model llama3.2 '
              '--llm-base-url http://127.0.0.1:11434/v1 --llm-api-key-file /dev/stdin '
              '--passphrase-file <(printf %s "$3")')
    result = subprocess.run(["bash", "-c", script, "sh", str(SETUP), str(box["env"]),
                             PASSPHRASE], env=base_env(box), input=API_KEY + "\n",
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert box["env"].is_symlink() and box["env"].resolve() == target
    assert_private(target)
    values = sourced(target)
    assert values["SIGNAL_RAG_ACCESS__PASSPHRASE"] == PASSPHRASE
    assert values["SIGNAL_RAG_LLM__API_KEY"] == API_KEY
    assert values["SIGNAL_RAG_SIGNAL__URL"] == "http://127.0.0.1:18080/"
    assert sorted(p.name for p in private.iterdir()) == ["bot.env"]  # no temp file left
    assert ('signal-cli -a "$SIGNAL_RAG_SIGNAL__ACCOUNT" daemon --http 127.0.0.1:18080 '
            "--receive-mode manual &") in result.stderr
    assert "127.0.0.1:8080" not in result.stderr
    assert "for this host only; with Docker Compose the bot refuses" in result.stderr
    assert PASSPHRASE not in result.stderr + result.stdout
    assert API_KEY not in result.stderr + result.stdout


@pytest.mark.parametrize(("url", "listen"), [
    ("tcp://127.0.0.1:7583", "daemon --tcp 127.0.0.1:7583 "),
    ("unix:///run/signal-cli/socket", "daemon --socket /run/signal-cli/socket "),
    ("http://signal-cli", "daemon --http signal-cli:80 "),
])
def test_daemon_hint_for_other_urls(box, url, listen):
    result = run(box, "--non-interactive", "--account", NUMBER, "--signal-url", url,
                 "--skip-smoke", env=base_env(box, SIGNAL_RAG_ACCESS__PASSPHRASE=PASSPHRASE))
    assert result.returncode == 0, result.stderr
    assert listen in result.stderr


def test_env_file_link_loop_exits_2(box):
    loop = box["conf"] / "loop.env"
    loop.symlink_to("loop.env")
    result = run(box, "--non-interactive", "--env-file", str(loop),
                 env=base_env(box, SIGNAL_RAG_ACCESS__PASSPHRASE=PASSPHRASE))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("setup.sh: error: --env-file") and "cannot be resolved" in line
    assert loop.is_symlink()


def test_missing_values_are_named(box):
    result = run(box, "--non-interactive")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "SIGNAL_RAG_SIGNAL__ACCOUNT" in line and "SIGNAL_RAG_ACCESS__PASSPHRASE" in line
    result = run(box, "--non-interactive", "--account", NUMBER, "--llm-model", "gpt-4o-mini",
                 env=base_env(box, SIGNAL_RAG_ACCESS__PASSPHRASE=PASSPHRASE))
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "missing: SIGNAL_RAG_LLM__API_KEY" in line
    assert not box["env"].exists()


def test_invalid_settings_leave_the_env_file_unchanged(box):
    box["env"].write_text(f"SIGNAL_RAG_SIGNAL__ACCOUNT={NUMBER}\n"
                          f"SIGNAL_RAG_ACCESS__PASSPHRASE='{PASSPHRASE}'\n"
                          "SIGNAL_RAG_RETRIEVAL__TOP_K=99\n")
    before = box["env"].read_bytes()
    result = run(box, "--non-interactive", "--skip-smoke")
    assert result.returncode == 2
    assert "config error: SIGNAL_RAG_RETRIEVAL__TOP_K" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("setup.sh: error: the settings are not valid")
    assert box["env"].read_bytes() == before
    assert sorted(p.name for p in box["conf"].iterdir()) == [".env"]


def test_link_shows_the_qr_code_and_fills_in_the_number(box):
    uri = realistic_uri()
    result = run(box, "--non-interactive", "--link", "test bot", "--skip-smoke",
                 env=base_env(box, SIGNAL_RAG_ACCESS__PASSPHRASE=PASSPHRASE, FAKE_URI=uri))
    assert result.returncode == 0, result.stderr
    [call] = [json.loads(line) for line in box["calls"].read_text().splitlines()]
    assert call["argv"] == ["link", "-n", "test bot"]
    assert read_qr(result.stderr) == expected_rows(uri)  # the terminal code is that URI
    assert uri in result.stderr and uri not in result.stdout  # and the text, on the terminal
    assert sourced(box["env"])["SIGNAL_RAG_SIGNAL__ACCOUNT"] == LINKED
    assert LINKED not in result.stdout + result.stderr
    # nothing written anywhere holds the URI: no log, no state, not the .env
    for path in box["root"].rglob("*"):
        if path.is_file():
            assert uri not in path.read_text(errors="replace"), path


def test_link_failure_masks_the_number_and_writes_nothing(box):
    result = run(box, "--non-interactive", "--link", "bot", "--skip-smoke",
                 env=base_env(box, SIGNAL_RAG_ACCESS__PASSPHRASE=PASSPHRASE,
                              FAKE_URI=realistic_uri(), FAKE_MODE="error"))
    assert result.returncode == 1
    assert "signal-cli link failed (exit 1): The user [hidden] already exists" in result.stderr
    assert result.stderr.splitlines()[-1] == "setup.sh: error: linking failed (see above)"
    assert LINKED not in result.stderr
    assert not box["env"].exists()


def test_link_gives_up_after_the_timeout_and_stops_signal_cli(box):
    result = subprocess.run(
        [str(VENV / "bin" / "signal-rag"), "link", "--timeout", "1"],
        env=base_env(box, FAKE_URI=realistic_uri(), FAKE_MODE="hang"),
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "error: no confirmation from the phone within 1 s" in result.stderr
    [call] = [json.loads(line) for line in box["calls"].read_text().splitlines()]
    with pytest.raises(ProcessLookupError):
        os.kill(call["pid"], 0)  # terminated and reaped, not left running


def test_with_signal_cli_uses_the_fetch_script_and_its_cache(box):
    """The real fetch script on the machine's warm cache (`make signal-cli`): no download."""
    install = require_signal_cli()
    result = run(box, "--non-interactive", "--account", NUMBER, "--with-signal-cli",
                 "--skip-smoke", env=base_env(box, SIGNAL_RAG_ACCESS__PASSPHRASE=PASSPHRASE,
                                              SIGNAL_RAG_CACHE=str(cache_dir())))
    assert result.returncode == 0, result.stderr
    assert f"signal-cli: {install.bin} (JAVA_HOME={install.java_home})" in result.stderr
    # next steps: load the fetch script's env file, then its launcher (not on PATH)
    env_file = cache_dir() / "signal-cli.env"
    assert f"set -a; . {env_file}; set +a" in result.stderr
    assert '"$SIGNAL_CLI_BIN" -a "$SIGNAL_RAG_SIGNAL__ACCOUNT" daemon --http' in result.stderr


def test_link_without_signal_cli_is_a_usage_error(box):
    (box["bin"] / "signal-cli").unlink()
    env = base_env(box, SIGNAL_RAG_ACCESS__PASSPHRASE=PASSPHRASE)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not (Path(p) / "signal-cli").exists())
    result = run(box, "--non-interactive", "--link", "bot", env=env)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert "--link needs signal-cli" in line


class Terminal:
    """setup.sh on a pseudo-terminal, answered prompt by prompt."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, self.slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=self.slave, stdout=self.slave,
                                     stderr=self.slave, env=env, start_new_session=True)
        self.seen = ""

    def expect(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {text!r} in {self.seen[-2000:]!r}"
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                assert chunk or self.proc.poll() is None, f"exited; saw {self.seen[-2000:]!r}"
                self.seen += chunk.decode(errors="replace")

    def answer(self, text: str, *, secret: bool = False) -> None:
        if secret:  # type only once `read -s` has switched echo off, as a person would
            deadline = time.monotonic() + 30
            while termios.tcgetattr(self.slave)[3] & termios.ECHO:
                assert time.monotonic() < deadline, "echo never switched off"
                time.sleep(0.01)
        os.write(self.master, text.encode() + b"\n")

    def finish(self, timeout: float = 300) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:
                    break
        code = self.proc.wait(timeout=10)
        os.close(self.master)
        os.close(self.slave)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def test_interactive_run_on_a_terminal(box):
    terminal = Terminal(["bash", str(SETUP), "--env-file", str(box["env"]), "--skip-smoke"],
                        base_env(box))
    try:
        terminal.expect("The bot's Signal number (+ and country code) [none]: ")
        terminal.answer("12345")  # refused, asked again
        terminal.expect("SIGNAL_RAG_SIGNAL__ACCOUNT must be the number in international format")
        terminal.expect("The bot's Signal number (+ and country code) [none]: ")
        terminal.answer(NUMBER)
        terminal.expect("The signal-cli daemon's URL [http://127.0.0.1:8080]: ")
        terminal.answer("")
        terminal.expect("Language model (none: the offline extractive answerer) [none]: ")
        terminal.answer("llama3.2")
        terminal.expect("OpenAI-compatible server URL (none: OpenAI's API) [none]: ")
        terminal.answer("http://127.0.0.1:11434/v1")
        terminal.expect("The server's API key [hidden]: ")
        terminal.answer(API_KEY, secret=True)
        terminal.expect("Access passphrase users send to the bot once [hidden]: ")
        terminal.answer(PASSPHRASE, secret=True)
        terminal.expect("[again, to confirm]: ")
        terminal.answer(PASSPHRASE, secret=True)
        code = terminal.finish()
    finally:
        terminal.kill()
    assert code == 0, terminal.seen[-3000:]
    values = sourced(box["env"])
    assert values["SIGNAL_RAG_SIGNAL__ACCOUNT"] == NUMBER
    assert values["SIGNAL_RAG_SIGNAL__URL"] == "http://127.0.0.1:8080"
    assert values["SIGNAL_RAG_LLM__MODEL"] == "llama3.2"
    assert values["SIGNAL_RAG_LLM__API_KEY"] == API_KEY
    assert values["SIGNAL_RAG_ACCESS__PASSPHRASE"] == PASSPHRASE
    assert_private(box["env"])
    assert PASSPHRASE not in terminal.seen and API_KEY not in terminal.seen  # not echoed

    # again on the terminal: Enter keeps everything, the number shown only masked
    terminal = Terminal(["bash", str(SETUP), "--env-file", str(box["env"]), "--skip-smoke"],
                        base_env(box))
    before = box["env"].read_bytes()
    try:
        terminal.expect("The bot's Signal number (+ and country code) [Enter keeps +15...43]: ")
        terminal.answer("")
        for prompt in ("[http://127.0.0.1:8080]: ", "[llama3.2; - for none]: ",
                       "[http://127.0.0.1:11434/v1; - for none]: "):
            terminal.expect(prompt)
            terminal.answer("")
        for prompt in ("The server's API key [hidden; Enter keeps the current one]: ",
                       "once [hidden; Enter keeps the current one]: "):
            terminal.expect(prompt)
            terminal.answer("", secret=True)
        code = terminal.finish()
    finally:
        terminal.kill()
    assert code == 0, terminal.seen[-3000:]
    assert box["env"].read_bytes() == before


def test_offline_answer_and_the_install_without_make(box):
    """Without a working make setup.sh runs the Makefile's install steps itself (here a
    no-op: the venv is up to date), then answers from the bundled samples offline."""
    result = run(box, "--non-interactive", "--account", NUMBER,
                 env=base_env(box, SIGNAL_RAG_ACCESS__PASSPHRASE=PASSPHRASE,
                              MAKE=str(box["root"] / "no-make")), timeout=600)
    assert result.returncode == 0, result.stderr
    assert "no working" in result.stderr and "already installed and up to date" in result.stderr
    assert "Q: What does exit code 3 mean?" in result.stderr
    assert "ok: answered offline with sources" in result.stderr
    assert list(box["data"].iterdir()) == []  # the smoke index lived in a temp folder
