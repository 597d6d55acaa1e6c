"""Traffic drawn from the audit trail (graph/traffic.py, `signal-rag graph --from-audit`),
on a scripted audit file, and the run id the audit event shares with the trace."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from typer.testing import CliRunner

from agent.audit import MemoryAuditSink
from agent.cli import app
from agent.observability.tracing import build_tracer_provider, run_id, tracer_of
from graph import traffic
from graph.builder import build_graph
from graph.drawing import draw
from tests.unit.graph.graph_helpers import context

runner = CliRunner()
SHAPE = traffic.Shape.of(build_graph())
RUN = "4bf92f3577b34da6a3ce929d0e0e4736"
ANSWERED = {"sanitize": 1.0, "threat_check": 4.0, "retrieve": 20.0, "generate": 8.0,
            "output_guard": 2.0}


def event(route: str, timings: dict[str, Any], *, rid: str | None = None,
          ts: float | None = None, **extra: Any) -> dict[str, Any]:
    return {"ts": time.time() - 60 if ts is None else ts, "event": "graph_run",
            "run_id": rid or uuid.uuid4().hex, "route": route, "timings_ms": timings, **extra}


def scripted() -> list[dict[str, Any]]:
    """10 answered runs (retrieve 11..20 ms), a no_context, a threat, an empty message."""
    events = [event("answered", {**ANSWERED, "retrieve": float(11 + i)}) for i in range(10)]
    events.append(event("fallback:no_context", {"sanitize": 1.0, "threat_check": 4.0,
                                                "retrieve": 30.0, "fallback": 0.5,
                                                "output_guard": 1.0}))
    events.append(event("fallback:threat", {"sanitize": 1.0, "threat_check": 6.0,
                                            "fallback": 0.5, "output_guard": 1.0}, rid=RUN))
    events.append(event("fallback:empty", {"sanitize": 0.2, "fallback": 0.5,
                                           "output_guard": 1.0}))
    events.append({"ts": time.time(), "event": "anomaly", "kind": "burst"})  # not a run
    return events


def write(path: Path, events: list[Any], *extra_lines: str) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + "".join(
        line + "\n" for line in extra_lines), encoding="utf-8")
    return path


# --------------------------------------------------------------- failure paths first


@pytest.mark.parametrize("bad", ["", "xyz", "4bf92f35", "4bf92f3577b34da6a3ce929d0e0e47361",
                                 "../../etc/passwd", "4bf9\x1b[31m"])
def test_a_run_id_that_is_not_one_is_refused(bad: str):
    with pytest.raises(traffic.RunIdError):
        traffic.normalise_run_id(bad)


def test_run_ids_are_compared_in_one_form():
    assert traffic.normalise_run_id(str(uuid.UUID(RUN)).upper()) == RUN


@pytest.mark.parametrize("args", [["--run", RUN], ["--since", "24h"], ["--format", "json"]])
def test_since_run_and_json_need_an_audit_file(args: list[str]):
    result = runner.invoke(app, ["graph", *args])
    assert result.exit_code == 2
    assert "--from-audit" in result.stderr


def test_a_missing_audit_file_is_a_clear_error(tmp_path: Path):
    result = runner.invoke(app, ["graph", "--from-audit", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2
    assert "no audit log" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "yesterday"], "expected a duration"),
    (["--run", "not-a-run"], "not a run id"),
    (["--run", "0" * 32], "no run 000"),
])
def test_bad_since_or_unknown_run_exit_2(tmp_path: Path, args: list[str], message: str):
    path = write(tmp_path / "audit.jsonl", scripted())
    result = runner.invoke(app, ["graph", "--from-audit", str(path), *args])
    assert result.exit_code == 2
    assert message in result.stderr


def test_hostile_lines_are_counted_and_never_drawn(tmp_path: Path):
    """Forged node names, injected routes, bad numbers, paths the graph cannot take."""
    hostile = [
        event("answered", {**ANSWERED, "evil\"]; click x": 1.0}),           # unknown node
        event("answered", {**ANSWERED, "retrieve": float("nan")}),         # not finite
        event("answered", {**ANSWERED, "retrieve": -5.0}),                 # negative
        event("answered", {**ANSWERED, "retrieve": "20"}),                 # a string
        event("answered", {"sanitize": 1.0, "retrieve": 3.0, "output_guard": 1.0}),  # jump
        event("answered", "not a mapping"),
        {"event": "graph_run", "route": "answered"},                       # no timings
    ]
    injected = event('fallback:x"]; style sanitize fill:red %%<script>',
                     {"sanitize": 1.0, "fallback": 0.5, "output_guard": 1.0},
                     rid="\x1b]0;title\x07")
    path = write(tmp_path / "audit.jsonl", [*scripted(), *hostile, injected], "not json",
                 "[1, 2]", "\xff\xfe")
    result = runner.invoke(app, ["graph", "--from-audit", str(path)])
    assert result.exit_code == 0, result.stderr
    assert "skipped 3 malformed lines and 7 runs not on this graph" in result.stderr
    assert "evil" not in result.stdout and "script" not in result.stdout
    assert "\x1b" not in result.stdout
    assert "other 7%" in result.stdout  # the injected reason is counted as `other`
    assert "14 runs" in result.stdout


# --------------------------------------------------------------- figures


def test_paths_come_from_the_nodes_that_ran_in_graph_order():
    path = traffic.run_path(scripted()[11], SHAPE)
    assert path is not None
    assert path.nodes == ("__start__", "sanitize", "threat_check", "fallback", "output_guard",
                          "audit", "__end__")
    assert path.run_id == RUN and path.route == "fallback:threat"


def test_runs_per_edge_reasons_and_percentiles_on_a_scripted_file():
    window = traffic.collect(scripted(), SHAPE)
    assert window.runs == 13 and window.off_graph == 0
    runs = window.edge_runs
    assert runs[("__start__", "sanitize")] == 13
    assert runs[("sanitize", "threat_check")] == 12
    assert runs[("sanitize", "fallback")] == 1
    assert runs[("threat_check", "retrieve")] == 11
    assert runs[("retrieve", "generate")] == 10
    assert runs[("retrieve", "fallback")] == 1
    assert runs[("generate", "fallback")] == 0
    assert runs[("fallback", "output_guard")] == 3
    assert runs[("output_guard", "audit")] == runs[("audit", "__end__")] == 13
    assert window.reasons == {"no_context": 1, "threat": 1, "empty": 1}
    assert window.reasons_by_edge[("threat_check", "fallback")] == {"threat": 1}
    # retrieve: 11..20 from the answered runs and 30 → nearest rank p50 = 16, p95 = 30
    assert window.latency("retrieve") == (16.0, 30.0)
    assert window.latency("generate") == (8.0, 8.0)
    assert window.latency("audit") is None  # it emits the event: its time is not in it
    data = window.as_dict()
    assert data["fallback_reasons"]["threat"] == {"runs": 1, "share": pytest.approx(1 / 13,
                                                                                   abs=1e-4)}
    assert {"from": "generate", "to": "output_guard", "runs": 10} in data["edges"]


def test_since_keeps_the_window_and_drops_runs_of_unknown_age():
    now = 1_000_000.0
    events = [event("answered", ANSWERED, ts=now - 30), event("answered", ANSWERED,
                                                                ts=now - 7200),
              {**event("answered", ANSWERED), "ts": "yesterday"}]
    assert traffic.collect(events, SHAPE, since=now - 3600).runs == 1
    assert traffic.collect(events, SHAPE).runs == 3


def test_a_retried_message_has_two_runs_with_its_id_and_the_last_is_shown():
    first = event("fallback:model_error", {"sanitize": 1.0, "threat_check": 2.0,
                                           "retrieve": 9.0, "generate": 900.0,
                                           "fallback": 0.4, "output_guard": 1.0}, rid=RUN)
    second = event("answered", ANSWERED, rid=RUN)
    found, count = traffic.find_run([first, second], SHAPE, RUN)
    assert count == 2 and found is not None and found.route == "answered"


def test_mermaid_labels_every_edge_and_highlights_only_the_runs_path():
    events = scripted()
    run, _ = traffic.find_run(events, SHAPE, RUN)
    text = str(draw(build_graph(), "mermaid",
                    traffic.overlay(traffic.collect(events, SHAPE), run=run, window="24h")))
    assert text.startswith("---\ntitle: 13 runs in the last 24h · answered 77%")
    assert 'threat_check -.->|"1 (8%)<br/>threat 1"| fallback;' in text
    assert 'retrieve("retrieve<br/>p50 16 ms · p95 30 ms")' in text
    assert 'threat_check("threat_check<br/>p50 4.0 ms · p95 6.0 ms<br/>this run: 6.0 ms")' \
        in text
    edges = [line.strip() for line in text.splitlines() if re.search(r"-\.?->", line)]
    red = {int(m) for m in re.findall(r"linkStyle (\d+) stroke:#d1495b", text)}
    on_path = {i for i, line in enumerate(edges)
               if re.match(r"(__start__ --.*sanitize|sanitize -.*threat_check|threat_check -"
                           r".*fallback|fallback --.*output_guard|output_guard --.*audit|"
                           r"audit --.*__end__)", line)}
    assert red == on_path and len(red) == 6
    faint = {int(m) for m in re.findall(r"linkStyle (\d+) stroke:#bbbbbb", text)}
    assert faint == {i for i, line in enumerate(edges) if line.startswith("generate -.->|\"0 ")}


def test_cli_draws_png_svg_and_a_table(tmp_path: Path):
    path = write(tmp_path / "audit.jsonl", scripted())
    png, svg = tmp_path / "t.png", tmp_path / "t.svg"
    for fmt, out in (("png", png), ("svg", svg)):
        result = runner.invoke(app, ["graph", "--from-audit", str(path), "--run", RUN,
                                     "--since", "1h", "-f", fmt, "-o", str(out)])
        assert result.exit_code == 0, result.stderr
    assert png.read_bytes().startswith(b"\x89PNG")
    svg_text = svg.read_text(encoding="utf-8")
    assert "this run: 6.0 ms" in svg_text and "#d1495b" in svg_text
    table = runner.invoke(app, ["graph", "--from-audit", str(path), "-f", "ascii",
                                "--run", str(uuid.UUID(RUN))])
    assert table.exit_code == 0
    assert re.search(r"threat_check -> fallback\s+1\s+8%  \*", table.stdout)
    assert re.search(r"retrieve\s+16 ms\s+30 ms", table.stdout)
    assert f"run {RUN}: fallback:threat" in table.stdout


def test_cli_json_has_the_figures_and_the_run(tmp_path: Path):
    path = write(tmp_path / "audit.jsonl", scripted())
    result = runner.invoke(app, ["graph", "--from-audit", str(path), "-f", "json", "--run", RUN])
    assert result.exit_code == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["runs"] == 13
    assert figures["latency_ms"]["retrieve"] == {"p50": 16.0, "p95": 30.0, "runs": 11}
    assert figures["run"]["route"] == "fallback:threat"
    assert figures["run"]["path"][:3] == ["__start__", "sanitize", "threat_check"]


def test_the_static_drawing_is_unchanged_without_an_audit_file():
    assert draw(build_graph(), "mermaid") == build_graph().get_graph().draw_mermaid()


# --------------------------------------------------------------- the shared run id


async def test_the_audit_event_carries_the_configs_run_id():
    sink = MemoryAuditSink()
    graph = build_graph()
    rid = uuid.uuid4()
    await graph.ainvoke({"question": "How long is the lockout?", "user": "u"},
                        {"run_id": rid}, context=context(audit=sink))
    await graph.ainvoke({"question": "How long is the lockout?", "user": "u"},
                        context=context(audit=sink))
    assert sink.events[0]["run_id"] == rid.hex
    assert sink.events[1]["run_id"] is None


def test_run_id_is_the_trace_id_inside_a_span_and_random_outside():
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider({}, exporter=exporter, batch=False)
    with tracer_of(provider).start_as_current_span("bot handle") as span:
        inside = run_id()
    assert inside.hex == format(span.get_span_context().trace_id, "032x")
    assert run_id() != run_id()
    assert provider is not None
    provider.shutdown()
