"""agent.signal against the daemon simulator (agent/testing/signal_daemon.py) on loopback.

Real sockets, real httpx, the daemon's wire formats; faults injected by the simulator.
Backoff never sleeps for real: the injected sleeper records each delay and yields for
10 ms. Watchdog intervals are a few hundred milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.signal import (
    Backoff,
    ConnectionState,
    Envelope,
    EnvelopeKind,
    HttpTransport,
    SignalCaptchaRequired,
    SignalInvalidParams,
    SignalNetworkError,
    SignalRateLimited,
    SignalRpcError,
    SignalTimeoutError,
    SignalUnregistered,
    SignalUntrustedIdentity,
    SocketTransport,
    create_transport,
    mention,
    text_style,
)
from agent.testing.signal_daemon import (
    ALICE_NUMBER,
    ALICE_UUID,
    BOB_UUID,
    BOT_NUMBER,
    BOT_UUID,
    GROUP_ID,
    IDENTITY_FAILURE,
    NETWORK_FAILURE,
    UNREGISTERED_FAILURE,
    FakeSignalDaemon,
    RpcError,
    captcha_failure,
    delete_message,
    direct_message,
    edit_message,
    fake_signal_daemon,
    group_message,
    rate_limit_failure,
    reaction_message,
    receipt_message,
    sync_sent_message,
    typing_message,
)

WIRES = ["http", "tcp"]
SECRET_TEXT = "please keep this question private"
SECRET_NUMBER = "+15559876543"
OTHER_ACCOUNT = "+15550002000"
Transport = HttpTransport | SocketTransport


class Sleeper:
    """Stands in for asyncio.sleep in the reconnect loop: records, barely waits."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0.01)


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


class Collector:
    """Reads transport.events() in a task, like the bot's receive loop."""

    def __init__(self, transport: Transport) -> None:
        self.items: list[Envelope] = []
        self._transport = transport
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for envelope in self._transport.events():
            self.items.append(envelope)

    async def wait(self, count: int, timeout: float = 5.0) -> list[Envelope]:
        await eventually(lambda: len(self.items) >= count or self.task.done(), timeout)
        if self.task.done():
            self.task.result()  # surface a crash of the loop
        return self.items

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
def sim() -> Iterator[FakeSignalDaemon]:
    with fake_signal_daemon(keepalive_interval=0.1) as running:
        yield running


@pytest.fixture
def sleeper() -> Sleeper:
    return Sleeper()


@pytest.fixture
async def make(sleeper: Sleeper) -> AsyncIterator[Callable[..., Transport]]:
    created: list[Transport] = []

    def factory(url: str, **options: Any) -> Transport:
        options.setdefault("sleep", sleeper)
        options.setdefault("stale_after", 2.0)
        options.setdefault("timeout", 2.0)
        options.setdefault("connect_timeout", 1.0)
        options.setdefault("backoff", Backoff(initial=0.5, cap=4.0, rng=lambda: 1.0))
        transport = create_transport(url, **options)
        created.append(transport)
        return transport

    yield factory
    for transport in created:
        await transport.aclose()


def url_of(sim: FakeSignalDaemon, wire: str) -> str:
    return sim.http_url if wire == "http" else sim.tcp_url


async def start(make: Callable[..., Transport], sim: FakeSignalDaemon, wire: str,
                **options: Any) -> tuple[Transport, Collector]:
    transport = make(url_of(sim, wire), **options)
    collector = Collector(transport)
    await eventually(lambda: transport.status.connected)
    if wire == "tcp":
        await eventually(lambda: transport.status.subscription is not None)
    else:
        await eventually(lambda: sim.subscriber_count == 1)
    return transport, collector


