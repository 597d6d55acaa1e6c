"""Operator alerts (OBS-6): the manager's de-duplication, cool-down and resolved messages,
delivery that survives broken notifiers, hostile fields; the webhook and Signal notifiers."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any

import httpx
import pytest

from agent.observability.alerts import (
    MAX_FIELD_CHARS,
    SIGNAL_CLI_UNREACHABLE,
    AlertManager,
    Notification,
    SignalAdminNotifier,
    WebhookNotifier,
)
from graph.context import Alerts
from tests.unit.agent.observability.alert_fakes import Clock, Recorder


class Broken:
    name = "broken"

    def __init__(self, exc: BaseException | None = None) -> None:
        self.calls = 0
        self.exc = exc or RuntimeError("boom")

    async def notify(self, notification: Notification) -> None:
        self.calls += 1
        raise self.exc


class Hanging:
    name = "hanging"

    async def notify(self, notification: Notification) -> None:
        await asyncio.Event().wait()  # never set: hangs until cancelled, no real sleep


def statuses(manager: AlertManager) -> list[tuple[str, str]]:
    """What is queued, without delivering it."""
    return [(n.condition, n.status) for n in manager._queue]


# ----------------------------------------------------------------- the manager


def test_manager_satisfies_both_alert_interfaces():
    manager = AlertManager(clock=Clock())
    alerts: Alerts = manager  # the graph's protocol (mypy checks this line too)
    alerts.alert("guard_error", guard="threat_check", error="ValueError")
    manager("index_corrupt")  # the service's callback signature
    assert statuses(manager) == [("guard_error", "firing"), ("index_corrupt", "firing")]
    assert manager.active == {"guard_error", "index_corrupt"}


def test_one_notification_per_condition_per_cooldown_with_repeat_count():
    clock = Clock()
    manager = AlertManager(cooldown=900, clock=clock)
    manager.alert("disk_space_low", free_mb="10")
    for _ in range(5):
        clock.now += 60
        manager.alert("disk_space_low", free_mb="9")
    manager.alert("error_rate_high")  # another condition is not held back
    assert statuses(manager) == [("disk_space_low", "firing"), ("error_rate_high", "firing")]
    assert manager.stats.suppressed == 5
    clock.now += 900 - 300  # 900 s after the first notification
    manager.alert("disk_space_low", free_mb="8")
    last = manager._queue[-1]
    assert (last.condition, last.status) == ("disk_space_low", "firing")
    assert last.fields == {"free_mb": "8", "repeats": "5"}


def test_resolved_once_and_only_for_active_conditions():
    clock = Clock()
    manager = AlertManager(clock=clock)
    manager.resolve("disk_space_low")  # never fired: nothing to say
    manager.alert("disk_space_low")
    clock.now += 10
    manager.resolve("disk_space_low")
    manager.resolve("disk_space_low")  # de-duplicated
    assert statuses(manager) == [("disk_space_low", "firing"), ("disk_space_low", "resolved")]
    assert not manager.is_active("disk_space_low")


def test_flapping_within_cooldown_stays_silent_until_the_cooldown_passes():
    clock = Clock()
    manager = AlertManager(cooldown=900, clock=clock)
    manager.alert("model_circuit_open")
    clock.now += 30
    manager.resolve("model_circuit_open")
    clock.now += 30
    manager.alert("model_circuit_open")      # back within the cool-down: tracked silently
    assert manager.is_active("model_circuit_open")
    clock.now += 30
    manager.resolve("model_circuit_open")    # admins never heard of this episode
    assert statuses(manager) == [("model_circuit_open", "firing"),
                                 ("model_circuit_open", "resolved")]
    clock.now += 60
    manager.alert("model_circuit_open")      # silent again (cool-down from the first)...
    clock.now += 900
    manager.alert("model_circuit_open")      # ...still there after it: notified
    clock.now += 5
    manager.resolve("model_circuit_open")
    assert statuses(manager)[2:] == [("model_circuit_open", "firing"),
                                     ("model_circuit_open", "resolved")]


def test_hostile_condition_names_and_fields_are_escaped_capped_and_redacted():
    manager = AlertManager(clock=Clock())
    manager.alert("evil\r\nInjected: yes\x1b[31m", detail="line1\r\nline2\x1b[2J\u202e",
                  huge="x" * 1_000_000, who="+15559876543 wrote 'hello'",
                  key="sk-proj-abcdefghijklmnopqrstuvwxyz", text="the user's question",
                  **{f"f{i}": "v" for i in range(40)})
    note = manager._queue[0]
    assert note.condition == "evil_injected:_yes_31m"
    for value in note.fields.values():
        assert "\n" not in value and "\r" not in value and "\x1b" not in value
        assert len(value) <= MAX_FIELD_CHARS + 1
    assert note.fields["detail"] == "line1\\r\\nline2\\u202e"
    assert "+15559876543" not in note.fields["who"] and "[phone]" in note.fields["who"]
    assert note.fields["key"] == "[secret]"
    assert note.fields["text"] == "[redacted]"
    assert len(note.fields) <= 16
    body = json.dumps(note.payload())
    assert "\\n" not in note.text().split("\n")[0] and len(body) < 10_000


def test_alert_never_raises_even_with_broken_input_and_is_thread_safe():
    manager = AlertManager(clock=Clock(), cooldown=0)

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    manager.alert("x", bad=Unprintable())  # type: ignore[arg-type]  # a caller's bug
    assert manager._queue[0].fields == {"bad": "[unprintable]"}, "the alert still goes out"
    manager.resolve(Unprintable())  # type: ignore[arg-type]
    manager.resolve("x")
    threads = [threading.Thread(target=lambda: [manager.alert(f"c{i % 7}") for i in range(200)])
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert manager.stats.queued + manager.stats.dropped == 2 + 8 * 200
    assert manager.active == {f"c{i}" for i in range(7)}


def test_queue_is_bounded_and_drops_are_counted():
    manager = AlertManager(clock=Clock(), queue_size=3)
    for i in range(10):
        manager.alert(f"condition_{i}")
    assert manager.pending == 3 and manager.stats.dropped == 7
    manager._queue.clear()  # delivered
    manager.alert("condition_9")  # its first notification was dropped: not held back now
    manager.alert("condition_0")  # this one went out: the cool-down holds it back
    assert statuses(manager) == [("condition_9", "firing")]


def test_condition_table_is_bounded():
    manager = AlertManager(clock=Clock())
    for i in range(2000):
        manager.alert(f"c{i}")
        manager.resolve(f"c{i}")
    assert len(manager._conditions) <= 256


async def test_delivery_in_background_survives_failing_and_hanging_notifiers(
        caplog: pytest.LogCaptureFixture):
    good, broken = Recorder(), Broken()
    manager = AlertManager([broken, Hanging(), good], notify_timeout=0.05, clock=Clock())
    await manager.start()
    manager.alert("index_corrupt")
    manager.resolve("index_corrupt")
    for _ in range(100):
        if len(good.got) == 2:
            break
        await asyncio.sleep(0.01)
    await manager.aclose()
    assert [(n.condition, n.status) for n in good.got] == [("index_corrupt", "firing"),
                                                           ("index_corrupt", "resolved")]
    assert broken.calls == 2
    assert manager.stats.delivered == 2 and manager.stats.failed == 4
    failures = [r for r in caplog.records if r.getMessage() == "alert_delivery_failed"]
    assert {r.__dict__["notifier"] for r in failures} == {"broken", "hanging"}
    assert {r.__dict__["error"] for r in failures} == {"RuntimeError", "TimeoutError"}


async def test_alerts_raised_before_start_and_at_stop_are_delivered():
    good = Recorder()
    manager = AlertManager([good], clock=Clock())
    manager.alert("early")
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    await asyncio.sleep(0.01)
    manager.alert("late")
    stop.set()
    await asyncio.wait_for(task, 2)
    assert [n.condition for n in good.got] == ["early", "late"]


async def test_alert_from_another_thread_wakes_the_delivery_loop():
    good = Recorder()
    manager = AlertManager([good], clock=Clock())
    await manager.start()
    await asyncio.to_thread(manager.alert, "guard_error", guard="output_guard")
    for _ in range(100):
        if good.got:
            break
        await asyncio.sleep(0.01)
    await manager.aclose()
    assert [n.fields for n in good.got] == [{"guard": "output_guard"}]


def test_notification_payload_and_text():
    note = Notification("disk_space_low", "firing", {"free_mb": "812"}, 1_764_424_800.0)
    assert note.payload() == {"condition": "disk_space_low", "status": "firing",
                              "fields": {"free_mb": "812"},
                              "at": "2025-11-29T14:00:00+00:00", "service": "signal-rag"}
    text = note.text()
    assert text.startswith("[signal-rag] ALERT disk_space_low\n")
    assert "free_mb: 812" in text and "below the minimum" in text
    resolved = Notification("disk_space_low", "resolved", {}, 1_764_424_800.0)
    assert resolved.text().startswith("[signal-rag] RESOLVED disk_space_low")


# ----------------------------------------------------------------- notifiers


def webhook_with(handler: Any, **kwargs: Any) -> tuple[WebhookNotifier, list[float]]:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return WebhookNotifier("https://hooks.example/abc", client=client, sleep=sleep,
                           **kwargs), sleeps


async def test_webhook_retries_once_on_5xx_then_succeeds():
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(503 if len(bodies) == 1 else 204)

    webhook, sleeps = webhook_with(handler)
    await webhook.notify(Notification("error_rate_high", "firing", {"rate": "0.5"}, 0.0))
    assert len(bodies) == 2 and sleeps == [1.0] and webhook.sent == 1
    assert bodies[0]["condition"] == "error_rate_high" and bodies[0]["status"] == "firing"


@pytest.mark.parametrize(("response", "expected_calls"), [(400, 1), (404, 1), (429, 2), (500, 2)])
async def test_webhook_failures_are_logged_not_raised(response: int, expected_calls: int,
                                                      caplog: pytest.LogCaptureFixture):
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(response)

    webhook, _ = webhook_with(handler)
    await webhook.notify(Notification("x", "firing", {}, 0.0))  # must not raise
    assert len(calls) == expected_calls
    failed = [r for r in caplog.records if r.getMessage() == "webhook_failed"]
    assert [r.__dict__["outcome"] for r in failed] == [f"status_{response}"]
    ours = "\n".join(str(r.__dict__) for r in caplog.records if r.name.startswith("agent"))
    assert "hooks.example" not in ours, "the URL (it may hold a token) is never logged"


async def test_webhook_network_error_is_retried_once_and_logged(caplog: pytest.LogCaptureFixture):
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    webhook, sleeps = webhook_with(handler)
    await webhook.notify(Notification("x", "firing", {}, 0.0))
    assert sleeps == [1.0]
    failed = [r for r in caplog.records if r.getMessage() == "webhook_failed"]
    assert failed[0].__dict__["outcome"] == "ConnectError" and failed[0].__dict__["attempts"] == 2


def test_webhook_refuses_other_schemes():
    with pytest.raises(ValueError, match="http"):
        WebhookNotifier("file:///etc/passwd")


async def test_signal_notifier_messages_every_admin_and_survives_one_failure(
        caplog: pytest.LogCaptureFixture):
    sent: list[tuple[str, str]] = []

    async def send(recipient: str, text: str) -> None:
        if recipient == "+15559876543":
            raise ConnectionError("down")
        sent.append((recipient, text))

    admins = ["a11ce000-0000-4000-8000-000000000001", "+15559876543", "+15550001002"]
    notifier = SignalAdminNotifier(send, admins)
    await notifier.notify(Notification("index_corrupt", "firing", {}, 0.0))
    assert sorted(r for r, _ in sent) == sorted([admins[0], admins[2]])
    assert all(t.startswith("[signal-rag] ALERT index_corrupt") for _, t in sent)
    failed = [r for r in caplog.records if r.getMessage() == "admin_alert_failed"]
    assert len(failed) == 1 and failed[0].__dict__["error"] == "ConnectionError"
    assert "+15559876543" not in caplog.text


async def test_signal_notifier_skips_what_signal_cannot_carry_and_raises_when_all_fail():
    calls: list[str] = []

    async def send(recipient: str, text: str) -> None:
        calls.append(recipient)
        raise OSError("no")

    notifier = SignalAdminNotifier(send, ["x", "y"])
    await notifier.notify(Notification(SIGNAL_CLI_UNREACHABLE, "firing", {}, 0.0))
    assert calls == []
    with pytest.raises(OSError, match="no"):  # the manager counts it as a failed delivery
        await notifier.notify(Notification("index_corrupt", "firing", {}, 0.0))
    assert sorted(calls) == ["x", "y"]


def test_operator_alert_log_event_is_content_free(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    manager = AlertManager(clock=Clock())
    manager.alert("guard_error", guard="threat_check", error="ValueError",
                  name="clashes with LogRecord.name", message="and .message")
    records = [r for r in caplog.records if r.getMessage() == "operator_alert"]
    assert len(records) == 1 and records[0].levelno == logging.ERROR
    assert records[0].__dict__["fields"]["guard"] == "threat_check"
    assert records[0].__dict__["fields"]["name"] == "clashes with LogRecord.name"
