"""A TCP fault proxy for the fault campaign: it stands between `serve` and one dependency
(the signal-cli daemon simulator, the model or embedding server, Redis) on a fixed
loopback port, and the test switches what that dependency looks like:

- `up`: bytes are forwarded both ways;
- `down`: killed: open connections are reset and new ones refused (nothing listens);
- `hang`: accepts connections and never answers (a plain socket that reads and holds);
- `garbage`: answers anything with bytes that are not the protocol, then closes.

Every switch cuts the connections open at that moment, as a dying, hanging or replaced
server would. Why a proxy: `serve` keeps the dependency's address from its settings, so
the same port has to be dead, hung or lying at start and mid-conversation. Standard library
only: a thread accepts, two threads pump each connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Literal

from agent.testing.ports import free_port

Mode = Literal["up", "down", "hang", "garbage"]

HTTP_GARBAGE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 31\r\n"
                b"\r\n{\"object\": \"garbage\", \"data\": [")
"""A 200 whose JSON body is cut short: parses as HTTP, not as the API."""
RESP_GARBAGE = b"*3\r\n$-7\r\nxx\r\n%\x00\xff garbage\r\n"
"""Not RESP: a Redis client must fail its command, not hang or crash."""


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    def __init__(self, target_port: int, *, garbage: bytes = HTTP_GARBAGE,
                 mode: Mode = "up") -> None:
        self.target_port = target_port
        self.garbage = garbage
        self.port = free_port()
        self.mode: Mode = "down"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._closed = False
        self.accepted = 0
        self.set(mode)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, mode: Mode) -> None:
        """Switch mode; connections open now are cut (reset when going down)."""
        with self._lock:
            self.mode = mode
            for sock in list(self._open):
                if mode == "garbage":
                    with contextlib.suppress(OSError):
                        sock.sendall(self.garbage)
                _close(sock)
            self._open.clear()
            if mode == "down" and self._listener is not None:
                _close(self._listener)
                self._listener = None
            elif mode != "down" and self._listener is None:
                self._listen()

    def close(self) -> None:
        self._closed = True
        self.set("down")

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True,
                         name=f"fault-proxy-{self.port}").start()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                mode = self.mode
                self.accepted += 1
                self._open.add(client)
            target = {"up": self._forward, "hang": self._hold,
                      "garbage": self._lie}.get(mode)
            if target is None:
                _close(client)
                continue
            threading.Thread(target=target, args=(client,), daemon=True).start()

    def _forget(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                self._open.discard(sock)
                _close(sock)

    def _hold(self, client: socket.socket) -> None:
        """Read and drop whatever comes; answer nothing until the peer or a switch ends it."""
        with contextlib.suppress(OSError):
            while client.recv(65536):
                pass
        self._forget(client)

    def _lie(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            client.settimeout(5)
            client.recv(65536)  # the request, whatever it is
            client.sendall(self.garbage)
        self._forget(client)

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            self._forget(client)
            return
        upstream.settimeout(None)
        with self._lock:
            if self.mode != "up":
                _close(upstream)
                return
            self._open.add(upstream)
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        self._forget(source, sink)
