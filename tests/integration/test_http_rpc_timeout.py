"""The HTTP JSON-RPC pool's timeout in real time (agent/signal/http_rpc.py): what the unit
tests cannot show without waiting, since the budget runs on the event loop's clock."""

from __future__ import annotations

import asyncio
import json

from tests.unit.agent.signal.test_http_rpc import pool, read_request, reply, serving


async def test_a_reply_gets_the_whole_timeout_after_its_request_was_written() -> None:
    """Time spent waiting for the only connection does not shorten the next request's
    wait for its reply: each reply here takes 2/3 of the timeout, so the second request
    is answered after 4/3 of it in all, and must not time out (a `send` that timed out
    after reaching the daemon would be sent again)."""
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            await asyncio.sleep(2.0)
            writer.write(reply(json.dumps({"jsonrpc": "2.0", "id": json.loads(request[1])["id"],
                                           "result": {}}).encode()))
            await writer.drain()

    async with serving(slow) as server:
        rpc = pool(server.port, max_connections=1, timeout=3.0)
        first = asyncio.create_task(rpc.post(b'{"id": 1}', method="send"))
        second = asyncio.create_task(rpc.post(b'{"id": 2}', method="send"))
        replies = await asyncio.gather(first, second)
        assert [json.loads(body)["id"] for _, body in replies] == [1, 2]
        rpc.close()
