"""agent/signal/client.py against fakes: which calls share a JSON-RPC batch, and a socket
daemon's reply to a batch that failed as a whole."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import httpx

from agent.signal.batch import Call
from agent.signal.client import HttpTransport, SocketTransport, _Connection
from agent.signal.errors import SignalError


class Daemon:
    """Answers every JSON-RPC request or batch posted to it once `release` is set."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.release = asyncio.Event()

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        await self.release.wait()

        def answer(call: dict[str, Any]) -> dict[str, Any]:
            return {"jsonrpc": "2.0", "id": call["id"],
                    "result": {"timestamp": 1, "results": []}}

        return httpx.Response(200, json=[answer(c) for c in body] if isinstance(body, list)
                              else answer(body))


def methods(body: Any) -> list[str]:
    return sorted(c["method"] for c in body) if isinstance(body, list) else [body["method"]]


async def test_sends_and_reactions_never_share_a_request_over_http() -> None:
    daemon = Daemon()
    async with httpx.AsyncClient(transport=httpx.MockTransport(daemon.handle)) as client:
        transport = HttpTransport("http://daemon", client=client, account="+1")
        calls = [transport.send("one", recipients=["a"]),
                 transport.send_receipt("a", [1]),
                 transport.send("two", recipients=["b"]),
                 transport.send_typing(recipient="b"),
                 transport.send_reaction("+", target_author="c", target_timestamp=1,
                                         recipient="c")]
        pending = asyncio.gather(*calls)
        for _ in range(20):
            await asyncio.sleep(0)
        daemon.release.set()
        await pending
    sent = sorted(methods(body) for body in daemon.bodies)
    assert sent == [["send"], ["send"], ["sendReaction"], ["sendReceipt", "sendTyping"]]
    assert all(not isinstance(body, list) for body in daemon.bodies
               if methods(body)[0] in ("send", "sendReaction")), "alone, not in a batch"


class Writer:
    """A socket's writing end that keeps the lines."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.lines.append(data)

    async def drain(self) -> None:
        return None


async def test_a_socket_batch_failed_as_a_whole_fails_its_calls_at_once() -> None:
    """signal-cli answers a batch it cannot run with one error object whose id is null:
    its calls fail then, not when the timeout runs out."""
    transport = SocketTransport(host="daemon", port=1, timeout=3600)
    writer = Writer()
    conn = _Connection(cast(asyncio.StreamReader, None), cast(asyncio.StreamWriter, writer))
    transport._conn = conn
    transport._ready.set()
    transport._supervisor = asyncio.ensure_future(asyncio.Event().wait())
    try:
        pending = asyncio.ensure_future(transport._call_batch(
            [Call("sendReceipt", {"recipient": "a"}), Call("sendTyping", {"recipient": "b"})]))
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(writer.lines) == 1 and json.loads(writer.lines[0])[0]["method"]
        transport._handle_line(conn, b'{"jsonrpc":"2.0","id":null,"error":'
                                     b'{"code":-32603,"message":"internal +4912345"}}\n')
        for _ in range(5):
            await asyncio.sleep(0)
        assert pending.done(), "the calls still wait for their timeout"
        outcomes = pending.result()
        assert all(isinstance(o, SignalError) and o.code == -32603 for o in outcomes)
        assert [o.method for o in outcomes] == ["sendReceipt", "sendTyping"]
        assert conn.pending == {}
    finally:
        transport._supervisor.cancel()


async def test_a_null_id_error_fails_no_plain_request() -> None:
    """Only batches are failed by a null-id error: a plain request has its own id."""
    transport = SocketTransport(host="daemon", port=1, timeout=3600)
    conn = _Connection(cast(asyncio.StreamReader, None),
                       cast(asyncio.StreamWriter, Writer()))
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    conn.pending[1] = future
    transport._handle_line(conn, b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700}}\n')
    assert not future.done()
