"""The documentation stays true to the code."""

import ast
import importlib.util
import re
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from agent import config_doc
from agent.settings import DOC_DEFAULT, ENV_PREFIX
from graph.builder import build_graph
from graph.contract import NODES
from graph.drawing import draw

ROOT = Path(__file__).resolve().parents[3]


def test_architecture_diagram_matches_the_code():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- graph:start -->\n```mermaid\n(.*?)```\n<!-- graph:end -->", text,
                      re.S)
    assert match, "docs/architecture.md lost its generated diagram block"
    expected = str(draw(build_graph(), "mermaid")).rstrip("\n") + "\n"
    assert match.group(1) == expected, "diagram is stale: run `make graph-doc`"


def test_architecture_node_table_lists_the_registry_s_nodes():
    spec = importlib.util.spec_from_file_location("update_graph_doc",
                                                  ROOT / "scripts" / "update_graph_doc.py")
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert script.table_nodes(text) == list(NODES), "one row per node, in graph.contract order"


def _code_words(source: str) -> set[str]:
    """Identifiers and string literals of Python code; docstrings and comments left out."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    words = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                words.add(node.value)
        elif isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.alias):
            words.add(node.asname or node.name)
    return words


def _reads(path: Path, name: str) -> bool:
    """Does the code in `path` (Python, shell or YAML) use the variable `name`?"""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        words = _code_words(text)
        short = name.removeprefix(ENV_PREFIX)
        return name in words or (short != name and short in words and "ENV_PREFIX" in words)
    code = "\n".join(line.split(" #")[0] for line in text.splitlines()
                     if not line.lstrip().startswith("#"))
    return re.search(r"\$\{?" + re.escape(name) + r"\b", code) is not None


def _place(place: str) -> Path:
    if place.startswith("module:"):
        spec = importlib.util.find_spec(place.removeprefix("module:"))
        assert spec is not None and spec.origin, f"no module {place}"
        return Path(spec.origin)
    return ROOT / place


def test_configuration_reference_is_generated_from_the_settings():
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert text == config_doc.render(), "docs/configuration.md is stale: run `make config-doc`"


def test_every_setting_has_a_description_and_every_group_a_title():
    assert config_doc.undocumented() == [], "document these in agent/settings.py"


def test_a_setting_without_description_is_caught():
    class Inner(BaseModel):
        documented: int = Field(1, description="has one")
        bare: int = 2

    class Outer(BaseModel):
        model_config = ConfigDict(title="Outer")
        blank: str = Field("", description="  ")
        inner: Inner = Inner()

    assert config_doc.undocumented(Outer) == [
        "SIGNAL_RAG_BLANK", "Inner (no title)", "SIGNAL_RAG_INNER__BARE"]
    with pytest.raises(ValueError, match="without a description or title: SIGNAL_RAG_BLANK"):
        config_doc.render(Outer)


def test_rows_mark_secrets_and_show_defaults_and_constraints():
    class Sample(BaseModel):
        model_config = ConfigDict(title="Sample")
        key: SecretStr | None = Field(None, description="the key")
        mode: Literal["a", "b"] = Field("a", description="how")
        named: Literal["x", "y"] = Field("x", description="`x` or `y`")
        ratio: float = Field(0.5, gt=0, lt=1, description="share")
        count: int = Field(3, ge=1, le=10, description="times")
        floor: float = Field(30.0, ge=0, description="seconds")
        prefix: str = Field("/", min_length=1, max_length=3, description="prefix")
        max_bytes: int = Field(2 * 1024 * 1024, description="size")
        where: Path | None = Field(None, description="path",
                                   json_schema_extra={DOC_DEFAULT: "`$DIR/x`"})
        flag: bool = Field(False, description="switch")
        empty: str = Field("", description="list")

    rows = config_doc.table_rows(config_doc.Group(Sample, "P_", "sample"))
    assert rows == [
        "| `P_KEY` | none | *secret*; the key |",
        "| `P_MODE` | `a` | how; allowed: one of `a`, `b` |",
        "| `P_NAMED` | `x` | `x` or `y` |",
        "| `P_RATIO` | `0.5` | share; allowed: above 0, below 1 |",
        "| `P_COUNT` | `3` | times; allowed: 1 to 10 |",
        "| `P_FLOOR` | `30` | seconds; allowed: at least 0 |",
        "| `P_PREFIX` | `/` | prefix; allowed: 1 to 3 characters |",
        "| `P_MAX_BYTES` | `2097152` (2 MB) | size |",
        "| `P_WHERE` | `$DIR/x` | path |",
        "| `P_FLAG` | `false` | switch |",
        "| `P_EMPTY` | empty | list |",
    ]


def test_every_setting_and_extra_variable_is_in_the_reference_once():
    text = config_doc.render()
    model_names = [f"{group.prefix}{name.upper()}" for group in config_doc.groups()
                   for name, info in group.model.model_fields.items()
                   if config_doc._nested_model(info) is None]
    extra_names = [variable.name for variable in config_doc.extra_variables()]
    assert len(set(model_names + extra_names)) == len(model_names) + len(extra_names)
    assert "SIGNAL_RAG_LLM__API_KEY" in model_names and "OTEL_SERVICE_NAME" in extra_names
    for name in model_names + extra_names:
        assert text.count(f"\n| `{name}` |") == 1, name


def test_extra_variables_are_really_read_by_the_code_named():
    unread = [(variable.name, place) for variable in config_doc.extra_variables()
              for place in variable.read_by
              if not _reads(_place(place), variable.name)]
    assert not unread, f"not read where agent/config_doc.py says: {unread}"


def test_a_mention_in_a_comment_or_docstring_is_not_a_read(tmp_path: Path):
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n# SIGNAL_RAG_X  the x folder\necho hi  # $SIGNAL_RAG_X\n")
    assert not _reads(script, "SIGNAL_RAG_X")
    script.write_text('#!/bin/sh\nx=${SIGNAL_RAG_X:-/x}\n')
    assert _reads(script, "SIGNAL_RAG_X")
    module = tmp_path / "m.py"
    module.write_text('"""Reads SIGNAL_RAG_SECRETS_DIR."""\nENV_PREFIX = "SIGNAL_RAG_"\n'
                      '# os.environ["SIGNAL_RAG_SECRETS_DIR"]\n')
    assert not _reads(module, "SIGNAL_RAG_SECRETS_DIR")
    module.write_text('import os\nENV_PREFIX = "SIGNAL_RAG_"\n'
                      'os.environ.get(ENV_PREFIX + "SECRETS_DIR")\n')
    assert _reads(module, "SIGNAL_RAG_SECRETS_DIR")


def test_config_doc_writes_prints_and_refuses_bad_arguments(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    target = tmp_path / "configuration.md"
    assert config_doc.main([str(target)]) == 0
    assert target.read_text(encoding="utf-8") == config_doc.render()
    assert config_doc.main([]) == 0
    assert capsys.readouterr().out == config_doc.render()
    assert config_doc.main(["a.md", "b.md"]) == 2
    assert config_doc.main(["--check"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["usage: python -m agent.config_doc [PATH]"] * 2


def test_readme_starts_with_the_two_commands():
    head = (ROOT / "README.md").read_text(encoding="utf-8")[:1500]
    assert "make run" in head and "make test" in head


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_every_log_event_is_documented_in_operations() -> None:
    """OBS-1: an operator can look up any event they see."""
    import re

    root = Path(__file__).resolve().parents[3]
    pattern = re.compile(r'log\.(?:info|warning|error|exception|debug)\("([a-z_]+)(%s)?"')
    events = set()
    for package in ("agent", "graph", "knowledge", "guards"):
        for path in (root / package).rglob("*.py"):
            for name, formatted in pattern.findall(path.read_text(encoding="utf-8")):
                events.add(name + ("*" if formatted else ""))
    doc = (root / "docs" / "operations.md").read_text(encoding="utf-8")
    missing = sorted(e for e in events if f"`{e.rstrip('*')}" not in doc)
    assert not missing, f"document these log events in docs/operations.md: {missing}"


def test_prometheus_rules_use_only_metrics_the_bot_exposes() -> None:
    import re

    import yaml

    from agent.observability.metrics import BotMetrics

    root = Path(__file__).resolve().parents[3]
    rules = yaml.safe_load((root / "docs" / "prometheus-rules.yml").read_text(encoding="utf-8"))
    used = {name for group in rules["groups"] for rule in group["rules"]
            for name in re.findall(r"signal_rag_[a-z_]+", rule["expr"])}
    metrics = BotMetrics()
    for counter in ("received", "answered", "refused", "failed"):
        getattr(metrics, counter).add(1)
    metrics.reply_latency.record(0.1)
    exposed = metrics.exposition().decode()
    metrics.shutdown()
    assert used and all(name in exposed for name in used), used


def test_every_exposed_metric_is_documented_in_operations() -> None:
    from opentelemetry.metrics import Counter, Histogram
    from prometheus_client.parser import text_string_to_metric_families

    from agent.observability.metrics import BotMetrics

    metrics = BotMetrics()
    for instrument in vars(metrics).values():
        if isinstance(instrument, Counter):
            instrument.add(1)
        elif isinstance(instrument, Histogram):
            instrument.record(0.1)
    exposed = metrics.exposition().decode()
    metrics.shutdown()
    names = {family.name for family in text_string_to_metric_families(exposed)
             if family.name.startswith("signal_rag_")}
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert len(names) >= 9, names
    missing = sorted(n for n in names if f"`{n}`" not in text and f"`{n}_total`" not in text)
    assert not missing, f"add these to the metrics table in docs/operations.md: {missing}"
