"""The connection pool of the HTTP transport, with httpcore's per-request check made cheap.

Why: before every request (and after every response) httpcore asks each idle pooled
connection whether its socket is readable, which for an idle HTTP/1.1 connection means
the daemon closed it. Its anyio stream answers by building all of anyio's socket
attributes, a `getpeername` system call included, then polling the socket: at 100 users
that lookup was about a tenth of the bot's event-loop thread (PERF-2 profile). Here the
socket is looked up once per connection and the check is the poll alone; the check
itself, and so what it protects against (sending on a connection the daemon has closed),
is unchanged.

The pool is httpcore's own `AsyncConnectionPool` with a network backend that wraps
anyio's: only `get_extra_info("is_readable")` differs. httpx builds its pool inside
`AsyncHTTPTransport.__init__` with no way to pass a backend, so `DaemonHTTPTransport`
sets the pool itself (httpx is pinned below 1.0 in pyproject.toml, and the unit tests
send requests through it).
"""

from __future__ import annotations

import select
import socket
import ssl
import sys
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

SocketOption = (tuple[int, int, int] | tuple[int, int, bytes | bytearray]
                | tuple[int, int, None, int])


def socket_readable(sock: socket.socket | None) -> bool:
    """Whether a read on `sock` would return at once (data, or the b"" of a closed peer).
    A socket that is gone counts as readable, as httpcore counts it (the connection is
    then dropped rather than used)."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    if sys.platform == "win32" or not hasattr(select, "poll"):  # pragma: no cover
        ready, _, _ = select.select([fd], [], [], 0)
        return bool(ready)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _DaemonStream(httpcore.AsyncNetworkStream):
    """An anyio stream whose readability check reuses the socket looked up at connect."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._socket: socket.socket | None = stream.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        return _DaemonStream(await self._stream.start_tls(ssl_context, server_hostname,
                                                          timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return socket_readable(self._socket)
        return self._stream.get_extra_info(info)


class _DaemonBackend(httpcore.AsyncNetworkBackend):
    """anyio's backend (what httpcore picks under asyncio), its streams wrapped."""

    def __init__(self) -> None:
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[SocketOption] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        return _DaemonStream(await self._backend.connect_tcp(
            host, port, timeout=timeout, local_address=local_address,
            socket_options=socket_options))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[SocketOption] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:  # pragma: no cover
        return _DaemonStream(await self._backend.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class DaemonHTTPTransport(httpx.AsyncHTTPTransport):
    """httpx's transport (no proxy, HTTP/1.1, no retries) over the pool described above."""

    def __init__(self, limits: httpx.Limits) -> None:
        # httpx's own set-up first (whatever a later httpx adds), then its pool, a private
        # attribute, replaced: checked, so a renamed one fails here with one clear error
        # instead of at every request. (The replaced pool never opened a connection.)
        super().__init__(limits=limits, http1=True, http2=False, retries=0)
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError(f"httpx {httpx.__version__}: AsyncHTTPTransport keeps no "
                               "`_pool`; agent/signal/http_pool.py needs updating")
        self._pool = httpcore.AsyncConnectionPool(
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, http1=True, http2=False,
            network_backend=_DaemonBackend())
