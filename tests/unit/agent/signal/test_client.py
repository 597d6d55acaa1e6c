"""agent/signal/client.py against fakes: which calls share a JSON-RPC batch, and a socket
daemon's reply to a batch that failed as a whole."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from agent.signal.client import HttpTransport


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
