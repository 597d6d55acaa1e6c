"""JSON-RPC POSTs to the daemon on a few kept-alive HTTP/1.1 connections (PERF-2).

Why our own: at 100 users the bot is bound by the interpreter lock, and httpx with its
stack (httpcore, anyio, sniffio) was about a fifth of the time the bot's threads held it
(sampled under the PERF-2 benchmark). Per request httpx builds a request and a response
model, takes anyio locks and cancel scopes, writes the head and the body in two system
calls, and polls every idle pooled connection before and after the request to see
whether the daemon closed it; each of these calls gives the lock up, and under load
getting it back can take a thread switch interval. Here a request is one `json.dumps`,
one write and one reply parsed as it arrives; a connection the daemon closes is noticed
by asyncio when it happens (`connection_lost`), with no poll per request. httpx has no
cheaper mode, and calling httpcore directly keeps the anyio part.

What parses the wire is h11, the HTTP/1.1 library httpx itself parses with (a dependency
of httpcore, so nothing new is installed): status line, headers, Content-Length and
chunked bodies, malformed replies. Kept deliberately small: plain `http://` only (the
daemon has no TLS; `https://` and an injected httpx client go through httpx), `POST` only,
one request at a time per connection (no pipelining), at most `max_connections`
connections, a reply body of at most `max_body_bytes` (the socket transport's line limit,
4 MiB by default). A daemon URL with credentials, a query, a fragment or a host name
that is not ASCII keeps going through httpx (`pool_for_url` returns None). The event stream
(`GET /api/v1/events`) stays on httpx: one request per connection, nothing to gain.

Failures are raised as the errors httpx's were mapped to before (`client.py`):
no connection within the time (refused, connect timeout, every connection busy until the
timeout) is SignalNetworkError "daemon unreachable"; a request that went out and got no
complete reply within `timeout` of being written (a budget of its own, as httpx's read
timeout was: time spent waiting for a connection does not shorten it, or a queued `send`
could time out after it reached the daemon and be sent again) is SignalTimeoutError; a
connection reset or closed before the reply was complete, or a reply that is not
HTTP/1.1, is SignalNetworkError; a body over the limit is SignalProtocolError. A failed
request is never retried here (a `send` could otherwise reach its user twice): the caller
decides, as before. A connection is reused
only when its last exchange ended cleanly and it has been idle for less than
`keepalive_expiry` (the daemon's HTTP server closes idle connections after longer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from urllib.parse import quote, urlsplit

import h11

from agent.signal.errors import SignalNetworkError, SignalProtocolError, SignalTimeoutError

KEEPALIVE_EXPIRY = 5.0
"""Seconds an idle connection is kept for reuse (httpx's default too)."""
MAX_HEADER_BYTES = 64 * 1024
"""The status line and headers of a reply at most (h11's own default is 16 KiB)."""


class _Connection(asyncio.Protocol):
    """One connection to the daemon; carries one request at a time."""

    def __init__(self, pool: RpcConnectionPool) -> None:
        self._pool = pool
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reply: asyncio.Future[tuple[int, bytes]] | None = None
        self._status = 0
        self._chunks: list[bytes] = []
        self._size = 0

    # ----- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._reply is None or self._reply.done():
            self.close()  # nothing was asked: an idle connection must stay silent
            return
        try:
            self._h11.receive_data(data)
            self._pump()
        except h11.RemoteProtocolError as exc:
            self._fail(SignalNetworkError("daemon unreachable"), exc)

    def eof_received(self) -> bool:
        if self._reply is not None and not self._reply.done():
            try:  # a body delimited by the end of the connection ends here
                self._h11.receive_data(b"")
                self._pump()
            except h11.RemoteProtocolError as exc:
                self._fail(SignalNetworkError("daemon unreachable"), exc)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        self._fail(SignalNetworkError("daemon unreachable"), exc)

    # ----- used by the pool

    def reusable(self, now: float) -> bool:
        return (not self.closed and self.transport is not None
                and not self.transport.is_closing()
                and self._h11.our_state is h11.IDLE and self._h11.their_state is h11.IDLE
                and now - self.idle_since < self._pool.keepalive_expiry)

    def request(self, head: h11.Request, body: bytes) -> asyncio.Future[tuple[int, bytes]]:
        """Send one request; the future gets (status, body) or the SignalError."""
        assert self.transport is not None
        self._reply = asyncio.get_running_loop().create_future()
        self._status, self._chunks, self._size = 0, [], 0
        if self.closed or self.transport.is_closing():  # closed before anything was written
            self._fail(SignalNetworkError("daemon unreachable"), None)
            return self._reply
        try:
            data = (self._h11.send(head) or b"") + (self._h11.send(h11.Data(data=body)) or b"")
            data += self._h11.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError as exc:  # pragma: no cover - our request is well formed
            self._fail(SignalProtocolError("request not sendable"), exc)
            return self._reply
        self.transport.write(data)
        return self._reply

    def finish(self, now: float) -> bool:
        """After a reply: ready the connection for the next request; False when it can't
        be reused (the daemon asked to close it, it is HTTP/1.0, or more bytes came than
        the reply: they would be taken for the next one)."""
        if (self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE
                and not self.closed and not self._h11.trailing_data[0]):
            self._h11.start_next_cycle()
            self._reply = None
            self.idle_since = now
            return True
        return False

    def close(self, *, abort: bool = False) -> None:
        """`abort`: at once, dropping what is not sent yet, after a failure, a timeout or a
        cancel (a plain close would wait for a daemon that stopped reading)."""
        if self.transport is None:
            self.closed = True
        elif abort:
            self.transport.abort()  # connection_lost follows
        else:
            self.transport.close()  # connection_lost follows

    # ----- reply parsing

    def _pump(self) -> None:
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Response):
                self._status = event.status_code
            elif isinstance(event, h11.Data):
                self._size += len(event.data)
                if self._size > self._pool.max_body_bytes:
                    self._fail(SignalProtocolError("reply too large"), None)
                    return
                self._chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                if self._reply is not None and not self._reply.done():
                    self._reply.set_result((self._status, b"".join(self._chunks)))
                return
            elif isinstance(event, h11.ConnectionClosed):
                self._fail(SignalNetworkError("daemon unreachable"), None)
                return
            # h11.InformationalResponse (1xx): the final response follows

    def _fail(self, error: SignalNetworkError | SignalProtocolError,
              cause: BaseException | None) -> None:
        """Fail the request under way, if any, and drop the connection."""
        reply = self._reply
        if reply is not None and not reply.done():
            error.__cause__ = cause
            reply.set_exception(error)
        if not self.closed:
            self.close(abort=True)


