"""`serve` starts the passage-check fill once the bot is first ready (or after a time
limit), not during start-up, where it held the GIL against it (benchmarks/startup.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from agent import serve
from agent.observability.readiness import Check


class _Assistant:
    def __init__(self) -> None:
        self.started = 0

    def start_passage_checks(self) -> None:
        self.started += 1


def _service(assistant: _Assistant) -> Any:
    return SimpleNamespace(assistant=assistant)


async def test_the_fill_waits_for_the_first_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([{"signal_cli": Check(False, "unreachable")},
                    {"signal_cli": Check(True, "reachable"), "inbox": Check(False, "old")},
                    {"signal_cli": Check(True, "reachable"), "inbox": Check(True, "0 open")}])
    asked: list[int] = []
    assistant = _Assistant()

    async def readiness(_service: Any) -> dict[str, Check]:
        asked.append(assistant.started)
        return next(answers)

    monkeypatch.setattr(serve, "service_readiness", readiness)
    await serve.start_passage_checks_when_ready(_service(assistant), asyncio.Event(),
                                                interval=0.001)
    assert asked == [0, 0, 0] and assistant.started == 1


async def test_the_fill_starts_anyway_after_the_time_limit_but_not_on_stop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def never_ready(_service: Any) -> dict[str, Check]:
        return {"signal_cli": Check(False, "unreachable")}

    async def failing(_service: Any) -> dict[str, Check]:
        raise RuntimeError("check failed")

    for readiness in (never_ready, failing):
        monkeypatch.setattr(serve, "service_readiness", readiness)
        assistant = _Assistant()
        await serve.start_passage_checks_when_ready(_service(assistant), asyncio.Event(),
                                                    interval=0.001, timeout=0.01)
        assert assistant.started == 1
    stop = asyncio.Event()
    stop.set()
    assistant = _Assistant()
    await serve.start_passage_checks_when_ready(_service(assistant), stop)
    assert assistant.started == 0  # stopping: seconds of CPU would only slow the drain
