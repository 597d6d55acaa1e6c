"""Every command in the documentation is run by a test or says why it cannot be (issue 7).

Each fenced code block in README.md and docs/*.md has an info string. Blocks whose
language is `sh` hold shell commands and carry one of these markers:

  ```sh                     run here, literally: bash -euo pipefail, cwd = repository
                            root, .venv/bin first on PATH, fresh HOME, a data directory
                            holding the ingested sample documents, no network
  ```sh tested-by=T[,T...]  run by the named tests (`path.py::test_name`, or a file such
                            as `.ci/run`); the check verifies each exists
  ```sh synopsis            a usage summary: every `signal-rag` subcommand and --flag in
                            it must exist in the CLI, and every `make` target in the Makefile
  ```sh needs=WHAT          cannot run on a machine without WHAT (see NEEDS below)

The other languages (`text`, `json`, `yaml`, `ini`, `mermaid`, ...) are not commands.
A block without an info string, or a `console`/`bash`/`shell` block, fails the check,
so a command cannot slip into the docs unmarked.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import typer.main

from agent.cli import app
from tests.unit.project.test_runbook_and_guide import is_group

ROOT = Path(__file__).resolve().parents[2]
NEEDS = {
    "docker": "a Docker engine",
    "signal-account": "a real Signal account (linking, sending, a running bot)",
    "systemd": "a host running systemd",
    "kubernetes": "a Kubernetes cluster",
    "macos": "a macOS host",
    "root": "root on the target host (installing system files)",
    "model-server": "an OpenAI-compatible model server",
    "shared-datasets": "the development datasets in ../shared (BEIR SciFact)",
    "studio": "LangGraph's dev server, a long-running process (Studio's UI needs a network)",
}
COMMAND_LANGUAGES = {"sh", "bash", "shell", "console", "zsh", ""}
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    markers: dict[str, str]
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def parse_blocks(path: Path) -> list[Block]:
    """Fenced blocks, indented ones (inside lists) included."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, indent = match["fence"], match["indent"]
        info = match["info"].strip().split()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        markers = dict(m.split("=", 1) if "=" in m else (m, "") for m in info[1:])
        blocks.append(Block(path, i + 1, info[0] if info else "", markers, "\n".join(body)))
        i = j + 1
    return blocks


ALL_BLOCKS = [block for path in doc_files() for block in parse_blocks(path)]
SH_BLOCKS = [b for b in ALL_BLOCKS if b.language == "sh"]
RUN_BLOCKS = [b for b in SH_BLOCKS if not b.markers]


def test_every_block_is_labelled_and_every_command_block_is_marked() -> None:
    problems = []
    for block in ALL_BLOCKS:
        if block.language in COMMAND_LANGUAGES - {"sh"}:
            problems.append(f"{block.where}: label the block `sh` (commands) or `text`")
        elif block.language == "sh" and block.markers:
            keys = set(block.markers)
            if len(keys) != 1 or not keys <= {"tested-by", "synopsis", "needs"}:
                problems.append(f"{block.where}: one of tested-by=, synopsis, needs= "
                                f"(got {sorted(keys)})")
            elif block.markers.get("needs", "") not in ({""} if "needs" not in keys
                                                        else set(NEEDS)):
                problems.append(f"{block.where}: needs= one of {sorted(NEEDS)}")
    assert not problems, "\n".join(problems)


def _test_exists(target: str) -> bool:
    path_part, _, name = target.partition("::")
    path = ROOT / path_part
    if not path.is_file():
        return False
    if not name:
        return True
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
               for node in ast.walk(tree))


def test_tested_by_names_existing_tests() -> None:
    missing = [f"{b.where}: {target}" for b in SH_BLOCKS if "tested-by" in b.markers
               for target in b.markers["tested-by"].split(",") if not _test_exists(target)]
    assert not missing, "tested-by names no such test:\n" + "\n".join(missing)