class RpcConnectionPool:
    """POSTs JSON bodies to one path of a plain-HTTP server; see the module docstring."""

    def __init__(self, host: str, port: int, *, path: str, host_header: str,
                 max_connections: int, timeout: float, connect_timeout: float,
                 max_body_bytes: int, keepalive_expiry: float = KEEPALIVE_EXPIRY) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.host = host
        self.port = port
        self.path = path
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_body_bytes = max_body_bytes
        self.keepalive_expiry = keepalive_expiry
        self._headers = [("Host", host_header), ("Content-Type", "application/json"),
                         ("Accept", "application/json")]
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: deque[_Connection] = deque()
        self._open: set[_Connection] = set()
        self._closed = False

    @property
    def connections(self) -> int:
        """Connections open now (for tests)."""
        return len(self._open)

    async def post(self, body: bytes, *, method: str) -> tuple[int, bytes]:
        """(status, body) of the reply to one POST; raises the SignalError of a failure."""
        if self._closed:
            raise SignalNetworkError("transport is closed", method=method)
        loop = asyncio.get_running_loop()
        sent = False
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(self.timeout) as budget, self._slots:
                if self._closed:  # closed while this request waited for a connection
                    raise SignalNetworkError("transport is closed")
                conn = self._take_idle(loop.time())
                if conn is None:
                    conn = await self._connect(loop)
                head = h11.Request(method="POST", target=self.path,
                                   headers=[*self._headers, ("Content-Length", str(len(body)))])
                reply = conn.request(head, body)
                sent = True
                budget.reschedule(loop.time() + self.timeout)  # the reply's own budget
                status, content = await reply
                if not conn.finish(loop.time()):
                    conn.close()
                elif not self._closed:
                    self._idle.append(conn)
                else:
                    conn.close()
                conn = None
                return status, content
        except TimeoutError:
            if sent:
                raise SignalTimeoutError("no reply in time", method=method) from None
            raise SignalNetworkError("daemon unreachable", method=method) from None
        except (SignalNetworkError, SignalProtocolError) as exc:  # from the connection
            raise type(exc)(exc.reason, method=method) from exc.__cause__
        except OSError as exc:  # the connection could not be made
            raise SignalNetworkError("daemon unreachable", method=method) from exc
        finally:
            if conn is not None:  # failed, timed out or cancelled half-way: not reusable
                conn.close(abort=True)

    def _take_idle(self, now: float) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the fewest stay warm
            if conn.reusable(now):
                return conn
            conn.close()
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        async with asyncio.timeout(self.connect_timeout):  # its TimeoutError: unreachable
            # Each of the host's addresses in turn, the next one 250 ms after the last
            # (as anyio under httpx did): an address that drops packets is not the end.
            _, protocol = await loop.create_connection(
                lambda: _Connection(self), self.host, self.port, happy_eyeballs_delay=0.25)
        if not protocol.closed:  # `request` fails at once on one already closed
            self._open.add(protocol)
        return protocol

    def forget(self, conn: _Connection) -> None:
        """A connection closed: it is no longer open or idle."""
        self._open.discard(conn)
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)

    def close(self) -> None:
        """Close every connection; requests under way fail, later ones are refused."""
        self._closed = True
        for conn in list(self._open):
            conn.close()
        self._idle.clear()


def pool_for_url(base_url: str, *, rpc_path: str, max_connections: int, timeout: float,
                 connect_timeout: float, max_body_bytes: int) -> RpcConnectionPool | None:
    """A pool for `rpc_path` under a plain `http://` daemon URL; None for a URL this module
    does not handle as httpx would (`https://`, credentials, a query or fragment, a host
    name that is not ASCII), which then stays on httpx."""
    parts = urlsplit(base_url)
    host = parts.hostname
    if (parts.scheme.lower() != "http" or not host or not host.isascii()
            or parts.username is not None or parts.password is not None
            or parts.query or parts.fragment):
        return None
    port = 80 if parts.port is None else parts.port
    host_header = (f"[{host}]" if ":" in host else host) + ("" if port == 80 else f":{port}")
    path = quote(parts.path.rstrip("/") + rpc_path, safe="/%:@!$&'()*+,;=-._~")
    try:  # refuse what h11 would refuse on every request, once, here
        h11.Request(method="POST", target=path, headers=[("Host", host_header)])
    except h11.LocalProtocolError:
        return None
    return RpcConnectionPool(host, port, path=path, host_header=host_header,
                             max_connections=max_connections, timeout=timeout,
                             connect_timeout=connect_timeout, max_body_bytes=max_body_bytes)
