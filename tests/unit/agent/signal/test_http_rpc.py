"""agent/signal/http_rpc.py against loopback servers that misbehave on purpose: kept-alive
connections reused, and every way a request can fail mapped to the transport's errors."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from agent.signal.client import HttpTransport
from agent.signal.errors import SignalNetworkError, SignalProtocolError, SignalTimeoutError
from agent.signal.http_rpc import RpcConnectionPool, pool_for_url

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK_BODY = b'{"jsonrpc":"2.0","id":1,"result":{"version":"0.13.19"}}'


def reply(body: bytes = OK_BODY, *, status: str = "200 OK", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def read_request(reader: asyncio.StreamReader) -> tuple[dict[str, str], bytes] | None:
    """One request's headers (lower-case names) and body; None at the end of the stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")[1:]
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in lines if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return headers, body


class Server:
    """A loopback server running `handler` for each connection; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):  # what a stopped daemon does to its connections
            writer.transport.abort()
        await self._server.wait_closed()


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[Server]:
    server = Server(handler)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def keep_alive(server_ref: list[Server]) -> Handler:
    """Answers every request on the connection, as the daemon does (`version` replies)."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            server_ref[0].requests.append(request)
            try:
                request_id = json.loads(request[1]).get("id", 1)
            except ValueError:
                request_id = 1
            writer.write(reply(json.dumps({"jsonrpc": "2.0", "id": request_id,
                                           "result": {"version": "0.13.19"}}).encode()))
            await writer.drain()
    return handler


def pool(port: int, **options: float) -> RpcConnectionPool:
    settings: dict[str, float] = {"max_connections": 2, "timeout": 5.0, "connect_timeout": 1.0,
                                  "max_body_bytes": 1024, **options}
    return RpcConnectionPool("127.0.0.1", port, path="/api/v1/rpc",
                             host_header=f"127.0.0.1:{port}",
                             max_connections=int(settings["max_connections"]),
                             timeout=settings["timeout"],
                             connect_timeout=settings["connect_timeout"],
                             max_body_bytes=int(settings["max_body_bytes"]),
                             keepalive_expiry=settings.get("keepalive_expiry", 5.0))


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a killed process's socket does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def test_requests_reuse_kept_alive_connections_and_send_the_daemons_headers() -> None:
    ref: list[Server] = []
    async with serving(keep_alive(ref)) as server:
        ref.append(server)
        rpc = pool(server.port)
        for _ in range(3):
            assert (await rpc.post(b'{"id":1}', method="version"))[0] == 200
        assert server.connections == 1
        results = await asyncio.gather(*(rpc.post(b"{}", method="version") for _ in range(6)))
        assert all(status == 200 for status, _ in results)
        assert server.connections <= 2  # max_connections
        headers, body = server.requests[0]
        assert body == b'{"id":1}'
        assert headers["host"] == f"127.0.0.1:{server.port}"
        assert headers["content-type"] == "application/json"
        rpc.close()


async def test_a_connection_the_daemon_closed_while_idle_is_not_used_again() -> None:
    async def one_per_connection(reader: asyncio.StreamReader,
                                 writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply())  # kept alive as far as HTTP goes, then closed when idle
        await writer.drain()
        await asyncio.sleep(0.05)

    async with serving(one_per_connection) as server:
        rpc = pool(server.port)
        assert (await rpc.post(b"{}", method="version"))[0] == 200
        for _ in range(500):  # the close reaches the pool
            if not rpc.connections:
                break
            await asyncio.sleep(0.01)
        assert (await rpc.post(b"{}", method="version"))[0] == 200
        assert server.connections == 2
        rpc.close()


async def test_connection_reset_mid_request_fails_it_and_the_next_one_reconnects() -> None:
    calls = 0

    async def reset_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        while await read_request(reader) is not None:
            calls += 1
            if calls == 1:
                writer.write(reply()[:30])  # part of the head, then the reset
                await writer.drain()
                reset(writer)
                return
            writer.write(reply())
            await writer.drain()

    async with serving(reset_first) as server:
        rpc = pool(server.port)
        with pytest.raises(SignalNetworkError) as caught:
            await rpc.post(b"{}", method="send")
        assert type(caught.value) is SignalNetworkError
        assert caught.value.method == "send"
        assert (await rpc.post(b"{}", method="send"))[0] == 200
        assert server.connections == 2
        rpc.close()


