"""The daemon simulator plus a closed-loop load of users, in a process of its own.

The real signal-cli daemon is a separate (Java) process, so the bot must not share its
interpreter and GIL with the simulator while being measured. Protocol on stdin/stdout,
one JSON object per line: it prints `{"url": ...}` when listening, waits for `go`, runs
the load for the given seconds, prints the statistics, then waits for `stop` (the bot
drains meanwhile) and exits.

Each user keeps one question outstanding: the next one goes out when the answer arrives.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from agent.testing.signal_daemon import direct_message, fake_signal_daemon

QUESTIONS = Path(__file__).parent / "questions.txt"
POLL_SECONDS = 0.02


def user_ids(count: int) -> list[str]:
    return [f"00000000-0000-4000-8000-{i:012d}" for i in range(count)]


def drive(sim: Any, users: list[str], seconds: float, grace: float) -> dict[str, Any]:
    questions = [line.strip() for line in QUESTIONS.read_text(encoding="utf-8").splitlines()
                 if line.strip()]
    counter = itertools.count()
    outstanding: dict[str, float] = {}
    delivered = dict.fromkeys(users, 0)
    answered = dict.fromkeys(users, 0)
    latencies: list[float] = []

    def ask(uuid: str) -> None:
        outstanding[uuid] = time.perf_counter()
        delivered[uuid] += 1
        question = questions[next(counter) % len(questions)]
        sim.deliver(direct_message(question, source_uuid=uuid, source_number=None))

    for uuid in users:
        ask(uuid)
    seen = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        sends = sim.sent("send")
        now = time.perf_counter()
        for params in sends[seen:]:
            uuid = params["recipient"][0]
            answered[uuid] += 1
            latencies.append(now - outstanding.pop(uuid, now))
            if now < deadline:
                ask(uuid)
        seen = len(sends)
        if now >= deadline and (not outstanding or now > deadline + grace):
            break
        time.sleep(POLL_SECONDS)
    elapsed = time.perf_counter() - started
    total = sum(answered.values())
    ordered = sorted(latencies) or [0.0]
    return {
        "users": len(users), "seconds": round(elapsed, 1), "answers": total,
        "answers_per_s": total / elapsed,
        "latency_p50_ms": statistics.median(ordered) * 1000,
        "latency_p95_ms": ordered[int(0.95 * (len(ordered) - 1))] * 1000,
        "lost": sum(max(0, delivered[u] - answered[u]) for u in users),
        "duplicates": sum(max(0, answered[u] - delivered[u]) for u in users),
        "rpc_calls": {method: sim.count(method)
                      for method in ("send", "sendTyping", "sendReceipt")},
        "rpc_requests": sim.requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--grace", type=float, default=30.0,
                        help="how long to wait for answers still outstanding at the end")
    parser.add_argument("--transport", choices=("http", "tcp"), default="http")
    args = parser.parse_args()
    tcp = args.transport == "tcp"
    with fake_signal_daemon(keepalive_interval=15.0, tcp=tcp, http=not tcp) as sim:
        url = sim.tcp_url if tcp else sim.http_url
        print(json.dumps({"url": url}), flush=True)
        if sys.stdin.readline().strip() != "go":
            return
        result = drive(sim, user_ids(args.users), args.seconds, args.grace)
        print(json.dumps(result), flush=True)
        sys.stdin.readline()  # "stop": the bot has drained


if __name__ == "__main__":
    main()
