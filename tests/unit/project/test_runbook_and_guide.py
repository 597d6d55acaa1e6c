"""docs/runbook.md and docs/user-guide.md stay true to the code.

The runbook has one section per alert condition the code can raise (collected from the
condition registry and from the call sites that raise alerts) and per Prometheus rule,
each with Symptoms, Checks and Fixes; every `signal-rag` command it names exists with its
flags. The user guide covers every chat command, and each reply it quotes in a ```text
block is the text the bot sends (imported here, never copied); ```text example blocks are
illustrations of replies built from data.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import inspect
import io
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import typer
import yaml
from limits import parse_many
from pydantic import BaseModel

from agent.cli import app
from agent.commands import Command, help_text, info_text, unknown_command_hint
from agent.observability.alerts import CONDITIONS
from agent.observability.anomalies import ALERTED_KINDS
from agent.ratelimit import DEFAULT_ACTIVATION_FAILURES, DEFAULT_LOCKOUT_SECONDS
from agent.service import (
    ACTIVATED,
    FORGOTTEN,
    GAVE_UP,
    NOT_ADMIN,
    RESET,
    SLOW_DOWN,
    CommandRunner,
)
from agent.settings import AccessSettings, AnomalySettings, LimitsSettings, Settings
from agent.store import ReplyPart, Store
from graph.context import GraphContext
from graph.nodes.fallback import MESSAGES, MODEL_DOWN_PREFIX
from graph.state import MAX_EXCHANGES

ROOT = Path(__file__).resolve().parents[3]
RUNBOOK = ROOT / "docs" / "runbook.md"
GUIDE = ROOT / "docs" / "user-guide.md"
OPERATIONS = ROOT / "docs" / "operations.md"
RULES = ROOT / "docs" / "prometheus-rules.yml"
PACKAGES = ("agent", "graph")
NEEDS = {"docker", "signal-account", "systemd", "kubernetes", "macos", "root"}
PARTS = ("**Symptoms**", "**Checks**", "**Fixes**")
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)


# ------------------------------------------------------------------ markdown helpers


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of every fenced block, in order; indented fences included."""
    return [(info.strip(), body) for info, body in FENCE.findall(_dedent_fences(text))]


def _dedent_fences(text: str) -> str:
    """Fences inside list items are indented; strip that indent from their lines."""
    out, indent = [], None
    for line in text.split("\n"):
        stripped = line.lstrip(" ")
        if indent is None and stripped.startswith("```"):
            indent = len(line) - len(stripped)
            out.append(stripped)
        elif indent is not None:
            out.append(line[indent:] if line[:indent].strip() == "" else line)
            if stripped.startswith("```"):
                indent = None
        else:
            out.append(line)
    return "\n".join(out)


def prose(text: str) -> str:
    """The text without its fenced blocks."""
    return FENCE.sub("", _dedent_fences(text))


def raw_sections(text: str, level: int) -> dict[str, str]:
    """Like `sections`, but the bodies keep their fenced blocks."""
    titles = list(re.finditer(rf"^(#{{1,{level}}}) (.+)$", text, re.M))
    inside = _fenced_spans(text)
    titles = [t for t in titles if not any(a <= t.start() < b for a, b in inside)]
    found: dict[str, str] = {}
    for i, mark in enumerate(titles):
        if len(mark.group(1)) == level:
            end = titles[i + 1].start() if i + 1 < len(titles) else len(text)
            found[mark.group(2).strip()] = text[mark.end():end]
    return found


def _fenced_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], None
    for match in re.finditer(r"^[ \t]*```.*$", text, re.M):
        if start is None:
            start = match.start()
        else:
            spans.append((start, match.end()))
            start = None
    return spans