def assert_no_content_logged(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        rendered = record.getMessage() + repr(record.__dict__)
        for secret in (SECRET_TEXT, SECRET_NUMBER, ALICE_NUMBER, BOT_NUMBER):
            assert secret not in rendered, f"log leaks content: {record.getMessage()}"


# --------------------------------------------------------------------------- receiving


@pytest.mark.parametrize("wire", WIRES)
async def test_receives_every_kind_in_order(
    make: Callable[..., Transport], sim: FakeSignalDaemon, wire: str,
) -> None:
    sent = [
        direct_message("hello", expires_in_seconds=60),
        group_message("hey \ufffc", mentions=[(BOT_UUID, BOT_NUMBER)]),
        reaction_message("👍", target_timestamp=17),
        receipt_message([17]),
        typing_message(),
        edit_message("hello!", target_timestamp=17),
        delete_message(17),
        sync_sent_message("from my phone"),
    ]
    for env in sent:
        sim.deliver(env)
    transport = make(url_of(sim, wire))
    collector = Collector(transport)
    got = await collector.wait(len(sent))
    assert [e.kind for e in got] == [
        EnvelopeKind.DATA, EnvelopeKind.DATA, EnvelopeKind.REACTION, EnvelopeKind.RECEIPT,
        EnvelopeKind.TYPING, EnvelopeKind.EDIT, EnvelopeKind.DELETE, EnvelopeKind.SYNC]
    assert [e.timestamp for e in got] == [env["timestamp"] for env in sent]
    assert got[0].text == "hello" and got[0].expires_in_seconds == 60
    assert got[1].group_id == GROUP_ID and got[1].mentions[0].uuid == BOT_UUID
    assert all(e.account == BOT_NUMBER for e in got)
    await collector.stop()


async def test_tcp_subscribes_only_when_events_are_read(
    make: Callable[..., Transport], sim: FakeSignalDaemon,
) -> None:
    # A client that only calls must not subscribe: the daemon would fetch messages from
    # Signal that nobody reads, and they would be lost.
    transport = make(sim.tcp_url)
    assert transport.status.state is ConnectionState.IDLE
    assert (await transport.call("version"))["version"] == "0.13.19"
    sim.deliver(direct_message("waits on the server"))
    await asyncio.sleep(0.1)
    assert sim.count("subscribeReceive") == 0 and sim.pending == 1
    collector = Collector(transport)  # now the same connection subscribes
    assert [e.text for e in await collector.wait(1)] == ["waits on the server"]
    assert sim.count("subscribeReceive") == 1 and transport.status.connects == 1
    await collector.stop()


async def test_tcp_on_start_mode_takes_bare_notifications(
    make: Callable[..., Transport],
) -> None:
    with fake_signal_daemon(receive_mode="on-start", http=False) as sim:
        transport = make(sim.tcp_url, receive_mode="on-start")
        sim.deliver(direct_message("no subscription needed"))
        collector = Collector(transport)
        assert [e.text for e in await collector.wait(1)] == ["no subscription needed"]
        assert sim.count("subscribeReceive") == 0
        await collector.stop()


async def test_unix_socket(make: Callable[..., Transport]) -> None:
    # A short directory: Unix socket paths are limited to about 107 bytes.
    folder = tempfile.mkdtemp(prefix="sig", dir="/tmp")
    try:
        path = str(Path(folder) / "socket")
        with fake_signal_daemon(http=False, tcp=False, unix_path=path) as sim:
            transport = make(sim.unix_url)
            assert isinstance(transport, SocketTransport) and transport.path == path
            sim.deliver(direct_message("over a unix socket"))
            collector = Collector(transport)
            assert [e.text for e in await collector.wait(1)] == ["over a unix socket"]
            assert await transport.check()
            await collector.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("wire", WIRES)
async def test_multi_account_filters_events_and_injects_account(
    make: Callable[..., Transport], wire: str,
) -> None:
    with fake_signal_daemon(multi_account=True, accounts=(BOT_NUMBER, OTHER_ACCOUNT),
                            keepalive_interval=0.1) as sim:
        bare = make(url_of(sim, wire))
        with pytest.raises(SignalInvalidParams) as info:
            await bare.send("hi", recipients=[ALICE_NUMBER])
        assert info.value.code == -32602
        unknown = make(url_of(sim, wire), account="+15550009999")
        with pytest.raises(SignalInvalidParams):
            await unknown.send("hi", recipients=[ALICE_NUMBER])

        transport, collector = await start(make, sim, wire, account=BOT_NUMBER)
        sim.deliver(direct_message("for the other account"), account=OTHER_ACCOUNT)
        sim.deliver(direct_message("for us"))
        assert [e.text for e in await collector.wait(1)] == ["for us"]
        await transport.send_typing(recipient=ALICE_UUID)
        assert sim.sent("sendTyping")[-1]["account"] == BOT_NUMBER
        if wire == "tcp":
            assert [c.params for c in sim.calls if c.method == "subscribeReceive"] == [
                {"account": BOT_NUMBER}]
        await collector.stop()


@pytest.mark.parametrize("wire", WIRES)
async def test_rejected_subscription_backs_off_instead_of_storming(
    make: Callable[..., Transport], sleeper: Sleeper, wire: str,
) -> None:
    # An unknown account: the daemon answers (HTTP 400 / −32602 to subscribeReceive), but
    # an answer that refuses us is no success, so the backoff keeps growing.
    with fake_signal_daemon(multi_account=True, keepalive_interval=0.1) as sim:
        transport = make(url_of(sim, wire), account="+15550009999")
        collector = Collector(transport)
        await eventually(lambda: len(sleeper.delays) >= 5)
        assert sleeper.delays[:5] == [0.5, 1.0, 2.0, 4.0, 4.0]
        assert transport.status.last_error in ("SignalProtocolError", "SignalInvalidParams")
        assert not collector.task.done()
        await collector.stop()


async def test_http_tolerates_headers_sent_with_first_keepalive(
    make: Callable[..., Transport],
) -> None:
    # signal-cli 0.13.19 sends the status line only with its first keep-alive.
    with fake_signal_daemon(headers_with_first_keepalive=True, keepalive_interval=0.3) as sim:
        transport = make(sim.http_url, stale_after=1.0)
        collector = Collector(transport)
        await eventually(lambda: sim.subscriber_count == 1)
        assert transport.status.state is ConnectionState.CONNECTING
        await eventually(lambda: transport.status.connected, timeout=2.0)
        sim.deliver(direct_message("after the first keep-alive"))
        assert [e.text for e in await collector.wait(1)] == ["after the first keep-alive"]
        assert transport.status.stale_timeouts == 0
        await collector.stop()


# --------------------------------------------------------------------------- sending


@pytest.mark.parametrize("wire", WIRES)
async def test_send_helpers_put_the_documented_params_on_the_wire(
    make: Callable[..., Transport], sim: FakeSignalDaemon, wire: str,
) -> None:
    transport = make(url_of(sim, wire))
    result = await transport.send(
        "\ufffc see [1]", group_id=GROUP_ID, quote_timestamp=1700000000001,
        quote_author=ALICE_UUID, quote_message="question?",
        mentions=[mention(0, 1, ALICE_UUID)], text_styles=[text_style(6, 3, "BOLD")])
    assert result.ok and result.timestamp is not None
    assert [r.uuid for r in result.results] == [ALICE_UUID, BOB_UUID]
    await transport.send_typing(recipient=ALICE_UUID, stop=True)
    await transport.send_receipt(ALICE_UUID, [1700000000001])
    await transport.send_reaction("👍", target_author=ALICE_UUID,
                                  target_timestamp=1700000000001, group_id=GROUP_ID)
    assert sim.sent("send") == [{
        "groupId": GROUP_ID, "message": "\ufffc see [1]", "quoteTimestamp": 1700000000001,
        "quoteAuthor": ALICE_UUID, "quoteMessage": "question?",
        "mention": [f"0:1:{ALICE_UUID}"], "textStyle": ["6:3:BOLD"],
    }]
    assert sim.sent("sendTyping") == [{"recipient": [ALICE_UUID], "stop": True}]
    assert sim.sent("sendReceipt") == [
        {"recipient": ALICE_UUID, "targetTimestamp": [1700000000001], "type": "read"}]
    assert sim.sent("sendReaction") == [{
        "groupId": GROUP_ID, "emoji": "👍", "targetAuthor": ALICE_UUID,
        "targetTimestamp": 1700000000001, "remove": False}]


async def test_send_argument_errors_are_caught_before_the_wire(
    make: Callable[..., Transport], sim: FakeSignalDaemon,
) -> None:
    transport = make(sim.http_url)
    with pytest.raises(ValueError, match="exactly one"):
        await transport.send("x")
    with pytest.raises(ValueError, match="exactly one"):
        await transport.send("x", recipients=[ALICE_UUID], group_id=GROUP_ID)
    with pytest.raises(TypeError):
        await transport.send("x", recipients=ALICE_UUID)
    with pytest.raises(ValueError, match="quote_author"):
        await transport.send("x", recipients=[ALICE_UUID], quote_timestamp=1)
    assert sim.calls == []


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize(
    ("failures", "expected", "code"),
    [
        ((NETWORK_FAILURE,), SignalNetworkError, -1),
        ((rate_limit_failure(30),), SignalRateLimited, -5),
        ((rate_limit_failure(None),), SignalRateLimited, -5),
        ((captcha_failure("tok-1", 3600),), SignalCaptchaRequired, -5),
        ((UNREGISTERED_FAILURE,), SignalUnregistered, -1),
        ((IDENTITY_FAILURE,), SignalUntrustedIdentity, -4),
        ((RpcError(-6, "Captcha rejected"),), SignalCaptchaRequired, -6),
        ((RpcError(-32602, "Invalid recipient"),), SignalInvalidParams, -32602),
        ((RpcError(-32603, "boom (NullPointerException)"),), SignalRpcError, -32603),
    ],
    ids=["network", "rate-limit", "rate-limit-no-wait", "captcha", "unregistered", "identity",
         "captcha-rejected", "invalid-params", "internal"],
)
async def test_send_failures_become_our_errors(  # noqa: PLR0917 - pytest passes them by name
    make: Callable[..., Transport], sim: FakeSignalDaemon, wire: str,
    failures: tuple[Any, ...], expected: type[Exception], code: int,
) -> None:
    transport = make(url_of(sim, wire))
    sim.fail_next("send", *failures)
    with pytest.raises(expected) as info:
        await transport.send(SECRET_TEXT, recipients=[SECRET_NUMBER])
    error = info.value
    assert type(error) is expected
    assert getattr(error, "code", None) == code
    assert SECRET_NUMBER not in str(error) and SECRET_TEXT not in str(error)
    if isinstance(error, SignalRateLimited) and code == -5:
        assert error.retry_after == failures[0].retry_after
    if isinstance(error, SignalCaptchaRequired) and code == -5:
        assert error.token == "tok-1"
    # The next send goes through again.
    assert (await transport.send("ok", recipients=[ALICE_NUMBER])).ok


@pytest.mark.parametrize("wire", WIRES)
async def test_partial_group_failure_is_returned_not_raised(
    make: Callable[..., Transport], sim: FakeSignalDaemon, wire: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="agent.signal")
    transport = make(url_of(sim, wire))
    sim.fail_next("send", None, rate_limit_failure(10))
    result = await transport.send(SECRET_TEXT, group_id=GROUP_ID)
    assert result.partial and not result.ok
    assert [(f.uuid, f.type, f.retry_after) for f in result.failures] == [
        (BOB_UUID, "RATE_LIMIT_FAILURE", 10)]
    assert result.retry_after == 10
    (record,) = [r for r in caplog.records if r.getMessage() == "signal_send_partial"]
    assert (record.__dict__["delivered"], record.__dict__["failed"]) == (1, 1)
    assert_no_content_logged(caplog)
    # Nobody got it: raised, with every recipient's outcome attached.
    sim.fail_next("send", NETWORK_FAILURE, NETWORK_FAILURE)
    with pytest.raises(SignalNetworkError) as info:
        await transport.send("again", group_id=GROUP_ID)
    assert info.value.result is not None and len(info.value.result.failures) == 2


async def test_tcp_replies_are_matched_by_id_when_out_of_order(
    make: Callable[..., Transport], sim: FakeSignalDaemon,
) -> None:
    transport = make(sim.tcp_url)
    sim.reply_delay["listAccounts"] = 0.2
    finished: list[str] = []

    async def call(method: str) -> Any:
        result = await transport.call(method)
        finished.append(method)
        return result

    methods = ["listAccounts", "version"] * 10
    results = await asyncio.gather(*(call(m) for m in methods))
    for method, result in zip(methods, results, strict=True):
        expected = [{"number": BOT_NUMBER}] if method == "listAccounts" else {"version": "0.13.19"}
        assert result == expected
    assert finished[:10] == ["version"] * 10  # the slow replies really came last
    assert transport.status.connects == 1


@pytest.mark.parametrize("wire", WIRES)
async def test_calls_fail_fast_while_the_daemon_is_down(
    make: Callable[..., Transport], sim: FakeSignalDaemon, wire: str,
) -> None:
    url = url_of(sim, wire)
    sim.stop_listening()
    transport = make(url, connect_timeout=0.3, timeout=10.0)
    started = time.monotonic()
    with pytest.raises(SignalNetworkError):
        await transport.call("version")
    # Well under the 10 s call timeout: refused at once, not waited out (a margin for a
    # loaded machine, not a speed limit).
    assert time.monotonic() - started < 5.0
    assert not await transport.check()
    sim.resume()
    await eventually(lambda: transport.status.connected or wire == "http")
    assert (await transport.call("version"))["version"] == "0.13.19"


@pytest.mark.parametrize("wire", WIRES)
async def test_hung_daemon_gives_a_timeout(
    make: Callable[..., Transport], sim: FakeSignalDaemon, wire: str,
) -> None:
    transport = make(url_of(sim, wire), timeout=0.3)
    await transport.call("version")
    sim.go_silent()
    with pytest.raises(SignalTimeoutError):
        await transport.send("may or may not go out", recipients=[ALICE_NUMBER])
    sim.go_silent(False)


# --------------------------------------------------------------------------- reconnecting


@pytest.mark.parametrize("clean", [False, True], ids=["kill", "sigterm"])
@pytest.mark.parametrize("wire", WIRES)
async def test_reconnects_after_the_stream_drops(
    make: Callable[..., Transport], sim: FakeSignalDaemon, sleeper: Sleeper, wire: str,
    clean: bool,
) -> None:
    transport, collector = await start(make, sim, wire)
    sim.deliver(direct_message("before"))
    await collector.wait(1)
    sim.drop_streams(clean=clean)
    await eventually(lambda: transport.status.reconnects == 1)
    sim.deliver(direct_message("after"))
    assert [e.text for e in await collector.wait(2)] == ["before", "after"]
    status = transport.status
    assert status.connected and status.connects == 2 and status.failed_attempts == 0
    assert sleeper.delays == [0.5]
    if wire == "tcp":
        assert sim.count("subscribeReceive") == 2  # again on the new connection
    await collector.stop()


@pytest.mark.parametrize("wire", WIRES)
async def test_reconnects_after_a_restart_with_growing_capped_backoff(
    make: Callable[..., Transport], sim: FakeSignalDaemon, sleeper: Sleeper, wire: str,
) -> None:
    transport, collector = await start(make, sim, wire)
    first_subscription = transport.status.subscription
    sim.restart(down_for=0.4)
    await eventually(lambda: transport.status.failed_attempts >= 3)
    assert transport.status.state in (ConnectionState.BACKOFF, ConnectionState.CONNECTING)
    refused = "ConnectError" if wire == "http" else "ConnectionRefusedError"
    assert transport.status.last_error == refused
    sim.deliver(direct_message("sent while the daemon was down"))
    assert [e.text for e in await collector.wait(1)] == ["sent while the daemon was down"]
    assert sleeper.delays[:5] == [0.5, 1.0, 2.0, 4.0, 4.0]  # rng=1.0: the ceilings
    assert transport.status.reconnects == 1 and transport.status.failed_attempts == 0
    if wire == "tcp":
        assert sim.count("subscribeReceive") == 2
        assert transport.status.subscription != first_subscription
    await collector.stop()


@pytest.mark.parametrize("wire", WIRES)
async def test_watchdog_replaces_a_silent_connection(
    make: Callable[..., Transport], sim: FakeSignalDaemon, wire: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="agent.signal")
    # keep-alives every 0.1 s keep a 0.4 s watchdog quiet; on TCP, pings do.
    transport, collector = await start(make, sim, wire, stale_after=0.4)

    def quiet_traffic() -> int:
        """Keep-alives (HTTP) or answered pings (TCP, one per stale_after / 2) so far."""
        return sim.count("version") if wire == "tcp" else sim.keepalives_sent

    # Quiet but alive for well over twice stale_after, counted in keep-alives, not seconds.
    await eventually(lambda: quiet_traffic() >= (5 if wire == "tcp" else 10), timeout=10.0)
    assert transport.status.stale_timeouts == 0 and transport.status.reconnects == 0
    sim.go_silent()
    await eventually(lambda: transport.status.stale_timeouts >= 1, timeout=3.0)
    assert transport.status.last_error == "StaleStream"
    connects = transport.status.connects
    sim.go_silent(False)
    # Deliver only once a new connection is alive: a message pushed into a stream the
    # watchdog is just abandoning would be lost (SSE has no redelivery; see docs).
    await eventually(lambda: transport.status.connects > connects
                     and transport.status.connected, timeout=5.0)
    sim.deliver(direct_message("after the silence"))
    assert [e.text for e in await collector.wait(1, timeout=10.0)] == ["after the silence"]
    assert any(r.__dict__.get("stale") is True for r in caplog.records)
    if wire == "tcp":
        assert sim.count("version") >= 2  # pings while idle, and the one nobody answered
    await collector.stop()


# --------------------------------------------------------------------------- hostile input


GARBAGE = {
    "http": [
        b"data:{not json\n\n",
        b'event:receive\ndata:{"envelope":{"sourceNumber":"' + SECRET_NUMBER.encode() + b'"}}\n\n',
        b"event:receive\ndata:[1,2,3]\n\n",
        b'event:other\ndata:{"message":"' + SECRET_TEXT.encode() + b'"}\n\n',
        b"a line without a colon\n\n",
        b"event:receive\ndata:\xff\xfe\x00\n\n",
        b"retry:100\nid:1\n\n",
    ],
    "tcp": [
        b"not json\n",
        b"[1,2,3]\n",
        b"\n",
        b'{"jsonrpc":"2.0","method":"receive","params":{"subscription":0,"result":'
        b'{"envelope":"' + SECRET_TEXT.encode() + b'"}}}\n',
        b'{"jsonrpc":"2.0","method":"receive","params":{"subscription":0,"result":'
        b'{"envelope":{"timestamp":"1","sourceNumber":"' + SECRET_NUMBER.encode() + b'"}}}}\n',
        b'{"jsonrpc":"2.0","id":99999,"result":{}}\n',
        b'{"jsonrpc":"2.0","id":[1],"result":{}}\n',
        b'{"jsonrpc":"2.0","method":"somethingNew","params":{}}\n',
        b"\xff\xfe\x00\n",
    ],
}


@pytest.mark.parametrize("wire", WIRES)
async def test_garbage_is_skipped_and_logged_without_content(
    make: Callable[..., Transport], sim: FakeSignalDaemon, wire: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="agent.signal")
    transport, collector = await start(make, sim, wire)
    for garbage in GARBAGE[wire]:
        sim.inject_raw(garbage)
    sim.deliver(direct_message("still here"))
    assert [e.text for e in await collector.wait(1)] == ["still here"]
    await asyncio.sleep(0.05)
    assert transport.status.reconnects == 0  # garbage never costs the connection
    skipped = [r for r in caplog.records
               if r.getMessage() in ("signal_event_skipped", "signal_reply_unmatched")]
    assert len(skipped) >= len(GARBAGE[wire]) - 3
    assert_no_content_logged(caplog)
    await collector.stop()


@pytest.mark.parametrize("wire", WIRES)
async def test_overlong_lines_are_dropped(
    make: Callable[..., Transport], sim: FakeSignalDaemon, wire: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport, collector = await start(make, sim, wire, max_line_bytes=4096)
    sim.deliver(direct_message("x" * 10_000))
    sim.deliver(direct_message("short"))
    assert [e.text for e in await collector.wait(1)] == ["short"]
    assert any(r.__dict__.get("reason") == "line_too_long" for r in caplog.records)
    assert transport.status.reconnects == 0
    await collector.stop()


# --------------------------------------------------------------------------- lifecycle


@pytest.mark.parametrize("wire", WIRES)
async def test_one_reader_and_clean_close(
    make: Callable[..., Transport], sim: FakeSignalDaemon, wire: str,
) -> None:
    transport, collector = await start(make, sim, wire)
    with pytest.raises(RuntimeError, match="one reader"):
        await anext(transport.events())
    await transport.aclose()
    await asyncio.wait_for(collector.task, timeout=2.0)  # the reader ends, no exception
    assert transport.status.state is ConnectionState.CLOSED
    with pytest.raises(SignalNetworkError):
        await transport.call("version")


@pytest.mark.parametrize(
    ("url", "kind"),
    [("http://127.0.0.1:8080", HttpTransport), ("https://signal.internal/", HttpTransport),
     ("tcp://127.0.0.1:7583", SocketTransport), ("tcp://[::1]:7583", SocketTransport),
     ("unix:///run/signal-cli/socket", SocketTransport)],
)
async def test_create_transport_picks_by_url(url: str, kind: type) -> None:
    transport = create_transport(url)
    assert isinstance(transport, kind)
    await transport.aclose()


@pytest.mark.parametrize("url", ["ftp://x", "tcp://host", "unix://", "127.0.0.1:8080", "http://"])
def test_create_transport_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message differs per case
        create_transport(url)
