"""The real signal-cli 0.13.19 daemon, no account, on loopback: what our transport relies on.

Needs `make signal-cli` (scripts/fetch-signal-cli.sh); skips without it, fails under CI.
The daemon starts once per module (4-7 s); the keep-alive test waits ~31 s by design, and
the reconnect test of our own client (agent.signal) ~25 s (its own daemon, a restart, and
the 15 s until the new event stream's status line). docs/signal-cli.md records the facts
these tests pin down.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.signal import (
    Backoff,
    HttpTransport,
    SignalInvalidParams,
    SignalRpcError,
    SocketTransport,
    create_transport,
)
from tests.integration.signal_cli_daemon import (
    SIGNAL_CLI_VERSION,
    SignalCliDaemon,
    signal_cli_daemon,
)

JSON = {"Content-Type": "application/json"}
KEEPALIVE = b":\n"
"""0.13.19 sends a bare comment line, no blank line after it."""
KEEPALIVE_S = 15.0


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignalCliDaemon]:
    workdir = tmp_path_factory.mktemp("signal-cli")
    with signal_cli_daemon(http=True, tcp=True, workdir=workdir) as running:
        yield running


@pytest.fixture(scope="module")
def client(daemon: SignalCliDaemon) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=daemon.http_url, timeout=10.0) as http:
        yield http


def rpc(client: httpx.Client, body: object) -> Any:
    response = client.post("/api/v1/rpc", json=body)
    # Every JSON-RPC outcome, errors included, is HTTP 200 with a JSON body.
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def request(method: str, params: dict[str, Any] | None = None, id_: int = 1) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id_}
    if params is not None:
        body["params"] = params
    return body


def error(code: int, message: str, id_: object = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message, "data": None}, "id": id_}


class LineClient:
    """Newline-delimited JSON-RPC over one TCP connection, as `daemon --tcp` speaks it."""

    def __init__(self, host: str, port: int) -> None:
        self._sock = socket.create_connection((host, port), timeout=10.0)
        self._file = self._sock.makefile("rwb")

    def send_line(self, line: bytes) -> None:
        self._file.write(line + b"\n")
        self._file.flush()

    def read(self) -> Any:
        line = self._file.readline()
        assert line.endswith(b"\n"), f"connection closed: {line!r}"
        return json.loads(line)

    def call(self, body: object) -> Any:
        self.send_line(json.dumps(body).encode())
        return self.read()

    def close(self) -> None:
        self._file.close()
        self._sock.close()


@pytest.fixture
def line_client(daemon: SignalCliDaemon) -> Iterator[LineClient]:
    assert daemon.tcp_port is not None
    conn = LineClient(daemon.host, daemon.tcp_port)
    yield conn
    conn.close()


# --- HTTP: endpoints -------------------------------------------------------------------


def test_daemon_starts_within_deadline_and_stays_small(daemon: SignalCliDaemon) -> None:
    assert daemon.startup_seconds < 60
    assert daemon.rss_kib() < 512 * 1024


def test_check_endpoint_is_200_with_empty_body(client: httpx.Client) -> None:
    response = client.get("/api/v1/check")
    assert response.status_code == 200
    assert response.content == b""


def test_version(client: httpx.Client) -> None:
    assert rpc(client, request("version")) == {
        "jsonrpc": "2.0",
        "result": {"version": SIGNAL_CLI_VERSION},
        "id": 1,
    }


def test_list_accounts_is_empty_without_accounts(client: httpx.Client) -> None:
    assert rpc(client, request("listAccounts", id_=2)) == {"jsonrpc": "2.0", "result": [], "id": 2}


def test_string_id_is_echoed(client: httpx.Client) -> None:
    assert rpc(client, {"jsonrpc": "2.0", "method": "version", "id": "abc"})["id"] == "abc"


# --- HTTP: JSON-RPC errors --------------------------------------------------------------


def test_send_without_account_is_invalid_params(client: httpx.Client) -> None:
    body = request("send", {"recipient": ["+15550000001"], "message": "hi"}, id_=3)
    assert rpc(client, body) == error(-32602, "Method requires valid account parameter", 3)


def test_send_with_unknown_account_is_invalid_params(client: httpx.Client) -> None:
    params = {"account": "+15550000000", "recipient": ["+15550000001"], "message": "hi"}
    assert rpc(client, request("send", params)) == error(-32602, "Specified account does not exist")


def test_unknown_method_is_method_not_found(client: httpx.Client) -> None:
    assert rpc(client, request("noSuchMethod", id_=4)) == error(-32601, "Method not implemented", 4)


def test_subscribe_receive_is_not_offered_over_http(client: httpx.Client) -> None:
    # Over HTTP the subscriber is an open /api/v1/events stream instead.
    assert rpc(client, request("subscribeReceive")) == error(-32601, "Method not implemented")


def test_malformed_json_is_parse_error_with_null_id(client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/rpc", content=b'{"jsonrpc":"2.0","method":"version"', headers=JSON
    )
    assert response.status_code == 200
    body = response.json()
    assert body["id"] is None
    assert body["error"]["code"] == -32700
    # Jackson's parser message, verbatim: not worth matching beyond its start.
    assert body["error"]["message"].startswith("Unexpected end-of-input")
    assert body["error"]["data"] is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", error(-32600, "unexpected type: MISSING", None)),
        (b"42", error(-32600, "unexpected type: NUMBER", None)),
        (b"[]", error(-32600, "invalid request", None)),
        (b'{"jsonrpc":"2.0"}', error(-32600, "method field must be set", None)),
        (
            b'{"method":"version","id":5}',
            error(-32600, "only jsonrpc version 2.0 is supported", 5),
        ),
        (
            b'{"jsonrpc":"1.0","method":"version","id":6}',
            error(-32600, "only jsonrpc version 2.0 is supported", 6),
        ),
    ],
    ids=["empty", "number", "empty-batch", "no-method", "no-jsonrpc", "jsonrpc-1.0"],
)
def test_invalid_requests(client: httpx.Client, raw: bytes, expected: dict[str, Any]) -> None:
    response = client.post("/api/v1/rpc", content=raw, headers=JSON)
    assert response.status_code == 200
    assert response.json() == expected


def by_id(replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Batch items run concurrently: replies come back in any order (seen: 27 different
    # orders in 300 five-item batches). Match them by id.
    return sorted(replies, key=lambda reply: reply["id"])


def test_batch_omits_notifications_and_answers_in_any_order(client: httpx.Client) -> None:
    batch = [
        request("version", id_=1),
        {"jsonrpc": "2.0", "method": "listAccounts"},  # notification: no reply
        request("noSuchMethod", id_=2),
    ]
    assert by_id(rpc(client, batch)) == [
        {"jsonrpc": "2.0", "result": {"version": SIGNAL_CLI_VERSION}, "id": 1},
        error(-32601, "Method not implemented", 2),
    ]


@pytest.mark.parametrize(
    "body",
    [{"jsonrpc": "2.0", "method": "version"}, [{"jsonrpc": "2.0", "method": "version"}]],
    ids=["single", "batch"],
)
def test_notification_only_gets_201_and_no_body(client: httpx.Client, body: object) -> None:
    response = client.post("/api/v1/rpc", json=body)
    assert response.status_code == 201
    assert response.content == b""


# --- HTTP: transport rules --------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
    ],
)
def test_rpc_requires_json_content_type(
    client: httpx.Client, content_type: str, status: int
) -> None:
    body = json.dumps(request("version")).encode()
    response = client.post("/api/v1/rpc", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status


def test_rpc_without_content_type_is_415(daemon: SignalCliDaemon) -> None:
    raw = _raw_http(daemon, b"POST /api/v1/rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    assert raw.startswith(b"HTTP/1.1 415 ")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/rpc", 405),
        ("POST", "/api/v1/check", 405),
        ("HEAD", "/api/v1/check", 405),
        ("POST", "/api/v1/events", 405),
        ("GET", "/", 404),
        ("GET", "/api/v2/rpc", 404),
    ],
)
def test_wrong_method_or_path(client: httpx.Client, method: str, path: str, status: int) -> None:
    assert client.request(method, path).status_code == status


def test_host_header_is_not_checked_on_0_13_19(client: httpx.Client) -> None:
    # The 421 check for an unexpected Host arrived in 0.14.5; this pins 0.13.19's behaviour
    # so an upgrade shows up here.
    headers = {"Host": "example.com"}
    assert client.get("/api/v1/check", headers=headers).status_code == 200
    response = client.post("/api/v1/rpc", json=request("version"), headers=headers)
    assert response.json()["result"] == {"version": SIGNAL_CLI_VERSION}


def test_events_for_unknown_account_is_400(client: httpx.Client) -> None:
    response = client.get("/api/v1/events", params={"account": "+15550000000"})
    assert response.status_code == 400
    assert response.content == b""


def _raw_http(daemon: SignalCliDaemon, request_bytes: bytes) -> bytes:
    assert daemon.http_port is not None
    with socket.create_connection((daemon.host, daemon.http_port), timeout=10.0) as sock:
        sock.sendall(request_bytes)
        return sock.recv(4096)


# --- TCP: newline-delimited JSON-RPC ---------------------------------------------------


def test_tcp_version(line_client: LineClient) -> None:
    assert line_client.call(request("version", id_=7)) == {
        "jsonrpc": "2.0",
        "result": {"version": SIGNAL_CLI_VERSION},
        "id": 7,
    }


def test_tcp_notification_gets_no_reply(line_client: LineClient) -> None:
    line_client.send_line(b'{"jsonrpc":"2.0","method":"version"}')
    # The next line on the wire answers the next request, not the notification.
    assert line_client.call(request("listAccounts", id_=8)) == {
        "jsonrpc": "2.0",
        "result": [],
        "id": 8,
    }


def test_tcp_batch_and_errors(line_client: LineClient) -> None:
    batch = [request("version", id_=1), request("listAccounts", id_=2)]
    assert [item["id"] for item in by_id(line_client.call(batch))] == [1, 2]
    line_client.send_line(b"")
    assert line_client.read() == error(-32700, "Empty input line", None)
    line_client.send_line(b"{bad json")
    reply = line_client.read()
    assert (reply["error"]["code"], reply["id"]) == (-32700, None)
    send = request("send", {"recipient": ["+15550000001"], "message": "hi"})
    assert line_client.call(send) == error(-32602, "Method requires valid account parameter")


def test_tcp_pipelined_requests_must_be_matched_by_id(line_client: LineClient) -> None:
    # Requests on one connection run concurrently too: replies to pipelined requests
    # come back out of order (every time, in 40 runs of 40 requests), so a client must
    # keep a table of pending ids rather than expect FIFO order.
    methods = ["version", "listAccounts", "noSuchMethod"] * 5
    for id_, method in enumerate(methods):
        line_client.send_line(json.dumps(request(method, id_=id_)).encode())
    replies = [line_client.read() for _ in methods]
    assert sorted(reply["id"] for reply in replies) == list(range(len(methods)))
    for reply in replies:
        method = methods[reply["id"]]
        assert ("error" in reply) == (method == "noSuchMethod")


def test_tcp_subscribe_receive_works_without_account(line_client: LineClient) -> None:
    reply = line_client.call(request("subscribeReceive", id_=9))
    subscription = reply["result"]
    assert isinstance(subscription, int)
    unsubscribe = request("unsubscribeReceive", {"subscription": subscription}, id_=10)
    assert line_client.call(unsubscribe) == {"jsonrpc": "2.0", "result": {}, "id": 10}
    assert line_client.call(unsubscribe) == error(-1, "Unknown subscription id", 10)
    with_account = request("subscribeReceive", {"account": "+15550000000"}, id_=11)
    assert line_client.call(with_account) == error(-32602, "Specified account does not exist", 11)


def test_receive_mode_manual_is_accepted_without_account(tmp_path: Path) -> None:
    with signal_cli_daemon(http=True, tcp=True, receive_mode="manual", workdir=tmp_path) as manual:
        assert manual.tcp_port is not None
        conn = LineClient(manual.host, manual.tcp_port)
        try:
            # No implicit per-connection subscription in manual mode, so the first id is 0;
            # ids come from one daemon-wide counter, not per connection.
            assert conn.call(request("subscribeReceive"))["result"] == 0
            assert conn.call(request("subscribeReceive", id_=2))["result"] == 1
        finally:
            conn.close()
        assert httpx.get(f"{manual.http_url}/api/v1/check", timeout=10).status_code == 200


# --- SSE stream, shutdown, restart -----------------------------------------------------


def test_events_keepalive_every_15_s_and_clean_end_on_sigterm(daemon: SignalCliDaemon) -> None:
    """~31 s: the status line itself only arrives with the first keep-alive."""
    timeout = httpx.Timeout(10.0, read=KEEPALIVE_S + 10.0)
    chunks: list[tuple[float, bytes]] = []
    opened = time.monotonic()
    try:
        with (
            httpx.Client(timeout=timeout) as http,
            http.stream("GET", f"{daemon.http_url}/api/v1/events") as response,
        ):
            headers_at = time.monotonic() - opened
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            assert response.headers["transfer-encoding"] == "chunked"
            stream = response.iter_raw()
            for chunk in stream:
                chunks.append((time.monotonic() - opened, chunk))
                if len(chunks) == 2:
                    break
            # Graceful shutdown with the stream open: the body just ends, no error.
            assert daemon.stop() == 0
            assert list(stream) == []
    finally:
        daemon.start()
    assert [chunk for _, chunk in chunks] == [KEEPALIVE, KEEPALIVE]
    first, second = chunks[0][0], chunks[1][0]
    assert KEEPALIVE_S - 1 < headers_at < KEEPALIVE_S + 3
    assert KEEPALIVE_S - 1 < first < KEEPALIVE_S + 3
    assert KEEPALIVE_S - 1 < second - first < KEEPALIVE_S + 2


def test_kill9_with_open_stream_then_restart_on_same_port(daemon: SignalCliDaemon) -> None:
    ports = (daemon.http_port, daemon.tcp_port)
    pid = daemon.pid
    errors: list[BaseException] = []

    def listen() -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10.0, read=30.0)) as http,
                http.stream("GET", f"{daemon.http_url}/api/v1/events") as response,
            ):
                response.read()
        except httpx.HTTPError as exc:
            errors.append(exc)

    listener = threading.Thread(target=listen)
    listener.start()
    time.sleep(1.0)  # let the GET reach the daemon; it sends nothing until 15 s
    daemon.kill()
    listener.join(timeout=10.0)
    assert not listener.is_alive()
    # Before the first keep-alive no status line was sent; mid-stream the message is
    # "peer closed connection without sending complete message body (incomplete chunked
    # read)". Same exception type either way.
    assert len(errors) == 1
    assert isinstance(errors[0], httpx.RemoteProtocolError)
    assert "Server disconnected without sending a response" in str(errors[0])
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{daemon.http_url}/api/v1/check", timeout=10)

    daemon.start()
    assert (daemon.http_port, daemon.tcp_port) == ports
    assert daemon.pid != pid
    assert httpx.get(f"{daemon.http_url}/api/v1/check", timeout=10).status_code == 200
    with httpx.Client(base_url=daemon.http_url, timeout=10.0) as http:
        assert rpc(http, request("version"))["result"] == {"version": SIGNAL_CLI_VERSION}


# --- our client (agent.signal) against the real daemon ----------------------------------


def transport_url(daemon: SignalCliDaemon, wire: str) -> str:
    return daemon.http_url if wire == "http" else f"tcp://{daemon.host}:{daemon.tcp_port}"


async def wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


class RecordingSleeper:
    """Our reconnect loop's sleeper: records the backoff, waits 50 ms instead."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("wire", ["http", "tcp"])