def slug(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", prose(text), re.M)}


def code_name(title: str) -> str | None:
    match = re.fullmatch(r"`([A-Za-z0-9_]+)`", title)
    return match.group(1) if match else None


# ------------------------------------------------------------------ the alert conditions


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            yield name.removesuffix(".__init__"), ast.parse(read(path))


def _condition_args(tree: ast.Module) -> Iterator[ast.expr]:
    """Expressions that name a condition where one is raised or resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else \
                func.id if isinstance(func, ast.Name) else ""
            index = {"alert": 0, "_raise_alert": 0, "resolve": 0, "raise_alert": 1}.get(name)
            if index is not None and len(node.args) > index:
                yield node.args[index]
            yield from (kw.value for kw in node.keywords if kw.arg in ("alert", "condition"))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args.args + node.args.kwonlyargs
            defaults = [None] * (len(node.args.args) - len(node.args.defaults)) \
                + list(node.args.defaults) + list(node.args.kw_defaults)
            for arg, default in zip(args, defaults, strict=True):
                if arg.arg == "condition" and default is not None:
                    yield default


def _resolve(module: str, expr: ast.expr) -> str | None:
    """The string a condition expression stands for; None for a variable passed through."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return expr.value
    name = expr.id if isinstance(expr, ast.Name) else \
        expr.attr if isinstance(expr, ast.Attribute) else None
    if name is None or not name.isupper():
        return None  # plumbing: `alert(condition)` inside the manager, the sink, a monitor
    value = getattr(importlib.import_module(module), name)
    assert isinstance(value, str), f"{module}.{name} is not a condition name"
    return value


def raised_conditions() -> dict[str, set[str]]:
    """Condition -> modules that raise (or resolve) it, found in the source."""
    found: dict[str, set[str]] = {}
    for module, tree in _modules():
        for expr in _condition_args(tree):
            value = _resolve(module, expr)
            if value is not None:
                found.setdefault(value, set()).add(module)
    for condition in ALERTED_KINDS.values():
        found.setdefault(condition, set()).add("agent.observability.anomalies")
    return found


def test_the_scan_finds_a_condition_in_every_form_it_is_raised() -> None:
    code = """
manager.alert("a", x="1")
self._raise_alert("b")
raise_alert(ctx, "c", guard="g")
self._retry(item, 600, exc, alert="d")
monitors.manager.resolve("e")
def monitor(alerts, *, condition="f"): ...
self._alerts.alert(condition)          # a variable passed through: not a name
path.resolve()
"""
    found = {_resolve("agent.observability.alerts", expr)
             for expr in _condition_args(ast.parse(code))}
    assert found == {"a", "b", "c", "d", "e", "f", None}
    constant = ast.parse("alert(MODEL_AUTH_FAILED)").body[0]
    assert isinstance(constant, ast.Expr) and isinstance(constant.value, ast.Call)
    assert _resolve("agent.observability.alerts", constant.value.args[0]) == \
        "model_auth_failed"


def test_every_condition_raised_in_the_code_is_registered() -> None:
    raised = raised_conditions()
    assert len(raised) >= 10, f"the call-site scan found too little: {sorted(raised)}"
    unknown = {c: sorted(m) for c, m in raised.items() if c not in CONDITIONS}
    assert not unknown, f"add these to CONDITIONS in agent/observability/alerts.py: {unknown}"


def test_every_registered_condition_is_used_by_the_code() -> None:
    """A registry entry with no raiser is a dead runbook section."""
    alerts = ast.parse(read(ROOT / "agent" / "observability" / "alerts.py"))
    constants = {node.targets[0].id: str(node.value.value) for node in alerts.body
                 if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                 and isinstance(node.value, ast.Constant)
                 and node.value.value in CONDITIONS}
    used: set[str] = set(raised_conditions())
    for module, tree in _modules():
        skip = {id(n) for n in ast.walk(tree) if isinstance(n, ast.AnnAssign | ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "CONDITIONS"
                        for t in (n.targets if isinstance(n, ast.Assign) else [n.target]))}
        inside = {id(c) for n in ast.walk(tree) if id(n) in skip for c in ast.walk(n)}
        for node in ast.walk(tree):
            if id(node) in inside:
                continue
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) \
                    and node.id in constants:
                used.add(constants[node.id])
            elif isinstance(node, ast.Constant) and node.value in CONDITIONS \
                    and module.startswith("graph."):
                used.add(str(node.value))
    assert set(CONDITIONS) <= used, f"never raised: {sorted(set(CONDITIONS) - used)}"