def _logical_lines(code: str) -> list[str]:
    """Lines with backslash continuations joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    lines = []
    for line in joined.splitlines():
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            tokens = line.split("#", 1)[0].split()
        if tokens:
            lines.append(" ".join(tokens))
    return lines


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {m for line in re.findall(r"^([A-Za-z0-9_.-][^:=\n]*):(?!=)", text, re.M)
            for m in line.split()}


def _synopsis_problems(line: str) -> list[str]:
    tokens = line.split()
    if tokens[0] == "make":
        targets = _makefile_targets()
        return [f"no make target {t}" for t in tokens[1:]
                if not t.startswith("-") and "=" not in t and t not in targets]
    if tokens[0] != "signal-rag":
        return [f"a synopsis line starts with signal-rag or make, not {tokens[0]!r}"]
    command: click.Command = typer.main.get_command(app)
    ctx_words = ["signal-rag"]
    rest = tokens[1:]
    while is_group(command) and rest and rest[0] in command.commands:
        ctx_words.append(rest[0])
        command = command.commands[rest.pop(0)]
    if is_group(command):
        return [f"{' '.join(ctx_words)}: {rest[0] if rest else '(nothing)'} is no subcommand"]
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    flags = {m for token in rest for m in re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", token)}
    return [f"{' '.join(ctx_words)} has no option {flag}" for flag in sorted(flags - options)]


def test_synopsis_blocks_name_real_commands_and_options() -> None:
    problems = [f"{b.where}: {problem}" for b in SH_BLOCKS if "synopsis" in b.markers
                for line in _logical_lines(b.code) for problem in _synopsis_problems(line)]
    assert not problems, "\n".join(problems)


def test_the_synopsis_check_catches_a_made_up_option() -> None:
    assert _synopsis_problems("signal-rag ingest PATH --rebuild") == []
    assert _synopsis_problems("signal-rag ingest PATH --frobnicate") == [
        "signal-rag ingest has no option --frobnicate"]
    assert _synopsis_problems("signal-rag nosuch") == ["signal-rag: nosuch is no subcommand"]
    assert _synopsis_problems("make run test") == []
    assert _synopsis_problems("make nosuchtarget") == ["no make target nosuchtarget"]


def test_doc_commands_are_parsed_from_fenced_blocks(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("text\n\n```sh needs=docker\ndocker ps\n```\n\n1. a step:\n\n"
                   "   ```sh\n   echo hi\n   ```\n\n```\nunlabelled\n```\n", encoding="utf-8")
    blocks = parse_blocks(doc)
    assert [(b.line, b.language, b.markers, b.code) for b in blocks] == [
        (3, "sh", {"needs": "docker"}, "docker ps"), (9, "sh", {}, "echo hi"),
        (13, "", {}, "unlabelled")]


# --- the blocks that run here -----------------------------------------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SIGNAL_RAG_", "OTEL_", "MAKE")) and k != "OPENAI_API_KEY"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", NO_PROXY="*", no_proxy="*",
               **extra)
    return env


@pytest.fixture(scope="module")
def answered_data_dir(tmp_path_factory: pytest.TempPathFactory,
                      sample_data_dir: Path) -> Path:
    """The sample index plus the state one answered question leaves (audit log, pepper)."""
    data = tmp_path_factory.mktemp("doc-data") / "data"
    shutil.copytree(sample_data_dir, data)
    secrets = data.parent / "secrets"
    secrets.mkdir()
    subprocess.run([str(ROOT / ".venv" / "bin" / "signal-rag"), "ask",
                    "What is the default data directory?"], cwd=ROOT, check=True,
                   env=_clean_env(SIGNAL_RAG_DATA_DIR=str(data),
                                  SIGNAL_RAG_SECRETS_DIR=str(secrets)),
                   capture_output=True, timeout=120)
    assert (data / "audit.jsonl").is_file()
    return data


@pytest.fixture
def doc_env(tmp_path: Path, answered_data_dir: Path) -> dict[str, str]:
    shutil.copytree(answered_data_dir, tmp_path / "data")
    (tmp_path / "home").mkdir()
    (tmp_path / "secrets").mkdir()
    return _clean_env(PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                      HOME=str(tmp_path / "home"), SIGNAL_RAG_DATA_DIR=str(tmp_path / "data"),
                      SIGNAL_RAG_SECRETS_DIR=str(tmp_path / "secrets"))


def run_block(block: Block, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False,
                          stdin=subprocess.DEVNULL)


pytestmark = pytest.mark.slow


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[b.where for b in RUN_BLOCKS])
def test_runnable_doc_block_succeeds(block: Block, doc_env: dict[str, str]) -> None:
    result = run_block(block, doc_env)
    assert result.returncode == 0, (
        f"{block.where} exited {result.returncode}\n--- stdout\n{result.stdout[-2000:]}"
        f"\n--- stderr\n{result.stderr[-2000:]}")


def test_make_run_answers_a_piped_question(tmp_path: Path) -> None:
    """README's first command, literally: `echo QUESTION | make run` (ingest, then chat)."""
    (tmp_path / "secrets").mkdir()
    env = _clean_env(SIGNAL_RAG_DATA_DIR=str(tmp_path / "data"),
                     SIGNAL_RAG_SECRETS_DIR=str(tmp_path / "secrets"))
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c",
         'echo "What is the default data directory?" | make --no-print-directory run'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "data" / "index" / "manifest.json").is_file()
    assert "data" in result.stdout and "[1]" in result.stdout, result.stdout[-2000:]
