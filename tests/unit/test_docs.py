"""The documentation stays true to the code."""

import re
from pathlib import Path

from agent.settings import Settings
from graph.builder import build_graph
from graph.drawing import draw

ROOT = Path(__file__).resolve().parents[2]


def test_architecture_diagram_matches_the_code():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- graph:start -->\n```mermaid\n(.*?)```\n<!-- graph:end -->", text,
                      re.S)
    assert match, "docs/architecture.md lost its generated diagram block"
    expected = str(draw(build_graph(), "mermaid")).rstrip("\n") + "\n"
    assert match.group(1) == expected, "diagram is stale: run `make graph-doc`"


def _env_names(model: type, prefix: str = "SIGNAL_RAG_") -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            names |= _env_names(annotation, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


def test_every_setting_is_documented():
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    missing = sorted(n for n in _env_names(Settings) if f"`{n}`" not in text)
    assert not missing, f"document these in docs/configuration.md: {missing}"


def test_readme_starts_with_the_two_commands():
    head = (ROOT / "README.md").read_text(encoding="utf-8")[:1500]
    assert "make run" in head and "make test" in head


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_every_log_event_is_documented_in_operations() -> None:
    """OBS-1: an operator can look up any event they see."""
    import re

    root = Path(__file__).resolve().parents[2]
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

    root = Path(__file__).resolve().parents[2]
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
