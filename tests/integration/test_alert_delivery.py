"""Alerts leave the process for real (OBS-6): a webhook POST to a loopback HTTP server, a
Signal message to each admin through the real transport and the daemon simulator, and the
quota condition read from what the real openai client raises against a loopback server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent.observability.alerts import (
    MODEL_AUTH_FAILED,
    MODEL_QUOTA_EXHAUSTED,
    AlertManager,
    SignalAdminNotifier,
    WebhookNotifier,
)
from agent.observability.monitors import exception_condition
from agent.signal import create_transport
from agent.signal.reconnect import Backoff
from agent.testing.openai_server import FakeOpenAIServer, Status
from agent.testing.signal_daemon import (
    ALICE_UUID,
    BOB_NUMBER,
    BOT_NUMBER,
    NETWORK_FAILURE,
    fake_signal_daemon,
)


class Hook:
    """A loopback webhook receiver: records each POST; answers scripted statuses."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.statuses: list[int] = []
        self.got = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                hook.headers.append(dict(self.headers))
                hook.received.append(json.loads(body))
                status = hook.statuses.pop(0) if hook.statuses else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                hook.got.set()

            def log_message(self, *_args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    receiver = Hook()
    yield receiver
    receiver.close()


async def _until(predicate: Any, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def test_webhook_receives_firing_and_resolved_json(hook: Hook) -> None:
    webhook = WebhookNotifier(hook.url, retry_delay=0.01)
    manager = AlertManager([webhook], cooldown=900)
    await manager.start()
    try:
        manager.alert("disk_space_low", free_mb="812", min_free_mb="1024")
        manager.alert("disk_space_low", free_mb="811")  # within the cool-down: held back
        manager.resolve("disk_space_low")
        await _until(lambda: len(hook.received) == 2)
    finally:
        await manager.aclose()
        await webhook.aclose()
    firing, resolved = hook.received
    assert set(firing) == {"condition", "status", "fields", "at", "service"}
    assert firing["condition"] == "disk_space_low" and firing["status"] == "firing"
    assert firing["fields"] == {"free_mb": "812", "min_free_mb": "1024"}
    assert firing["service"] == "signal-rag" and firing["at"].endswith("+00:00")
    assert resolved["status"] == "resolved" and resolved["fields"] == {}
    assert hook.headers[0]["Content-Type"] == "application/json"
    assert manager.stats.delivered == 2 and manager.stats.suppressed == 1


async def test_webhook_retries_a_503_once_over_real_http(hook: Hook) -> None:
    hook.statuses = [503]
    webhook = WebhookNotifier(hook.url, retry_delay=0.01)
    manager = AlertManager([webhook])
    await manager.start()
    manager.alert(MODEL_AUTH_FAILED, model="gpt-4o-mini", error="AuthenticationError")
    await _until(lambda: len(hook.received) == 2)
    await manager.aclose()
    await webhook.aclose()
    assert hook.received[0] == hook.received[1] and webhook.sent == 1


async def test_unreachable_webhook_does_not_block_other_notifiers(
        caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    webhook = WebhookNotifier(f"http://127.0.0.1:{port}/x", retry_delay=0.01, timeout=1.0)

    class Recorder:
        name = "recorder"

        def __init__(self) -> None:
            self.got: list[str] = []

        async def notify(self, notification: Any) -> None:
            self.got.append(notification.condition)

    recorder = Recorder()
    manager = AlertManager([webhook, recorder])
    await manager.start()
    manager.alert("index_corrupt")
    await _until(lambda: "webhook_failed" in caplog.text)
    await manager.aclose()
    await webhook.aclose()
    assert recorder.got == ["index_corrupt"]
    failed = [r for r in caplog.records if r.getMessage() == "webhook_failed"]
    assert failed[0].__dict__["outcome"] == "ConnectError" and failed[0].__dict__["attempts"] == 2


async def test_signal_admins_each_get_the_alert_through_the_transport() -> None:
    with fake_signal_daemon(keepalive_interval=0.2, tcp=False) as sim:
        transport = create_transport(sim.http_url, account=BOT_NUMBER, stale_after=2.0,
                                     backoff=Backoff(initial=0.05, cap=0.2))

        async def send(recipient: str, text: str) -> None:
            await transport.send(text, recipients=[recipient])

        notifier = SignalAdminNotifier(send, [ALICE_UUID, BOB_NUMBER])
        manager = AlertManager([notifier])
        await manager.start()
        try:
            manager.alert("index_corrupt", error="KnowledgeIndexError")
            await sim.wait_for("send", 2)
            manager.alert("signal_cli_unreachable")  # Signal cannot carry this one
            manager.resolve("index_corrupt")
            await sim.wait_for("send", 4)
        finally:
            await manager.aclose()
            await transport.aclose()
        sends = sim.sent("send")
        assert sorted(s["recipient"][0] for s in sends[:2]) == sorted([ALICE_UUID, BOB_NUMBER])
        assert all(s["message"].startswith("[signal-rag] ALERT index_corrupt\n")
                   for s in sends[:2])
        assert "error: KnowledgeIndexError" in sends[0]["message"]
        assert all(s["message"].startswith("[signal-rag] RESOLVED index_corrupt")
                   for s in sends[2:])
        assert len(sends) == 4


async def test_one_admin_failing_on_the_daemon_does_not_stop_the_others(
        caplog: pytest.LogCaptureFixture) -> None:
    with fake_signal_daemon(keepalive_interval=0.2, tcp=False) as sim:
        transport = create_transport(sim.http_url, account=BOT_NUMBER, stale_after=2.0,
                                     backoff=Backoff(initial=0.05, cap=0.2))

        async def send(recipient: str, text: str) -> None:
            await transport.send(text, recipients=[recipient])

        sim.fail_next("send", NETWORK_FAILURE)  # whichever admin's send comes first
        manager = AlertManager([SignalAdminNotifier(send, [ALICE_UUID, BOB_NUMBER])])
        await manager.start()
        manager.alert("guard_error", guard="threat_check", error="ValueError")
        await sim.wait_for("send", 2)
        await _until(lambda: manager.stats.delivered + manager.stats.failed == 1)
        await manager.aclose()
        await transport.aclose()
    failed = [r for r in caplog.records if r.getMessage() == "admin_alert_failed"]
    assert len(failed) == 1 and failed[0].__dict__["error"].startswith("Signal")
    assert manager.stats.delivered == 1, "one admin got it: the delivery counts"
    assert BOB_NUMBER not in caplog.text and ALICE_UUID not in caplog.text


def test_quota_and_auth_conditions_from_the_real_openai_client() -> None:
    import openai

    quota_body = {"error": {"message": "You exceeded your current quota.",
                            "type": "insufficient_quota", "param": None,
                            "code": "insufficient_quota"}}
    with FakeOpenAIServer() as server:
        server.enqueue(Status(429, body=quota_body), Status(429), Status(401))
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test-key", max_retries=0)
        raised = []
        for _ in range(3):
            with pytest.raises(openai.APIStatusError) as info:
                client.chat.completions.create(model="gpt-4o-mini",
                                               messages=[{"role": "user", "content": "hi"}])
            raised.append(info.value)
        client.close()
    quota, limited, auth = raised
    assert type(quota).__name__ == type(limited).__name__ == "RateLimitError"
    assert exception_condition(quota) == MODEL_QUOTA_EXHAUSTED
    assert exception_condition(limited) is None, "a plain rate limit is not a quota alert"
    assert exception_condition(auth) == MODEL_AUTH_FAILED
