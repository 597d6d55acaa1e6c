"""`signal-rag audit tail|stats`: read the audit trail (`$SIGNAL_RAG_DATA_DIR/audit.jsonl`).

Why our own code: the file is ours (one JSON object per line, OBS-2) and the questions are
few (what happened lately, how often each route, error rate, latency percentiles); `jq`
is not always on a server, and a summary must survive a damaged or tampered line. Every
line is parsed as JSON and printed only re-serialised or as escaped fields, so a hostile
line cannot inject terminal escapes; malformed lines are counted and skipped.

This module imports only typer, the standard library and `graph.contract` (itself standard
library only), so `signal-rag --help` stays fast.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from graph.contract import ANSWERED, BLOCKED_ROUTES, ERROR_ROUTES, RUN_EVENT

EXIT_USAGE = 2
MAX_LINE_BYTES = 1 << 20
"""A longer line is not one of ours: skipped as malformed without reading it whole."""
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

app = typer.Typer(pretty_exceptions_show_locals=False, no_args_is_help=True,
                  help="Read the audit trail (one event per message).")


def parse_since(value: str) -> float:
    """`30m`, `24h`, `7d` (also `s`, `w`) → seconds; ValueError otherwise."""
    match = _SINCE.match(value)
    if not match:
        raise ValueError(f"expected a duration such as 30m, 24h or 7d, got {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def safe(value: object, limit: int = 80) -> str:
    """A value as one printable, bounded line."""
    text = _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                       else f"\\u{ord(m.group()):04x}", str(value))
    return text if len(text) <= limit else text[:limit] + "…"


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass(slots=True)
class ReadCounts:
    malformed: int = 0


def read_events(path: Path, counts: ReadCounts) -> Iterator[dict[str, Any]]:
    """Every JSON object line of `path`; anything else bumps `counts.malformed`."""
    with path.open("rb") as handle:
        while True:
            raw = handle.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                counts.malformed += 1
                while raw and not raw.endswith(b"\n"):  # skip the rest of the giant line
                    raw = handle.readline(MAX_LINE_BYTES)
                continue
            event = parse_line(raw)
            if event is None:
                if raw.strip():
                    counts.malformed += 1
                continue
            yield event


def parse_line(raw: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return event if isinstance(event, dict) else None


def last_lines(path: Path, count: int, block: int = 65536) -> list[bytes]:
    """The last `count` lines, reading backwards from the end (the file may be large)."""
    if count <= 0:
        return []
    with path.open("rb") as handle:
        handle.seek(0, 2)
        end = handle.tell()
        data = b""
        while end > 0 and data.count(b"\n") <= count:
            start = max(0, end - block)
            handle.seek(start)
            data = handle.read(end - start) + data
            end = start
    return [line for line in data.split(b"\n") if line.strip()][-count:]


def follow_lines(path: Path, *, sleep: Callable[[float], None] = time.sleep,
                 interval: float = 0.5,
                 keep_going: Callable[[], bool] = lambda: True) -> Iterator[bytes]:
    """Lines appended to `path` from now on; starts over when the file is truncated or
    replaced (rotation)."""
    handle = path.open("rb")
    try:
        handle.seek(0, 2)
        identity = path.stat().st_ino
        partial = b""
        while keep_going():
            chunk = handle.readline(MAX_LINE_BYTES + 1)
            if chunk:
                partial += chunk
                if partial.endswith(b"\n") or len(partial) > MAX_LINE_BYTES:
                    yield partial
                    partial = b""
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                stat = None
            if stat is not None and (stat.st_ino != identity or stat.st_size < handle.tell()):
                handle.close()
                handle = path.open("rb")
                identity = stat.st_ino
                partial = b""
                continue
            sleep(interval)
    finally:
        handle.close()


def describe(event: Mapping[str, Any]) -> str:
    """One human line per event; every value escaped and bounded."""
    ts = _number(event.get("ts"))
    when = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts is not None \
        and 0 <= ts < 1e11 else "-"
    kind = event.get("event", RUN_EVENT)
    user = safe(event.get("user", "-"), 16)
    if kind == "anomaly":
        return (f"{when}  user:{user}  anomaly {safe(event.get('kind'), 30)} "
                f"({safe(event.get('reason'), 40)})")
    if kind != RUN_EVENT:
        return f"{when}  {safe(kind, 40)}"
    total = _number(event.get("total_ms"))
    parts = [when, f"user:{user}", f"run:{safe(event.get('run_id') or '-', 36)}",
             safe(event.get("route", "-"), 40),
             f"{total:.0f} ms" if total is not None else "- ms",
             f"model={safe(event.get('model', '-'), 40)}"]
    rules = event.get("guard_rules")
    if isinstance(rules, list) and rules:
        parts.append("rules=" + safe(",".join(str(r) for r in rules), 80))
    if event.get("error"):
        parts.append(f"error={safe(event.get('error'), 60)}")
    return "  ".join(parts)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (no interpolation: every reported value occurred)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(slots=True)
class Stats:
    since_s: float
    events: int = 0
    routes: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    blocked: int = 0
    rules: Counter[str] = field(default_factory=Counter)
    anomalies: Counter[str] = field(default_factory=Counter)
    users: set[str] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    malformed: int = 0
    first_ts: float | None = None
    last_ts: float | None = None

    def add(self, event: Mapping[str, Any]) -> None:
        ts = _number(event.get("ts"))
        if ts is not None:
            self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
            self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        kind = event.get("event", RUN_EVENT)
        if kind == "anomaly":
            self.anomalies[safe(event.get("kind"), 40)] += 1
            return
        if kind != RUN_EVENT:
            return
        self.events += 1
        route = safe(event.get("route", "unknown"), 60)
        self.routes[route] += 1
        if route in ERROR_ROUTES or (event.get("error") and route != ANSWERED):
            self.errors += 1
        if route in BLOCKED_ROUTES:
            self.blocked += 1
        rules = event.get("guard_rules")
        if isinstance(rules, list):
            self.rules.update(safe(rule, 60) for rule in rules[:50])
        user = event.get("user")
        if isinstance(user, str) and user:
            self.users.add(user[:128])
        total = _number(event.get("total_ms"))
        if total is not None and total >= 0:
            self.latencies.append(total)

    def as_dict(self) -> dict[str, Any]:
        return {
            "since_s": self.since_s, "events": self.events,
            "routes": dict(self.routes.most_common()),
            "error_rate": round(self.errors / self.events, 4) if self.events else 0.0,
            "errors": self.errors,
            "latency_ms": {"p50": percentile(self.latencies, 50),
                           "p95": percentile(self.latencies, 95)},
            "blocked": self.blocked, "guard_rules": dict(self.rules.most_common(20)),
            "distinct_users": len(self.users),
            "anomalies": dict(self.anomalies.most_common()),
            "malformed_lines": self.malformed,
            "first_ts": self.first_ts, "last_ts": self.last_ts,
        }


def compute_stats(path: Path, since_s: float, now: float) -> Stats:
    """Summary of the events of the last `since_s` seconds (events without a usable `ts`
    are not counted: their age is unknown)."""
    counts = ReadCounts()
    stats = Stats(since_s=since_s)
    cutoff = now - since_s
    for event in read_events(path, counts):
        ts = _number(event.get("ts"))
        if ts is not None and ts >= cutoff:
            stats.add(event)
    stats.malformed = counts.malformed
    return stats


def render_stats(stats: Stats) -> str:
    data = stats.as_dict()
    lines = [f"Audit events in the last {_duration(stats.since_s)}: {stats.events} "
             f"messages, {data['distinct_users']} distinct users"]
    for route, count in data["routes"].items():
        lines.append(f"  {route:<28} {count:>8}")
    p50, p95 = data["latency_ms"]["p50"], data["latency_ms"]["p95"]
    lines.append(f"error rate: {data['error_rate'] * 100:.1f}% ({stats.errors} errors)")
    lines.append("latency (total): " + (f"p50 {p50:.0f} ms, p95 {p95:.0f} ms"
                                        if p50 is not None and p95 is not None else "no data"))
    lines.append(f"blocked attempts: {stats.blocked}")
    if data["guard_rules"]:
        lines.append("guard rules: " + ", ".join(f"{rule} {count}" for rule, count
                                                  in data["guard_rules"].items()))
    if data["anomalies"]:
        lines.append("anomalies: " + ", ".join(f"{kind} {count}" for kind, count
                                                in data["anomalies"].items()))
    if stats.malformed:
        lines.append(f"malformed lines skipped: {stats.malformed}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _audit_file(file: Path | None) -> Path:
    if file is None:
        from agent.settings import ConfigError, load_settings

        try:
            file = load_settings().data_dir / "audit.jsonl"
        except ConfigError as exc:
            _fail(str(exc))
    if not file.is_file():
        _fail(f"no audit log at {file} (set SIGNAL_RAG_DATA_DIR or use --file)")
    return file


FileOption = Annotated[Path | None, typer.Option(
    "--file", help="Audit log (default: $SIGNAL_RAG_DATA_DIR/audit.jsonl).")]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON output.")]


@app.command("tail")
def tail(lines: Annotated[int, typer.Option("-n", "--lines", min=0, max=100_000,
                                            help="Events to show.")] = 20,
         follow: Annotated[bool, typer.Option("--follow", "-f",
                                              help="Keep printing new events.")] = False,
         as_json: JsonOption = False, file: FileOption = None) -> None:
    """The last events, one per line; with --follow, new ones as they are written."""
    path = _audit_file(file)
    malformed = 0

    def show(raw: bytes) -> None:
        nonlocal malformed
        event = parse_line(raw)
        if event is None:
            malformed += 1
            return
        typer.echo(json.dumps(event, ensure_ascii=True, separators=(",", ":")) if as_json
                   else describe(event))

    for raw in last_lines(path, lines):
        show(raw)
    if follow:
        try:
            for raw in follow_lines(path):
                show(raw)
        except KeyboardInterrupt:
            pass
    if malformed:
        typer.echo(f"{malformed} malformed lines skipped", err=True)


@app.command("stats")
def stats(since: Annotated[str, typer.Option(help="Window: 30m, 24h, 7d.")] = "24h",
          as_json: JsonOption = False, file: FileOption = None) -> None:
    """Counts per route, error rate, p50/p95 latency, blocked attempts, distinct users."""
    try:
        window = parse_since(since)
    except ValueError as exc:
        _fail(str(exc))
    result = compute_stats(_audit_file(file), window, time.time())
    if as_json:
        typer.echo(json.dumps(result.as_dict(), ensure_ascii=True, indent=2))
    else:
        typer.echo(render_stats(result))
