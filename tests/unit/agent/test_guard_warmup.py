"""`serve` warms the output guard in the background after its health server is up; a
warm-up that fails is logged and every reply still fails closed in the guard."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from agent.serve import warm_guards
from guards import output
from guards.output import OutputPolicy, check_output


class _Assistant:
    @staticmethod
    def warm_guards() -> None:
        output.warm()


def policy() -> OutputPolicy:
    return OutputPolicy(canary="SRC-0123456789abcdef01234567", system_prompt="be helpful",
                        allowed_urls=frozenset(), max_chars=1000)


def test_a_failed_warm_up_is_logged_and_replies_fail_closed(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> tuple[Any, ...]:
        raise ImportError("the guard is broken")

    monkeypatch.setattr(output, "_checks", None)  # as in a fresh process
    monkeypatch.setattr(output, "_build_checks", broken)
    with caplog.at_level(logging.ERROR):
        warm_guards(_Assistant())  # type: ignore[arg-type]
    assert [r.message for r in caplog.records] == ["output_guard_warm_up_failed"]
    with pytest.raises(ImportError):  # the reply is never sent unchecked
        check_output("hello [1]", policy())


def test_a_reply_before_the_warm_up_waits_for_it_and_is_checked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output, "_checks", None)  # not warmed yet
    verdict = check_output(f"leak {policy().canary}", policy())
    assert not verdict.passed and "canary" in verdict.reasons


def test_the_injection_encoder_is_loaded_at_start_up_when_it_is_on(
        caplog: pytest.LogCaptureFixture) -> None:
    """Switched on, the encoder loads with the output guard (not on the first message, in a
    run); a missing model is logged then, as a broken output guard is."""
    from types import SimpleNamespace

    from agent.assistant import Assistant
    from guards.learned import DetectorUnavailableError

    loads: list[str] = []
    on = SimpleNamespace(_encoder=lambda: lambda: loads.append("encoder"))
    Assistant.warm_guards(on)  # type: ignore[arg-type]
    assert loads == ["encoder"]
    Assistant.warm_guards(SimpleNamespace(_encoder=lambda: None))  # type: ignore[arg-type]
    assert loads == ["encoder"], "off: nothing loaded"

    def missing() -> None:
        raise DetectorUnavailableError("injection encoder: no manifest.json")

    broken = SimpleNamespace(warm_guards=lambda: Assistant.warm_guards(
        SimpleNamespace(_encoder=lambda: missing)))  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR):
        warm_guards(broken)  # type: ignore[arg-type]
    assert [r.message for r in caplog.records] == ["output_guard_warm_up_failed"]
