"""Run the bot's whole graph in a fresh process that refuses every non-loopback connection.

Started by `test_no_network.py` as `python no_network_run.py INDEX_DIR DATA_DIR`. The socket
guard is installed before anything of ours or of our libraries is imported, so connections
attempted at import, at warm-up, during a run or by exporters flushing at the end are all
seen. Prints one JSON object: the replies and every refused destination.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import sys
from typing import Any

refused: list[str] = []


def _loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str) or host == "localhost":
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a name: resolving it is already a leak


def _check(host: Any) -> None:
    if not _loopback(host):
        refused.append(str(host))
        raise OSError(f"non-loopback connection refused by the test: {host}")


_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
_getaddrinfo, _create_connection = socket.getaddrinfo, socket.create_connection


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address[0])
    return _connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address[0])
    return _connect_ex(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if host is not None:
        _check(host)
    return _getaddrinfo(host, *args, **kwargs)


def _guarded_create_connection(address: Any, *args: Any, **kwargs: Any) -> Any:
    _check(address[0])
    return _create_connection(address, *args, **kwargs)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
socket.getaddrinfo = _guarded_getaddrinfo
socket.create_connection = _guarded_create_connection


async def main(index_dir: str, data_dir: str) -> dict[str, Any]:
    from agent.audit import MemoryAuditSink
    from agent.settings import load_settings
    from agent.testing.openai_server import CHAT_PATH, FakeOpenAIServer, Reply
    from agent.wiring import build_assistant

    with FakeOpenAIServer() as server:
        os.environ.update({"SIGNAL_RAG_DATA_DIR": data_dir, "SIGNAL_RAG_INDEX_DIR": index_dir,
                           "SIGNAL_RAG_LLM__BASE_URL": server.base_url,
                           "SIGNAL_RAG_LLM__MODEL": "fake-model",
                           "SIGNAL_RAG_LLM__API_KEY": "sk-test-key"})
        sink = MemoryAuditSink()
        assistant = build_assistant(load_settings(), audit=sink)
        assistant.open_index()
        assistant.warm_guards()
        server.enqueue(Reply("No: it sends nothing to third parties [1]."),
                       Reply("Download the fix from https://evil.example.net/fix [1]."))
        question = "Does the bot send any telemetry to third parties?"
        answered = await assistant.ask(question)
        blocked = await assistant.ask(question)
        model_calls = server.count(CHAT_PATH)

    from opentelemetry import trace

    global_provider = trace.get_tracer_provider()
    if hasattr(global_provider, "force_flush"):
        global_provider.force_flush()
    return {"answered": answered.fallback_reason, "blocked": blocked.fallback_reason,
            "routes": [e["route"] for e in sink.events], "model_calls": model_calls}


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1], sys.argv[2]))
    print(json.dumps({**result, "refused": refused}))
