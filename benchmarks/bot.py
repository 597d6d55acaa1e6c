"""Bot throughput through the daemon simulator with an instant model (PERF-2).

The simulator and the load (100 users, each keeping one question outstanding) run in a
child process (`benchmarks.load_daemon`), as the real daemon would; this process runs
only the bot service with the real graph, index, embedder and SQLite stores. Reported:
answers per second, reply latency p50/p95 (delivery into the simulator to the send
call), messages lost and duplicates, and the RPC calls the bot made per answer and the
requests that carried them (calls made together go as one JSON-RPC batch).
Per-user rate limits are raised for the run (the default 10/minute would cap 100 users at
17 messages/s): this measures the pipeline, not the limiter.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


async def _read_json(stream: asyncio.StreamReader, timeout: float) -> dict[str, Any]:
    line = await asyncio.wait_for(stream.readline(), timeout=timeout)
    if not line:
        raise RuntimeError("the load process ended early")
    result: dict[str, Any] = json.loads(line)
    return result


async def run_bot_benchmark(index_dir: Path, embedder: Any, *, seconds: float,
                            users: int = 100, transport: str = "http",
                            typing_delay: float = 0.5) -> dict[str, Any]:
    from agent.addressing import BotIdentity
    from agent.audit import JsonLinesAuditSink
    from agent.ratelimit import ActivationLockout, UserRateLimiter
    from agent.serve import use_graph_threads
    from agent.service import AccessPolicy
    from agent.settings import load_settings
    from agent.signal import create_transport
    from agent.store import Store
    from agent.testing.signal_daemon import BOT_NUMBER, BOT_UUID
    from agent.users import UserDirectory
    from agent.wiring import assemble_service, build_assistant
    from benchmarks.__main__ import embedder_label, instant_chat_model
    from benchmarks.load_daemon import user_ids
    from knowledge.batching import BatchingEmbedder
    from knowledge.index import EmbeddingInfo, open_index

    load = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.load_daemon", "--users", str(users),
        "--seconds", str(seconds), "--transport", transport, cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert load.stdin is not None
    assert load.stdout is not None
    try:
        url = (await _read_json(load.stdout, 30))["url"]
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(Path(tmp) / "no-secrets", data_dir=Path(tmp))
            index = open_index(index_dir, EmbeddingInfo("local", embedder.model_name,
                                                        embedder.dimension))
            instant = instant_chat_model("Instant [1].")
            # As `serve` builds it: concurrent questions share the local model's passes.
            served = BatchingEmbedder(embedder)
            assistant = build_assistant(  # the audit trail as `serve` writes it
                settings, embedder=served, index=index, chat_model=instant,
                audit=JsonLinesAuditSink(Path(tmp) / "audit.jsonl"))
            store = Store(Path(tmp) / "inbox.sqlite3")
            directory = UserDirectory(Path(tmp) / "users.sqlite3")
            for uuid in user_ids(users):
                directory.activate(assistant.hash_user(uuid))
            service = assemble_service(
                transport=create_transport(url, account=BOT_NUMBER), assistant=assistant,
                store=store, users=directory, limiter=UserRateLimiter("100000/minute"),
                lockout=ActivationLockout(), bot=BotIdentity(uuid=BOT_UUID, number=BOT_NUMBER),
                access=AccessPolicy(passphrase="benchmark"), typing_delay=typing_delay)
            use_graph_threads(asyncio.get_running_loop())  # as `serve` runs it
            # `serve` loads the output guard's library right after start-up; measure the
            # steady state, not the first replies waiting for it.
            await asyncio.to_thread(assistant.warm_guards)
            stop = asyncio.Event()
            task = asyncio.create_task(service.run(stop))
            await asyncio.sleep(0.5)  # the event stream is open
            load.stdin.write(b"go\n")
            await load.stdin.drain()
            result = await _read_json(load.stdout, seconds + 120)
            stop.set()
            await asyncio.wait_for(task, timeout=60)
            await service.transport.aclose()
            store.close()
            directory.close()
        load.stdin.write(b"stop\n")
        await load.stdin.drain()
        await asyncio.wait_for(load.wait(), timeout=30)
    finally:
        if load.returncode is None:
            load.kill()
            await load.wait()
    calls = result.pop("rpc_calls")
    requests = result.pop("rpc_requests")
    return {"embedder": embedder_label(embedder), "transport": transport,
            "typing_delay_s": typing_delay, **result,
            "rpc_per_answer": sum(calls.values()) / max(1, result["answers"]),
            "requests_per_answer": requests / max(1, result["answers"])}