@pytest.mark.parametrize("answer", [
    b"not http at all\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"truncated\"",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n",
], ids=["garbage", "truncated", "bad-chunk", "huge-head"])
async def test_a_malformed_reply_is_a_network_error_and_the_connection_is_dropped(
    answer: bytes,
) -> None:
    async def malformed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    async with serving(malformed) as server:
        rpc = pool(server.port)
        with pytest.raises(SignalNetworkError) as caught:
            await rpc.post(b"{}", method="listGroups")
        assert type(caught.value) is SignalNetworkError
        assert "daemon unreachable" in str(caught.value)
        await asyncio.sleep(0.01)
        assert rpc.connections == 0
        rpc.close()


async def test_chunked_and_connection_close_replies_are_read_whole() -> None:
    async def chunked_then_close(reader: asyncio.StreamReader,
                                 writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n5\r\n[1,2,\r\n2\r\n3]\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()  # until the client closes first: it was told to

    async with serving(chunked_then_close) as server:
        rpc = pool(server.port)
        assert await rpc.post(b"{}", method="version") == (200, b"[1,2,3]")
        assert await rpc.post(b"{}", method="version") == (200, b"[1,2,3]")
        assert server.connections == 2  # "Connection: close" was obeyed
        rpc.close()


async def test_a_reply_over_the_size_limit_is_a_protocol_error() -> None:
    ref: list[Server] = []

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply(b"[" + b"1," * 2000 + b"1]"))
        await writer.drain()
        await reader.read()

    async with serving(big) as server:
        ref.append(server)
        rpc = pool(server.port, max_body_bytes=1024)
        with pytest.raises(SignalProtocolError, match="too large"):
            await rpc.post(b"{}", method="listContacts")
        rpc.close()


async def test_no_reply_in_time_is_a_timeout_and_a_full_pool_is_unreachable() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # until the client gives up and closes

    async with serving(silent) as server:
        rpc = pool(server.port, max_connections=1, timeout=60)
        hung = asyncio.create_task(rpc.post(b"{}", method="send"))
        await asyncio.sleep(0.05)  # holds the only connection
        rpc.timeout = 0.2
        with pytest.raises(SignalNetworkError) as waited:
            await rpc.post(b"{}", method="sendTyping")
        assert type(waited.value) is SignalNetworkError  # never sent: unreachable
        assert waited.value.method == "sendTyping"
        rpc.timeout = 60
        waiting = asyncio.create_task(rpc.post(b"{}", method="sendReceipt"))
        await asyncio.sleep(0.05)
        rpc.close()  # fails the hung one, and the one waiting for its connection
        with pytest.raises(SignalNetworkError):
            await hung
        with pytest.raises(SignalNetworkError, match="closed"):
            await waiting

    async with serving(silent) as server:
        rpc = pool(server.port, timeout=1.0)
        with pytest.raises(SignalTimeoutError):
            await rpc.post(b"{}", method="send")
        await asyncio.sleep(0.01)
        assert rpc.connections == 0  # a connection that timed out is not reused
        rpc.close()


async def test_a_cancelled_request_closes_its_connection() -> None:
    """A request cancelled while its reply is on the way must not leave that reply to be
    read as the next request's: the next one gets its own."""
    received = asyncio.Event()

    async def slow_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            request_id = json.loads(request[1])["id"]
            if request_id == 1:
                received.set()
                await asyncio.sleep(0.3)  # the client gives up meanwhile
            writer.write(reply(json.dumps({"jsonrpc": "2.0", "id": request_id,
                                           "result": {}}).encode()))
            await writer.drain()

    async with serving(slow_first) as server:
        rpc = pool(server.port, max_connections=1)
        task = asyncio.create_task(rpc.post(b'{"id": 1}', method="sendTyping"))
        await asyncio.wait_for(received.wait(), 30)  # a bound against a hang
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        status, body = await rpc.post(b'{"id": 2}', method="send")
        assert status == 200 and json.loads(body)["id"] == 2
        assert server.connections == 2
        rpc.close()