# ------------------------------------------------------------------ the runbook


def runbook_groups() -> tuple[dict[str, str], dict[str, str]]:
    """(condition sections, Prometheus sections) of the runbook, by name."""
    text = read(RUNBOOK)
    top = raw_sections(text, 2)
    conditions = {code_name(t): b for t, b in raw_sections(top["Alerts from the bot"], 3)
                  .items() if code_name(t)}
    rules = {code_name(t): b for t, b in raw_sections(top["Prometheus alerts"], 3).items()
             if code_name(t)}
    return ({k: v for k, v in conditions.items() if k}, {k: v for k, v in rules.items() if k})


def test_the_runbook_has_one_section_per_condition() -> None:
    conditions, _ = runbook_groups()
    assert set(conditions) == set(CONDITIONS)


def test_each_condition_section_quotes_the_alert_text() -> None:
    conditions, _ = runbook_groups()
    for name, body in conditions.items():
        flat = " ".join(body.split())
        assert f'"{CONDITIONS[name]}"' in flat, f"{name}: quote its meaning line"


def test_every_prometheus_rule_has_a_section() -> None:
    rules = yaml.safe_load(read(RULES))
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    _, sections_ = runbook_groups()
    assert names and set(sections_) == names


def test_each_section_has_symptoms_checks_and_fixes_in_order() -> None:
    conditions, rules = runbook_groups()
    top = raw_sections(read(RUNBOOK), 2)
    bodies = {**conditions, **rules,
              "not answering": top["The bot is not answering at all"],
              "answering wrongly": top["The bot answers wrongly"]}
    for name, body in bodies.items():
        lines = [line.strip() for line in body.split("\n")]
        positions = [lines.index(part) if part in lines else -1 for part in PARTS]
        assert -1 not in positions and positions == sorted(positions), \
            f"{name}: needs {PARTS} lines, in that order"
        ends = [*positions[1:], len(lines)]
        for part, start, end in zip(PARTS, positions, ends, strict=True):
            assert any(lines[start + 1:end]), f"{name}: {part} is empty"


def test_the_runbook_starts_with_triage() -> None:
    top = list(raw_sections(read(RUNBOOK), 2))
    assert top[0] == "First five minutes"


def test_links_between_the_docs_resolve() -> None:
    texts = {path.name: read(path) for path in (RUNBOOK, GUIDE, OPERATIONS)}
    for name, text in texts.items():
        for target, anchor in re.findall(r"\]\(([\w.-]*)#([^)\s]+)\)", prose(text)):
            page = target or name
            if page in texts:
                assert anchor in anchors(texts[page]), f"{name}: broken link {page}#{anchor}"


def test_the_operations_catalogue_links_every_condition_to_the_runbook() -> None:
    text = read(OPERATIONS)
    catalogue = text.split("### Condition catalogue", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(0) for m in
            re.finditer(r"^\| `([a-z_]+)` \|.*$", catalogue, re.M)}
    assert set(rows) == set(CONDITIONS)
    for name, row in rows.items():
        assert f"(runbook.md#{name})" in row, f"catalogue row {name}: link the runbook"


# ------------------------------------------------------------------ commands in the docs


SEPARATORS = re.compile(r"\|\||&&|[|;#<>`)]|\$\(")
COMMAND = re.compile(r"(?<![\w/.\[-])signal-rag(?![\w.\]-])(.*)")


def cli_invocations(text: str) -> list[str]:
    """The argument part of every `signal-rag ...` in shell blocks and inline code."""
    found: list[str] = []
    spans = [body for info, body in blocks(text) if info.split(" ")[0] == "sh"]
    spans += re.findall(r"`([^`\n]+)`", prose(text))
    for span in spans:
        for line in span.split("\n"):
            for match in COMMAND.finditer(line):
                found.append(SEPARATORS.split(match.group(1), maxsplit=1)[0])
    return found