async def test_our_client_calls_and_maps_errors(daemon: SignalCliDaemon, wire: str) -> None:
    transport = create_transport(transport_url(daemon, wire), timeout=10.0)
    try:
        assert await transport.check()
        assert await transport.call("version") == {"version": SIGNAL_CLI_VERSION}
        assert await transport.call("listAccounts") == []
        # Concurrent calls: on TCP their replies come back out of order, matched by id.
        methods = ["version", "listAccounts"] * 10
        results = await asyncio.gather(*(transport.call(m) for m in methods))
        assert results == [
            {"version": SIGNAL_CLI_VERSION} if m == "version" else [] for m in methods]
        with pytest.raises(SignalInvalidParams) as invalid:
            await transport.send("hi", recipients=["+15550000001"])
        assert invalid.value.code == -32602
        assert invalid.value.daemon_message == "Method requires valid account parameter"
        with pytest.raises(SignalRpcError) as unknown:
            await transport.call("noSuchMethod")
        assert unknown.value.code == -32601
    finally:
        await transport.aclose()


async def test_our_http_calls_keep_one_connection_alive_on_the_real_server(
    daemon: SignalCliDaemon,
) -> None:
    """The daemon's HTTP server keeps our connection open between requests, so sequential
    calls reuse it (agent/signal/http_rpc.py), and a connection it closes is replaced."""
    transport = HttpTransport(daemon.http_url, timeout=10.0)
    try:
        for _ in range(5):
            assert await transport.call("version") == {"version": SIGNAL_CLI_VERSION}
        pool = transport._rpc  # its connection count, for this test
        assert pool is not None
        assert pool.connections == 1
        for conn in list(pool._open):  # as if the daemon had closed it
            conn.close()
        await asyncio.sleep(0.05)
        assert await transport.call("version") == {"version": SIGNAL_CLI_VERSION}
        assert pool.connections == 1
    finally:
        await transport.aclose()


