"""The audit trail's file sink: its writer thread, a torn last line, a full or stalled disk."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

import agent.audit
from agent.audit import JsonLinesAuditSink, flush_audit_files

TORN = b'{"ts":1.0,"route":"answ'


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def _disk(monkeypatch: pytest.MonkeyPatch, write: object) -> None:
    """The sink's `os` with `write` replaced (the rest of the process keeps the real one)."""
    monkeypatch.setattr(agent.audit, "os", types.SimpleNamespace(**{**vars(os), "write": write}))


def test_an_event_after_a_torn_line_starts_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"ts":0.5,"route":"answered"}\n' + TORN)
    sink = JsonLinesAuditSink(path)
    sink.emit({"route": "refused"})
    sink.emit({"route": "answered"})
    assert sink.flush(timeout=30)
    lines = _lines(path)
    assert lines[1] == TORN, "the damaged line stays as it was, alone"
    assert [json.loads(line)["route"] for line in lines[2:]] == ["refused", "answered"]


def test_a_clean_file_gets_no_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    for _ in range(2):
        sink = JsonLinesAuditSink(path)
        sink.emit({"route": "answered"})
        assert sink.flush(timeout=30)
    assert len(_lines(path)) == 2 and b"" not in _lines(path)


def test_a_write_cut_short_by_a_full_disk_is_resumed_without_loss_or_duplicate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The disk takes the first line and part of the second, then is full; once it has
    room again the rest follows on a new line: every event once, the fragment alone."""
    path = tmp_path / "audit.jsonl"
    sink = JsonLinesAuditSink(path, retry_interval=0)
    calls: list[int] = []

    def full_then_free(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return os.write(fd, data[:data.index(b"\n") + 7])  # a line and a fragment
        if len(calls) <= 3:
            raise OSError(28, "No space left on device")
        return os.write(fd, data)

    _disk(monkeypatch, full_then_free)
    with caplog.at_level(logging.WARNING, logger="agent.audit"), \
            sink._changed:  # the writer waits: the three events go out in one write
        for route in ("r0", "r1", "r2"):
            sink.emit({"route": route})
    assert sink.flush(timeout=30)
    lines = _lines(path)
    assert [json.loads(lines[i])["route"] for i in (0, 2, 3)] == ["r0", "r1", "r2"]
    assert lines[1] == b'{"ts":', "the fragment stays alone on its line"
    assert len(lines) == 4 and len(calls) == 4
    events = [record.getMessage() for record in caplog.records]
    assert events == ["audit_write_failed", "audit_write_recovered"], "one report each"


def test_a_stalled_disk_never_holds_up_emit_and_the_queue_is_bounded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonLinesAuditSink(path, max_pending=3)
    stalled, entered = threading.Event(), threading.Event()

    def hung(fd: int, data: bytes) -> int:
        entered.set()
        assert stalled.wait(timeout=30), "the test never released the disk"
        return os.write(fd, data)

    _disk(monkeypatch, hung)
    sink.emit({"route": "r0"})
    assert entered.wait(timeout=30), "the writer took the first event"
    with caplog.at_level(logging.ERROR, logger="agent.audit"):
        for route in ("r1", "r2", "r3", "r4", "r5"):  # returns while the disk hangs
            sink.emit({"route": route})
        assert not sink.flush(timeout=0) and sink.pending == 3
        assert sink.dropped == 3, "r0 in the write, r1 and r2 waiting, the rest refused"
        assert flush_audit_files(timeout=0) == 3
    assert [record.getMessage() for record in caplog.records] == [
        "audit_events_dropped", "audit_events_unwritten"]
    stalled.set()
    assert sink.flush(timeout=30) and flush_audit_files(timeout=30) == 0
    assert [json.loads(line)["route"] for line in _lines(path)] == ["r0", "r1", "r2"]


def test_an_idle_writer_stops_and_the_next_event_starts_another(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonLinesAuditSink(path, idle_seconds=0)
    for route in ("r0", "r1"):
        sink.emit({"route": route})
        writer = sink._writer
        assert writer is not None
        writer.join(timeout=30)
        assert not writer.is_alive() and sink._writer is None
    assert [json.loads(line)["route"] for line in _lines(path)] == ["r0", "r1"]


def test_events_still_queued_at_exit_reach_the_disk(tmp_path: Path) -> None:
    """`ask` emits its run's event and exits at once: the exit hook flushes the queue."""
    path = tmp_path / "audit.jsonl"
    code = ("import sys; from pathlib import Path; from agent.audit import JsonLinesAuditSink\n"
            "sink = JsonLinesAuditSink(Path(sys.argv[1]))\n"
            "for n in range(500): sink.emit({'route': 'answered', 'n': n})\n")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=120,
                   cwd=Path(__file__).resolve().parents[3])
    assert [json.loads(line)["n"] for line in _lines(path)] == list(range(500))


def test_a_writer_that_hits_a_bug_keeps_the_events_and_tries_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonLinesAuditSink(path, retry_interval=0)
    calls: list[int] = []

    def buggy_once(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            raise ValueError("not an OSError")
        return os.write(fd, data)

    _disk(monkeypatch, buggy_once)
    sink.emit({"route": "r0"})
    assert sink.flush(timeout=30)
    assert [json.loads(line)["route"] for line in _lines(path)] == ["r0"] and len(calls) == 2


async def test_serve_flushes_the_audit_writer_before_it_stops(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` returns only once the last runs' events are on disk: its own flush, not the
    exit hook, opens the gated disk here, so without that flush the file would be empty."""
    from types import SimpleNamespace

    from agent import serve

    path = tmp_path / "audit.jsonl"
    sink = JsonLinesAuditSink(path)
    gate = threading.Event()

    def gated(fd: int, data: bytes) -> int:
        assert gate.wait(timeout=30), "nothing flushed the audit writer"
        return os.write(fd, data)

    def flush_opens_the_gate(timeout: float = 10.0) -> int:
        gate.set()
        return flush_audit_files(timeout)

    async def handle_then_stop(_stop: object) -> None:
        for route in ("r0", "r1"):
            sink.emit({"route": route})

    async def no_fill(_service: object, _stop: object) -> None:
        return None

    async def closed() -> None:
        return None

    _disk(monkeypatch, gated)
    monkeypatch.setattr(serve, "flush_audit_files", flush_opens_the_gate)
    monkeypatch.setattr(serve, "start_passage_checks_when_ready", no_fill)
    service = SimpleNamespace(
        assistant=SimpleNamespace(warm_guards=lambda: None), run=handle_then_stop,
        transport=SimpleNamespace(aclose=closed), store=SimpleNamespace(close=lambda: None),
        users=SimpleNamespace(close=lambda: None), monitors=None, dependencies=None)
    await serve.run(service)  # type: ignore[arg-type]
    assert [json.loads(line)["route"] for line in _lines(path)] == ["r0", "r1"]
    assert sink.pending == 0
