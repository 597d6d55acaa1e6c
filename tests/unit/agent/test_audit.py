"""The audit trail's file sink after a crash or a full disk cut its last line short."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.audit import JsonLinesAuditSink

TORN = b'{"ts":1.0,"route":"answ'


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def test_an_event_after_a_torn_line_starts_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"ts":0.5,"route":"answered"}\n' + TORN)
    sink = JsonLinesAuditSink(path)
    sink.emit({"route": "refused"})
    sink.emit({"route": "answered"})
    lines = _lines(path)
    assert lines[1] == TORN, "the damaged line stays as it was, alone"
    assert [json.loads(line)["route"] for line in lines[2:]] == ["refused", "answered"]


def test_a_clean_file_gets_no_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    JsonLinesAuditSink(path).emit({"route": "answered"})
    JsonLinesAuditSink(path).emit({"route": "answered"})
    assert len(_lines(path)) == 2 and b"" not in _lines(path)


def test_a_failed_write_makes_the_next_event_start_a_new_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonLinesAuditSink(path)
    real_open = Path.open

    def full_disk(self: Path, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        handle = real_open(self, *args, **kwargs)  # type: ignore[call-overload]
        handle.write(TORN.decode())  # what made it to disk before ENOSPC
        handle.close()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "open", full_disk)
    with pytest.raises(OSError, match="No space left"):
        sink.emit({"route": "answered"})
    monkeypatch.setattr(Path, "open", real_open)
    sink.emit({"route": "refused"})
    lines = _lines(path)
    assert lines[0] == TORN and json.loads(lines[1])["route"] == "refused"
