"""agent/signal/http_pool.py: the readability check httpcore makes on idle connections,
and the HTTP transport's requests going through that pool."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from agent.signal.client import HttpTransport
from agent.signal.http_pool import DaemonHTTPTransport, socket_readable


def test_socket_readable_is_true_once_data_or_the_end_has_arrived() -> None:
    ours, theirs = socket.socketpair()
    try:
        assert not socket_readable(ours)  # idle: the connection can be reused
        theirs.sendall(b"x")
        assert socket_readable(ours)
        ours.recv(1)
        assert not socket_readable(ours)
        theirs.close()  # the daemon closed it: not to be reused
        assert socket_readable(ours)
    finally:
        ours.close()
        theirs.close()
    assert socket_readable(None)
    assert socket_readable(ours)  # closed here: fileno() is -1


class _Rpc(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: connections go back to the pool

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({"jsonrpc": "2.0", "id": request["id"],
                           "result": {"version": "0.13.19"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def daemon_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Rpc)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_the_transport_reuses_pooled_connections_through_the_cheap_check(
        daemon_url: str) -> None:
    transport = HttpTransport(daemon_url, account="+15550001000")
    pool_transport = transport._client._transport
    assert isinstance(pool_transport, DaemonHTTPTransport)
    try:
        for _ in range(3):  # later requests check the idle pooled connection first
            assert await transport._call("version", {}) == {"version": "0.13.19"}
        connections = pool_transport._pool.connections
        assert len(connections) == 1 and connections[0].is_idle()
    finally:
        await transport.aclose()


def test_the_pool_takes_the_transport_limits() -> None:
    pool = DaemonHTTPTransport(httpx.Limits(max_connections=3, max_keepalive_connections=2))
    assert pool._pool._max_connections == 3 and pool._pool._max_keepalive_connections == 2