def is_group(command: object) -> bool:
    """A command with subcommands, told by its `commands` mapping: Typer 0.2x vendors its own
    copy of click, whose groups are not `click.Group`s."""
    return isinstance(getattr(command, "commands", None), dict)


def check_invocation(root: click.Command, rest: str) -> str | None:
    """None when `signal-rag <rest>` names existing subcommands and options, else why not."""
    tokens = shlex.split(rest)
    command, path = root, ["signal-rag"]
    while is_group(command) and tokens and tokens[0] != "--help":
        word = tokens.pop(0)
        sub = command.commands.get(word)
        if sub is None:
            return f"{' '.join(path)} has no subcommand {word!r}"
        command, path = sub, [*path, word]
    options = {"--help"} | {opt for param in command.params
                            for opt in (*param.opts, *param.secondary_opts)
                            if opt.startswith("-")}
    for token in tokens:
        if token.startswith("-") and token != "-" and token.split("=")[0] not in options:
            return f"{' '.join(path)} has no option {token!r}"
    return None


@pytest.mark.parametrize("doc", [RUNBOOK, GUIDE], ids=lambda p: p.name)
def test_every_signal_rag_command_and_flag_exists(doc: Path) -> None:
    root = typer.main.get_command(app)
    invocations = cli_invocations(read(doc))
    if doc == RUNBOOK:
        assert len(invocations) > 20, "the parser found too few commands"
    problems = [f"signal-rag{rest}: {why}" for rest in invocations
                if (why := check_invocation(root, rest))]
    assert not problems, problems


def test_the_command_checker_rejects_what_does_not_exist() -> None:
    root = typer.main.get_command(app)
    assert check_invocation(root, " audit stats --since 30m") is None
    assert check_invocation(root, " index verify") is None
    assert check_invocation(root, " audit stats --last 30m") is not None
    assert check_invocation(root, " index check") is not None
    assert check_invocation(root, " restart") is not None
    assert cli_invocations("run `signal-rag health --url x | jq`, not [signal-rag].") == \
        [" health --url x "]


@pytest.mark.parametrize("doc", [RUNBOOK, GUIDE], ids=lambda p: p.name)
def test_shell_blocks_follow_the_documentation_convention(doc: Path) -> None:
    for info, _ in blocks(read(doc)):
        words = info.split()
        if not words or words[0] != "sh":
            continue
        assert len(words) <= 2, info
        if len(words) == 1:
            continue
        key, _, value = words[1].partition("=")
        if key == "needs":
            assert value in NEEDS, info
        else:
            assert key == "tested-by", info
            path, _, name = value.partition("::")
            assert re.search(rf"^def {re.escape(name)}\(", read(ROOT / path), re.M), info


def test_the_queue_report_reads_a_real_store(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The runbook's read-only queue query runs against a store the bot wrote."""
    marker = "tested-by=tests/unit/project/test_runbook_and_guide.py::" \
        "test_the_queue_report_reads_a_real_store"
    body = next(body for info, body in blocks(read(RUNBOOK)) if info == f"sh {marker}")
    script = re.search(r"<<'EOF'\n(.*?)^EOF$", body, re.S | re.M)
    assert script is not None and 'python3 - "${SIGNAL_RAG_DATA_DIR:-./data}/inbox.sqlite3"' \
        in body
    path = tmp_path / "inbox.sqlite3"
    store = Store(path)
    waiting = store.admit("uuid-a", 1, "dm", {"text": "question one"})
    store.admit("uuid-b", 2, "dm", {"text": "question two"})
    assert waiting is not None
    store.record_reply(waiting.key, [ReplyPart(text="answer", recipient="uuid-a")])
    (part,) = store.due_outbox()
    store.mark_retry(part.id, 0.0, "SignalRateLimited")
    monkeypatch.setattr(sys, "argv", ["-", str(path)])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(script.group(1), "runbook", "exec"), {})  # the doc's own script
    store.close()
    assert out.getvalue().splitlines() == ["outbox pending, last error SignalRateLimited: 1",
                                           "inbox open, tried 1x: 1"]


# ------------------------------------------------------------------ the user guide


