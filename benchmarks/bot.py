"""Bot throughput through the daemon simulator with an instant model (PERF-2).

100 users each keep one question outstanding (a closed loop: the next question goes out
when the answer arrives), for a fixed time. Reported: answers per second, reply latency
p50/p95 (delivery into the simulator to the send call), messages lost and duplicates.
Per-user rate limits are raised for the run (the default 10/minute would cap 100 users at
17 messages/s): this measures the pipeline, not the limiter.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


async def run_bot_benchmark(index_dir: Path, embedder: Any, *, seconds: float,
                            users: int = 100) -> dict[str, Any]:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from agent.addressing import BotIdentity
    from agent.assistant import Assistant
    from agent.audit import MemoryAuditSink
    from agent.service import AccessPolicy, BotService
    from agent.settings import load_settings
    from agent.signal import create_transport
    from agent.store import Store
    from agent.users import UserDirectory
    from guards.ratelimit import ActivationLockout, UserRateLimiter
    from knowledge.index import EmbeddingInfo, open_index
    from tests.fakes.signal_daemon import BOT_NUMBER, BOT_UUID, direct_message, fake_signal_daemon

    questions = [line.strip() for line in (Path(__file__).parent / "questions.txt")
                 .read_text(encoding="utf-8").splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as tmp, \
            fake_signal_daemon(keepalive_interval=15.0, tcp=False) as sim:
        settings = load_settings(Path(tmp) / "no-secrets", data_dir=Path(tmp))
        index = open_index(index_dir, EmbeddingInfo("local", embedder.model_name,
                                                    embedder.dimension))
        instant = GenericFakeChatModel(messages=itertools.cycle([AIMessage("Instant [1].")]))
        assistant = Assistant(settings, embedder=embedder, index=index, chat_model=instant,
                              audit=MemoryAuditSink())
        store = Store(Path(tmp) / "inbox.sqlite3")
        directory = UserDirectory(Path(tmp) / "users.sqlite3")
        uuids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(users)]
        for uuid in uuids:
            directory.activate(assistant.hash_user(uuid))
        service = BotService(
            transport=create_transport(sim.http_url, account=BOT_NUMBER), assistant=assistant,
            store=store, users=directory, limiter=UserRateLimiter("100000/minute"),
            lockout=ActivationLockout(), bot=BotIdentity(uuid=BOT_UUID, number=BOT_NUMBER),
            access=AccessPolicy(passphrase="benchmark"))
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        await asyncio.sleep(0.5)

        outstanding: dict[str, float] = {}
        delivered: dict[str, int] = dict.fromkeys(uuids, 0)
        answered: dict[str, int] = dict.fromkeys(uuids, 0)
        latencies: list[float] = []
        counter = itertools.count()

        def ask(uuid: str) -> None:
            question = questions[next(counter) % len(questions)]
            outstanding[uuid] = time.perf_counter()
            delivered[uuid] += 1
            sim.deliver(direct_message(question, source_uuid=uuid, source_number=None))

        for uuid in uuids:
            ask(uuid)
        seen = 0
        started = time.perf_counter()
        deadline = started + seconds
        while True:
            sends = sim.sent("send")
            for params in sends[seen:]:
                uuid = params["recipient"][0]
                answered[uuid] += 1
                latencies.append(time.perf_counter() - outstanding.pop(uuid, time.perf_counter()))
                if time.perf_counter() < deadline:
                    ask(uuid)
            seen = len(sends)
            now = time.perf_counter()
            if now >= deadline and (not outstanding or now > deadline + 30):
                break
            await asyncio.sleep(0.05)  # the simulator's call log is copied on each read
        elapsed = time.perf_counter() - started
        stop.set()
        await asyncio.wait_for(task, timeout=60)
        await service.transport.aclose()
        store.close()
        directory.close()
    total_answered = sum(answered.values())
    return {
        "embedder": embedder.model_name, "users": users, "seconds": round(elapsed, 1),
        "answers": total_answered, "answers_per_s": total_answered / elapsed,
        "latency_p50_ms": statistics.median(latencies) * 1000,
        "latency_p95_ms": sorted(latencies)[int(0.95 * (len(latencies) - 1))] * 1000,
        "lost": sum(max(0, delivered[u] - answered[u]) for u in uuids),
        "duplicates": sum(max(0, answered[u] - delivered[u]) for u in uuids),
    }
