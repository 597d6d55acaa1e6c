"""Alert monitors (OBS-6): error rate, disk space, reachability and the model's conditions,
each with a fake clock; the audit sink that feeds them; `build_alerting` from settings."""

from __future__ import annotations

import asyncio
from collections import namedtuple
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.observability.alerts import (
    DISK_SPACE_LOW,
    ERROR_RATE_HIGH,
    MODEL_AUTH_FAILED,
    MODEL_CIRCUIT_OPEN,
    MODEL_QUOTA_EXHAUSTED,
    SIGNAL_CLI_UNREACHABLE,
)
from agent.observability.monitors import (
    AlertingAuditSink,
    DiskSpaceMonitor,
    ErrorRateMonitor,
    ModelMonitor,
    UnreachableMonitor,
    build_alerting,
    conditions_for_event,
    exception_condition,
    model_error_condition,
)
from agent.settings import load_settings
from tests.unit.agent.observability.alert_fakes import Clock, Recorder


class Control:
    """An AlertControl that records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    def alert(self, condition: str, **fields: str) -> None:
        self.calls.append(("alert", condition, fields))

    def resolve(self, condition: str) -> None:
        self.calls.append(("resolve", condition, {}))

    def kinds(self) -> list[tuple[str, str]]:
        return [(c[0], c[1]) for c in self.calls]


def test_error_rate_needs_enough_samples_and_fires_over_ten_percent():
    clock, control = Clock(0.0), Control()
    monitor = ErrorRateMonitor(control, threshold=0.10, window=300, min_samples=20, clock=clock)
    monitor.observe(False)  # one failed message of one user
    assert control.calls == [], "a single failure does not page"
    for _ in range(18):
        clock.now += 1
        monitor.observe(True)
    clock.now += 1
    monitor.observe(True)   # 20 samples, 1 error: 5 %
    assert control.calls == []
    clock.now += 1
    monitor.observe(False)  # 21 samples, 2 errors: 9.5 %
    assert control.calls == []
    clock.now += 1
    monitor.observe(False)  # 22 samples, 3 errors: 13.6 %
    assert control.kinds() == [("alert", ERROR_RATE_HIGH)]
    assert control.calls[0][2]["messages"] == "22" and control.calls[0][2]["errors"] == "3"


def test_error_rate_resolves_when_rate_drops_or_window_empties():
    clock, control = Clock(0.0), Control()
    monitor = ErrorRateMonitor(control, window=300, min_samples=10, clock=clock)
    for _ in range(10):
        monitor.observe(False)
    assert control.kinds()[-1] == ("alert", ERROR_RATE_HIGH)
    for _ in range(200):
        clock.now += 0.5
        monitor.observe(True)  # 10/210 = 4.8 %
    assert control.kinds()[-1] == ("resolve", ERROR_RATE_HIGH) and not monitor.firing
    for _ in range(30):
        monitor.observe(False)  # 40/240 = 16.7 %
    assert control.kinds()[-1] == ("alert", ERROR_RATE_HIGH)
    clock.now += 301  # no traffic for a whole window
    monitor.check()
    assert control.kinds()[-1] == ("resolve", ERROR_RATE_HIGH)
    assert monitor.counts() == (0, 0)


def test_error_rate_memory_is_one_bucket_per_second():
    clock, control = Clock(0.0), Control()
    monitor = ErrorRateMonitor(control, window=300, clock=clock)
    for i in range(20_000):
        clock.now = i / 20  # 20 messages per second for 1000 s
        monitor.observe(True)
    assert len(monitor._buckets) <= 301
    assert monitor.counts() == (6_000, 0)


def test_error_rate_from_audit_routes():
    control = Control()
    monitor = ErrorRateMonitor(control, min_samples=4, clock=Clock(0.0))
    for route in ("answered", "fallback:threat", "fallback:no_context", "fallback:model_error"):
        monitor.observe_event({"event": "graph_run", "route": route})
    assert monitor.counts() == (4, 1) and control.kinds() == [("alert", ERROR_RATE_HIGH)]
    monitor.observe_event({"event": "anomaly", "kind": "burst"})
    assert monitor.counts() == (4, 1), "anomaly events are not messages"


Usage = namedtuple("Usage", "total used free")


def test_disk_monitor_fires_below_minimum_and_resolves(tmp_path: Path):
    control = Control()
    free = [2 * 1024 ** 3]
    monitor = DiskSpaceMonitor(control, tmp_path, usage=lambda _p: Usage(0, 0, free[0]))
    assert monitor.check() == 2 * 1024 ** 3
    assert control.kinds() == [("resolve", DISK_SPACE_LOW)]
    free[0] = 500 * 2 ** 20
    monitor.check()
    assert control.calls[-1] == ("alert", DISK_SPACE_LOW, {"free_mb": "500",
                                                           "min_free_mb": "1024"})


def test_disk_monitor_with_the_real_file_system(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    control = Control()
    assert DiskSpaceMonitor(control, tmp_path, min_free_bytes=1).check() is not None
    assert control.kinds() == [("resolve", DISK_SPACE_LOW)]
    huge = DiskSpaceMonitor(control, tmp_path, min_free_bytes=1 << 62)
    huge.check()
    assert control.kinds()[-1] == ("alert", DISK_SPACE_LOW)
    assert DiskSpaceMonitor(control, tmp_path / "missing").check() is None
    assert "disk_check_failed" in caplog.text


def test_unreachable_fires_after_n_minutes_without_a_break():
    clock, control = Clock(0.0), Control()
    monitor = UnreachableMonitor(control, after=300, clock=clock)
    monitor.observe(False)
    clock.now = 200
    monitor.observe(False)
    monitor.observe(True)   # a break resets the clock
    clock.now = 400
    monitor.observe(False)
    clock.now = 699
    monitor.observe(False)
    assert ("alert", SIGNAL_CLI_UNREACHABLE) not in control.kinds()
    clock.now = 700
    monitor.observe(False)
    assert control.calls[-1] == ("alert", SIGNAL_CLI_UNREACHABLE, {"down_s": "300"})
    monitor.observe(True)
    assert control.kinds()[-1] == ("resolve", SIGNAL_CLI_UNREACHABLE)


async def test_unreachable_run_probes_and_counts_exceptions_as_down():
    clock, control = Clock(0.0), Control()
    monitor = UnreachableMonitor(control, after=0, clock=clock)
    stop = asyncio.Event()
    probes = 0

    async def probe() -> bool:
        nonlocal probes
        probes += 1
        if probes == 2:
            stop.set()
        raise ConnectionError("daemon down")

    await asyncio.wait_for(monitor.run(stop, probe, interval=0.001), 2)
    assert probes == 2 and control.kinds()[0] == ("alert", SIGNAL_CLI_UNREACHABLE)


def test_model_error_conditions():
    assert model_error_condition("AuthenticationError") == MODEL_AUTH_FAILED
    assert model_error_condition("PermissionDeniedError") == MODEL_AUTH_FAILED
    assert model_error_condition("RateLimitError", "insufficient_quota") == MODEL_QUOTA_EXHAUSTED
    assert model_error_condition("RateLimitError", "rate_limit_exceeded") is None
    assert model_error_condition("RateLimitError") is None
    assert model_error_condition("APITimeoutError") is None
    assert model_error_condition(None) is None


def _openai_error(status: int, code: str | None) -> BaseException:
    import openai

    body = {"message": "m", "type": code or "requests", "param": None, "code": code}
    response = httpx.Response(status, request=httpx.Request("POST", "http://x/v1/chat"),
                              json={"error": body})
    client = openai.OpenAI(api_key="sk-test-key", base_url="http://x/v1")
    return client._make_status_error("m", body=body, response=response)


def test_exception_condition_reads_what_the_openai_client_raises():
    import openai

    quota = _openai_error(429, "insufficient_quota")
    limited = _openai_error(429, "rate_limit_exceeded")
    auth = _openai_error(401, "invalid_api_key")
    assert isinstance(quota, openai.RateLimitError) and isinstance(auth, openai.AuthenticationError)
    assert exception_condition(quota) == MODEL_QUOTA_EXHAUSTED
    assert exception_condition(limited) is None
    assert exception_condition(auth) == MODEL_AUTH_FAILED
    assert exception_condition(ValueError("x")) is None


def test_conditions_for_audit_events():
    assert conditions_for_event({"route": "fallback:model_error",
                                 "error": "AuthenticationError"}) == [MODEL_AUTH_FAILED]
    assert conditions_for_event({"route": "fallback:model_error", "error": "RateLimitError",
                                 "error_code": "insufficient_quota"}) == [MODEL_QUOTA_EXHAUSTED]
    assert conditions_for_event({"route": "fallback:model_error",
                                 "error": "RateLimitError"}) == []
    assert conditions_for_event({"route": "fallback:circuit_open"}) == [MODEL_CIRCUIT_OPEN]
    assert conditions_for_event({"route": "answered", "error": None}) == []
    assert conditions_for_event({"route": ["not", "a", "string"], "error": 42}) == []


def test_model_monitor_raises_from_events_and_resolves_on_a_model_answer():
    control = Control()
    monitor = ModelMonitor(control)
    monitor.observe_event({"route": "fallback:model_error", "error": "AuthenticationError",
                           "model": "gpt-4o-mini"})
    assert control.calls == [("alert", MODEL_AUTH_FAILED,
                              {"model": "gpt-4o-mini", "error": "AuthenticationError"})]
    monitor.observe_event({"route": "answered", "model": "extractive",
                           "timings_ms": {"generate": 1}})
    assert len(control.calls) == 1, "the offline answerer says nothing about the model"
    monitor.observe_event({"route": "answered", "model": "gpt-4o-mini",
                           "timings_ms": {"generate": 120.0}})
    assert {c[1] for c in control.calls if c[0] == "resolve"} == {
        MODEL_AUTH_FAILED, MODEL_QUOTA_EXHAUSTED, MODEL_CIRCUIT_OPEN}
    monitor.observe_circuit("open")
    monitor.observe_circuit("half_open")
    monitor.observe_circuit("closed")
    assert control.kinds()[-2:] == [("alert", MODEL_CIRCUIT_OPEN),
                                    ("resolve", MODEL_CIRCUIT_OPEN)]


def test_alerting_audit_sink_passes_events_on_even_when_a_monitor_fails(
        caplog: pytest.LogCaptureFixture):
    class Sink:
        def __init__(self) -> None:
            self.events: list[Any] = []

        def emit(self, event: Any) -> None:
            self.events.append(event)

    class Exploding(ModelMonitor):
        def observe_event(self, event: Any) -> None:
            raise KeyError("bug")

    inner, control = Sink(), Control()
    sink = AlertingAuditSink(inner, Exploding(control), ModelMonitor(control))
    sink.emit({"route": "fallback:circuit_open", "model": "m"})
    assert inner.events == [{"route": "fallback:circuit_open", "model": "m"}]
    assert control.kinds() == [("alert", MODEL_CIRCUIT_OPEN)]
    assert "alert_monitor_failed" in caplog.text


def test_build_alerting_from_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import os

    for name in list(os.environ):
        if name.startswith("SIGNAL_RAG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SIGNAL_RAG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SIGNAL_RAG_ACCESS__ADMINS", "a11ce000-0000-4000-8000-000000000001")
    monkeypatch.setenv("SIGNAL_RAG_ALERTS__WEBHOOK_URL", "https://hooks.example/T0/secret")
    monkeypatch.setenv("SIGNAL_RAG_ALERTS__COOLDOWN", "60")
    monkeypatch.setenv("SIGNAL_RAG_ALERTS__MIN_FREE_DISK_MB", "10")
    settings = load_settings(tmp_path / "none")
    assert "secret" not in repr(settings.alerts)

    async def send(recipient: str, text: str) -> None:
        return None

    monitors = build_alerting(settings, send)
    assert [n.name for n in monitors.manager.notifiers] == ["webhook", "signal"]
    assert monitors.manager.cooldown == 60 and monitors.disk.min_free_bytes == 10 * 2 ** 20
    assert monitors.reachability.after == 300 and monitors.errors.threshold == 0.10
    assert (monitors.probe_interval, monitors.disk_interval) == (30, 60)  # the defaults
    monkeypatch.setenv("SIGNAL_RAG_ALERTS__SIGNAL_CLI_CHECK_INTERVAL", "2")
    monkeypatch.setenv("SIGNAL_RAG_ALERTS__DISK_CHECK_INTERVAL", "1.5")
    short = build_alerting(load_settings(tmp_path / "none"), send)
    assert (short.probe_interval, short.disk_interval) == (2, 1.5)
    monkeypatch.setenv("SIGNAL_RAG_ALERTS__SIGNAL_ADMINS", "false")
    monkeypatch.delenv("SIGNAL_RAG_ALERTS__WEBHOOK_URL")
    assert build_alerting(load_settings(tmp_path / "none"), send).manager.notifiers == []


def test_webhook_url_setting_must_be_http(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from agent.settings import ConfigError

    monkeypatch.delenv("SIGNAL_RAG_ALERTS__WEBHOOK_URL", raising=False)
    monkeypatch.setenv("SIGNAL_RAG_ALERTS__WEBHOOK_URL", "gopher://x")
    with pytest.raises(ConfigError, match="SIGNAL_RAG_ALERTS__WEBHOOK_URL"):
        load_settings(tmp_path / "none")


async def test_monitors_run_delivers_and_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import os

    for name in list(os.environ):
        if name.startswith("SIGNAL_RAG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SIGNAL_RAG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SIGNAL_RAG_ALERTS__MIN_FREE_DISK_MB", str(1 << 40))  # always low
    monitors = build_alerting(load_settings(tmp_path / "none"))
    good = Recorder()
    monitors.manager.notifiers.append(good)
    stop = asyncio.Event()

    async def probe() -> bool:
        return True

    task = asyncio.create_task(monitors.run(stop, probe, circuit_state=lambda: "open",
                                            disk_interval=0.01, probe_interval=0.01))
    for _ in range(200):
        if len(good.got) == 2:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert sorted((n.condition, n.status) for n in good.got) == [
        (DISK_SPACE_LOW, "firing"), (MODEL_CIRCUIT_OPEN, "firing")]