def _default(model: type[BaseModel], name: str) -> object:
    return model.model_fields[name].default


def expected_replies() -> dict[str, str]:
    """Every fixed reply a user can get, as the guide must quote it."""
    prefix = str(_default(AccessSettings, "command_prefix"))
    no_sources = "There is no earlier answer with sources in this chat."
    assert no_sources in inspect.getsource(CommandRunner._sources)
    replies = {
        "activated": ACTIVATED, "help": help_text(prefix),
        "info": info_text("N documents (M passages)", prefix), "no sources": no_sources,
        "reset": RESET, "forget": FORGOTTEN, "not admin": NOT_ADMIN,
        "unknown command": unknown_command_hint(prefix),
        "slow down": SLOW_DOWN.format(seconds="N"), "gave up": GAVE_UP,
        "model down": MODEL_DOWN_PREFIX,
    }
    limit = _default(Settings, "max_input_chars")
    for reason, text in MESSAGES.items():
        replies[f"fallback {reason}"] = text.format(limit=limit)
    return replies


def test_every_reply_quoted_in_the_guide_is_the_bots_text() -> None:
    quoted = {body.rstrip("\n") for info, body in blocks(read(GUIDE)) if info == "text"}
    expected = expected_replies()
    unknown = quoted - set(expected.values())
    assert not unknown, f"not a reply the bot sends (or drifted): {unknown}"
    missing = {name for name, text in expected.items() if text not in quoted}
    assert not missing, f"quote these replies in docs/user-guide.md: {sorted(missing)}"


def test_the_examples_have_the_shape_of_real_replies() -> None:
    examples = [body for info, body in blocks(read(GUIDE)) if info == "text example"]
    assert len(examples) == 2
    source = re.compile(r"\[\d+\] [^()\n]+ \([^()\n]+(, p\. \d+)?\)")
    answer, sources = examples
    body, _, listed = answer.partition("\n\nSources:\n")
    assert body and listed and all(source.fullmatch(line) for line in listed.splitlines())
    assert all(f"[{n}]" in body for n in range(1, len(listed.splitlines()) + 1))
    head, *lines = sources.splitlines()
    assert f'"{head}\\n"' in inspect.getsource(CommandRunner._sources).replace("'", '"')
    assert lines and all(source.fullmatch(line) for line in lines)


def test_every_chat_command_is_in_the_guide() -> None:
    text = prose(read(GUIDE))
    commands = {c.value for c in Command if c is not Command.UNKNOWN}
    missing = sorted(c for c in commands if f"`/{c}`" not in text)
    assert not missing, f"document these commands in docs/user-guide.md: {missing}"
    named = set(re.findall(r"`/([a-z]+)`", text))
    assert named <= commands, f"no such command: {sorted(named - commands)}"


def test_the_numbers_in_the_guide_are_the_code_defaults() -> None:
    text = " ".join(prose(read(GUIDE)).split())
    (failures,) = parse_many(DEFAULT_ACTIVATION_FAILURES)
    assert failures.GRANULARITY.name == "hour" and failures.multiples == 1
    hours = DEFAULT_LOCKOUT_SECONDS // 3600
    ttl = next(f.default for f in dataclasses.fields(GraphContext) if f.name == "memory_ttl")
    assert isinstance(ttl, float)
    minute, hour = parse_many(str(_default(LimitsSettings, "rates")))
    assert (minute.GRANULARITY.name, hour.GRANULARITY.name) == ("minute", "hour")
    phrases = [
        f"after {failures.amount} wrong passphrase attempts within an hour you are locked "
        f"out for {hours} hour",
        f"the last {MAX_EXCHANGES} exchanges",
        f"after {int(ttl) // 3600} hours without a message",
        f"{minute.amount} messages a minute and {hour.amount} an hour per person",
        f"up to {_default(Settings, 'max_input_chars')} characters",
        f"({_default(AnomalySettings, 'mute_minutes'):g} minutes by default)",
    ]
    missing = [phrase for phrase in phrases if phrase not in text]
    assert not missing, f"docs/user-guide.md no longer says: {missing}"
