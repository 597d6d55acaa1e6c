"""`signal-rag audit tail|stats` (OBS-2) on files with good, malformed and hostile lines."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agent.audit_cli import (
    compute_stats,
    follow_lines,
    last_lines,
    parse_since,
    percentile,
)
from agent.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("SIGNAL_RAG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SIGNAL_RAG_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "secrets").mkdir()
    monkeypatch.setenv("SIGNAL_RAG_SECRETS_DIR", str(tmp_path / "secrets"))
    (tmp_path / "data").mkdir()
    return tmp_path / "data" / "audit.jsonl"


def run(event: dict[str, Any], **overrides: Any) -> str:
    base = {"ts": time.time() - 60, "event": "graph_run", "user": "a" * 64,
            "route": "answered", "guard_rules": [], "hidden_text": False, "passages": 3,
            "citations": 1, "model": "extractive", "error": None,
            "timings_ms": {"sanitize": 0.1}, "total_ms": 10.0}
    return json.dumps({**base, **event, **overrides})


def write(path: Path, lines: list[str | bytes]) -> None:
    with path.open("wb") as handle:
        for line in lines:
            handle.write((line.encode() if isinstance(line, str) else line) + b"\n")


# Built when a test runs, not at import: a slow run (CI, 2 cores) reaches a test more than
# "30m" after collection, and events stamped at import would fall out of the window.
def good() -> list[str]:
    return [
        run({"user": "u1" * 32, "total_ms": 10.0}),
        run({"user": "u1" * 32, "total_ms": 20.0}),
        run({"user": "u2" * 32, "total_ms": 30.0, "route": "fallback:threat",
             "guard_rules": ["ignore_previous"]}),
        run({"user": "u3" * 32, "total_ms": 40.0, "route": "fallback:model_error",
             "error": "AuthenticationError", "model": "gpt-4o-mini"}),
        run({"user": "u3" * 32, "total_ms": 1000.0, "route": "fallback:output_blocked",
             "guard_rules": ["output:canary"]}),
        json.dumps({"ts": time.time() - 30, "event": "anomaly", "kind": "burst", "user": "u1",
                    "reason": "messages_in_window", "value": 8, "limit": 30}),
    ]


def old() -> list[str]:
    return [run({"ts": time.time() - 3 * 86400, "user": "old" * 20,
                 "route": "fallback:threat"})]


MALFORMED: list[str | bytes] = [
    '{"ts": 1, "route": "answe',                 # a crash mid-write
    "not json at all",
    "[1, 2, 3]",                                 # JSON but not an object
    b"\xff\xfe\x00 binary garbage",
    "{" * 100_000,                               # deep nesting
    "",                                          # blank lines are not malformed
]


def hostile() -> list[str]:
    return [
        run({"route": "answered\x1b[2J\x1b]0;owned\x07", "model": "m\r\nFAKE LINE",
             "user": "evil\x1b[31m", "guard_rules": ["r\n" * 3], "total_ms": "NaN"}),
        run({"total_ms": float("inf"), "ts": "yesterday"}),   # unusable ts: not counted
        run({"total_ms": 1e308, "route": ["a", "list"], "user": 12345}),
    ]


def test_stats_counts_routes_errors_latency_blocked_users(env: Path):
    write(env, [*old(), *good()])
    result = runner.invoke(app, ["audit", "stats", "--since", "24h", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["events"] == 5
    assert data["routes"] == {"answered": 2, "fallback:threat": 1, "fallback:model_error": 1,
                              "fallback:output_blocked": 1}
    assert data["errors"] == 1 and data["error_rate"] == 0.2
    assert data["latency_ms"] == {"p50": 30.0, "p95": 1000.0}
    assert data["blocked"] == 2
    assert data["guard_rules"] == {"ignore_previous": 1, "output:canary": 1}
    assert data["distinct_users"] == 3
    assert data["anomalies"] == {"burst": 1}
    assert data["malformed_lines"] == 0
    week = json.loads(runner.invoke(app, ["audit", "stats", "--since", "7d", "--json"]).stdout)
    assert week["events"] == 6 and week["distinct_users"] == 4


def test_stats_human_output(env: Path):
    write(env, good())
    result = runner.invoke(app, ["audit", "stats", "--since", "30m"])
    assert result.exit_code == 0
    out = result.stdout
    assert "last 30m: 5 messages, 3 distinct users" in out
    assert "error rate: 20.0% (1 errors)" in out
    assert "p50 30 ms, p95 1000 ms" in out and "blocked attempts: 2" in out
    assert "anomalies: burst 1" in out


def test_malformed_lines_are_counted_and_skipped(env: Path):
    write(env, [*good()[:2], *MALFORMED, good()[2]])
    result = runner.invoke(app, ["audit", "stats", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["events"] == 3 and data["malformed_lines"] == 5
    human = runner.invoke(app, ["audit", "stats"]).stdout
    assert "malformed lines skipped: 5" in human


def test_a_giant_line_is_skipped_without_breaking_the_next_ones(env: Path):
    write(env, [good()[0], '{"x": "' + "A" * (3 << 20) + '"}', good()[1]])
    data = json.loads(runner.invoke(app, ["audit", "stats", "--json"]).stdout)
    assert data["events"] == 2 and data["malformed_lines"] == 1


def test_hostile_values_never_reach_the_terminal_raw(env: Path):
    write(env, [*hostile(), good()[0]])
    for args in (["audit", "stats"], ["audit", "stats", "--json"], ["audit", "tail"],
                 ["audit", "tail", "--json"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout, args
        assert "\r" not in result.stdout and "\nFAKE LINE" not in result.stdout, args
    data = json.loads(runner.invoke(app, ["audit", "stats", "--json"]).stdout)
    assert data["events"] == 3, "the event with ts 'yesterday' has no known age"
    assert data["latency_ms"]["p50"] is not None
    tail = runner.invoke(app, ["audit", "tail"]).stdout.splitlines()
    assert "answered\\x1b[2J\\x1b]0;owned\\x07" in tail[0]
    assert "model=m\\x0d\\x0aFAKE LINE" in tail[0]


def test_tail_shows_the_last_n_events(env: Path):
    write(env, [run({"total_ms": float(i)}) for i in range(50)])
    result = runner.invoke(app, ["audit", "tail", "-n", "3", "--json"])
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["total_ms"] for e in lines] == [47.0, 48.0, 49.0]
    human = runner.invoke(app, ["audit", "tail"]).stdout.splitlines()
    assert len(human) == 20 and "answered" in human[-1] and "49 ms" in human[-1]


def test_tail_shows_the_run_id_that_graph_and_traces_take(env: Path):
    write(env, [run({"run_id": "1f0c2a9e-run"}), run({}),
                run({"run_id": "\x1b[2Jrun"})])
    human = runner.invoke(app, ["audit", "tail"]).stdout.splitlines()
    assert "run:1f0c2a9e-run" in human[0]
    assert "run:-" in human[1], "an event from before run ids has none to show"
    assert "\x1b" not in human[2] and "run:\\x1b[2Jrun" in human[2]


def test_tail_counts_malformed_lines_on_stderr(env: Path):
    write(env, [good()[0], "garbage", good()[1]])
    result = runner.invoke(app, ["audit", "tail"])
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 2
    assert "1 malformed lines skipped" in result.stderr


def test_missing_file_and_bad_since_are_usage_errors(env: Path, tmp_path: Path):
    result = runner.invoke(app, ["audit", "stats"])
    assert result.exit_code == 2 and "no audit log" in result.stderr
    write(env, good())
    result = runner.invoke(app, ["audit", "stats", "--since", "yesterday"])
    assert result.exit_code == 2 and "30m" in result.stderr
    other = tmp_path / "backup.jsonl"
    write(other, good()[:1])
    data = json.loads(runner.invoke(app, ["audit", "stats", "--json", "--file",
                                          str(other)]).stdout)
    assert data["events"] == 1


def test_parse_since_and_percentile():
    assert parse_since("30m") == 1800 and parse_since("24h") == 86400
    assert parse_since("7d") == 7 * 86400 and parse_since("1.5h") == 5400
    for bad in ("", "24", "h", "-1h", "1y", "1e9h"):
        with pytest.raises(ValueError, match="duration"):
            parse_since(bad)
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 95) == 95.0


def test_last_lines_reads_backwards_across_blocks(tmp_path: Path):
    path = tmp_path / "f"
    path.write_bytes(b"".join(f"line {i}\n".encode() for i in range(1000)))
    assert last_lines(path, 3, block=16) == [b"line 997", b"line 998", b"line 999"]
    assert last_lines(path, 0) == []
    assert len(last_lines(path, 5000, block=64)) == 1000


def test_follow_yields_appended_lines_and_survives_truncation(tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"old\n")
    sleeps = 0
    script = [b"one\n", b"tw", b"o\n", None, b"fresh\n"]  # None: rotate (truncate)

    def sleep(_seconds: float) -> None:
        nonlocal sleeps
        sleeps += 1
        if script:
            step = script.pop(0)
            if step is None:
                path.write_bytes(b"")
            else:
                with path.open("ab") as handle:
                    handle.write(step)

    seen = []
    for line in follow_lines(path, sleep=sleep, keep_going=lambda: sleeps < 20):
        seen.append(line)
    assert seen == [b"one\n", b"two\n", b"fresh\n"]


def test_compute_stats_ignores_events_without_a_time(env: Path):
    write(env, [json.dumps({"event": "graph_run", "route": "answered"}), good()[0]])
    stats = compute_stats(env, 3600, time.time())
    assert stats.events == 1 and stats.malformed == 0