@pytest.mark.parametrize("wire", ["http", "tcp"])
async def test_our_client_with_an_unknown_account(daemon: SignalCliDaemon, wire: str) -> None:
    transport = create_transport(transport_url(daemon, wire), account="+15550000000",
                                 timeout=10.0)
    try:
        with pytest.raises(SignalInvalidParams) as info:
            await transport.send_typing(recipient="+15550000001")
        assert info.value.daemon_message == "Specified account does not exist"
    finally:
        await transport.aclose()


async def test_our_event_stream_for_an_unknown_account_keeps_retrying(
    daemon: SignalCliDaemon,
) -> None:
    # 400 at once: a configuration error, but the loop backs off and retries, never dies.
    sleeper = RecordingSleeper()
    transport = create_transport(daemon.http_url, account="+15550000000", sleep=sleeper)

    async def read() -> None:
        async for _ in transport.events():
            pass

    reader = asyncio.create_task(read())
    try:
        await wait_until(lambda: transport.status.failed_attempts >= 3, timeout=10.0)
        assert transport.status.last_error == "SignalProtocolError"
        assert not reader.done() and len(sleeper.delays) >= 2
    finally:
        reader.cancel()
        await transport.aclose()


async def test_our_client_reconnects_and_resubscribes_after_restart(tmp_path: Path) -> None:
    """~25 s: start, kill -9 and restart a manual-mode daemon under both transports."""
    sleeper = RecordingSleeper()
    options: dict[str, Any] = {"sleep": sleeper, "timeout": 10.0, "connect_timeout": 2.0,
                               "backoff": Backoff(initial=0.1, cap=1.0)}
    with signal_cli_daemon(http=True, tcp=True, receive_mode="manual", workdir=tmp_path) as d:
        http = create_transport(d.http_url, **options)
        tcp = create_transport(transport_url(d, "tcp"), **options)
        assert isinstance(http, HttpTransport) and isinstance(tcp, SocketTransport)

        async def read(transport: HttpTransport | SocketTransport) -> None:
            async for _ in transport.events():
                pass

        readers = [asyncio.create_task(read(t)) for t in (http, tcp)]
        try:
            # The first explicit subscription of a fresh manual-mode daemon is id 0.
            await wait_until(lambda: tcp.status.subscription == 0, timeout=10.0)
            await asyncio.to_thread(d.restart)  # kill -9, same ports; our loop keeps running
            await wait_until(lambda: tcp.status.reconnects == 1 and tcp.status.connected
                             and tcp.status.subscription is not None, timeout=20.0)
            # A new daemon counts from 0 again: the id proves we subscribed on it.
            assert tcp.status.subscription == 0 and tcp.status.connects == 2
            # The stream opened before the kill never saw its status line (that comes with
            # the first keep-alive); after the restart it connects once 15 s have passed.
            assert http.status.failed_attempts >= 1 and not http.status.connected
            await wait_until(lambda: http.status.connected, timeout=KEEPALIVE_S + 10.0)
            assert http.status.connects == 1 and http.status.stale_timeouts == 0
            assert sleeper.delays and max(sleeper.delays) <= 1.0
            assert not any(reader.done() for reader in readers)
        finally:
            for reader in readers:
                reader.cancel()
            await http.aclose()
            await tcp.aclose()