async def test_an_idle_connection_past_its_expiry_is_replaced() -> None:
    ref: list[Server] = []
    async with serving(keep_alive(ref)) as server:
        ref.append(server)
        rpc = pool(server.port, keepalive_expiry=0.0)
        for _ in range(2):
            status, _ = await rpc.post(b'{"id": 1}', method="version")
            assert status == 200
        assert server.connections == 2
        rpc.close()


@pytest.mark.parametrize(("url", "target", "host"), [
    ("http://127.0.0.1:8080", "/api/v1/rpc", "127.0.0.1:8080"),
    ("http://Signal-CLI/", "/api/v1/rpc", "signal-cli"),
    ("http://[::1]:8080/base", "/base/api/v1/rpc", "[::1]:8080"),
    ("http://daemon:0/a b", "/a%20b/api/v1/rpc", "daemon:0"),
])
def test_a_plain_daemon_url_gets_a_pool_with_httpx_s_target_and_host(
        url: str, target: str, host: str) -> None:
    rpc = pool_for_url(url, rpc_path="/api/v1/rpc", max_connections=1, timeout=1.0,
                       connect_timeout=1.0, max_body_bytes=1024)
    assert rpc is not None and rpc.path == target
    assert ("Host", host) in rpc._headers


@pytest.mark.parametrize("url", [
    "https://daemon:8080", "http://user:secret@daemon:8080", "http://daemon:8080/?q=1",
    "http://daemon:8080/#top", "http://dämon:8080",
])
def test_a_url_the_pool_does_not_handle_as_httpx_would_stays_on_httpx(url: str) -> None:
    assert pool_for_url(url, rpc_path="/api/v1/rpc", max_connections=1, timeout=1.0,
                        connect_timeout=1.0, max_body_bytes=1024) is None


async def test_unsolicited_bytes_on_an_idle_connection_drop_it() -> None:
    async def chatty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(reply() + b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            await writer.drain()

    async with serving(chatty) as server:
        rpc = pool(server.port)
        assert (await rpc.post(b"{}", method="version"))[0] == 200
        assert (await rpc.post(b"{}", method="version"))[0] == 200
        assert server.connections == 2  # the extra reply never passed for the second one
        rpc.close()


async def test_daemon_restart_refused_while_down_and_fine_once_back() -> None:
    ref: list[Server] = []
    server = Server(keep_alive(ref))
    ref.append(server)
    await server.start()
    transport = HttpTransport(f"http://127.0.0.1:{server.port}", timeout=2.0,
                              connect_timeout=0.5)
    try:
        assert (await transport.call("version"))["version"] == "0.13.19"
        await server.stop()
        with pytest.raises(SignalNetworkError, match="daemon unreachable"):
            await transport.call("version")
        assert not await transport.check()
        await server.start()  # the same port again
        assert (await transport.call("version"))["version"] == "0.13.19"
        assert await transport.check()
    finally:
        await transport.aclose()
        await server.stop()


@pytest.mark.parametrize(("answer", "error"), [
    (reply(b"", status="502 Bad Gateway"), SignalNetworkError),
    (reply(b"<h1>404</h1>", status="404 Not Found"), SignalProtocolError),
    (reply(b"{not json"), SignalProtocolError),
    (reply(b'{"jsonrpc":"2.0","id":99,"result":1}'), SignalProtocolError),
])
async def test_the_transport_maps_what_the_pool_returns(answer: bytes,
                                                        error: type[Exception]) -> None:
    async def fixed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(answer)
            await writer.drain()

    async with serving(fixed) as server:
        transport = HttpTransport(f"http://127.0.0.1:{server.port}")
        try:
            with pytest.raises(error) as caught:
                await transport.call("listGroups")
            assert type(caught.value) is error
        finally:
            await transport.aclose()


async def test_after_close_requests_are_refused() -> None:
    ref: list[Server] = []
    async with serving(keep_alive(ref)) as server:
        ref.append(server)
        transport = HttpTransport(f"http://127.0.0.1:{server.port}", account="+1")
        assert (await transport.call("version"))["version"] == "0.13.19"
        assert json.loads(server.requests[0][1])["method"] == "version"
        await transport.aclose()
        with pytest.raises(SignalNetworkError, match="closed"):
            await transport.call("version")
