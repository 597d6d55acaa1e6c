"""Fakes for the service's parts: an injected clock, a recording transport, an assistant
that answers without the graph. The store and user directory are the real SQLite ones
(in tmp_path), on the same injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.assistant import Answer
from agent.resilience import CircuitBreaker
from agent.service import Alerting, Db, ServiceStats
from agent.signal import SendResult, SignalError
from agent.store import InboxMessage, Store
from agent.users import UserDirectory

ALICE = "a1a1a1a1-0000-4000-8000-000000000001"
ADMIN = "ad0ad0ad-0000-4000-8000-000000000002"


class Clock:
    """Time that moves only when a test moves it."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeTransport:
    """Records every call; `failures` are raised by the next sends, in order."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    receipts: list[tuple[str, list[int]]] = field(default_factory=list)
    typing: list[dict[str, Any]] = field(default_factory=list)
    failures: list[SignalError] = field(default_factory=list)
    next_timestamp: int = 5_000

    async def send(self, message: str, **kwargs: Any) -> SendResult:
        if self.failures:
            raise self.failures.pop(0)
        self.next_timestamp += 1
        self.sent.append({"message": message, **kwargs})
        return SendResult(self.next_timestamp)

    async def send_receipt(self, recipient: str, timestamps: list[int]) -> SendResult:
        self.receipts.append((recipient, list(timestamps)))
        return SendResult(None)

    async def send_typing(self, **kwargs: Any) -> SendResult:
        self.typing.append(kwargs)
        return SendResult(None)


class FakeAssistant:
    """`hash_user`, `index`, `breaker`, `ask`, `context` and `forget_thread` as the parts
    use them; `answers` are returned by `ask` in order (an exception is raised)."""

    def __init__(self, answers: list[Answer | BaseException] | None = None) -> None:
        self.answers = list(answers or [])
        self.asked: list[dict[str, Any]] = []
        self.forgotten: list[tuple[str, str]] = []
        self.index: Any = object()
        self.breaker = CircuitBreaker()
        self.started = asyncio.Event()
        self.release: asyncio.Event | None = None

    @staticmethod
    def hash_user(uuid: str) -> str:
        return "h:" + uuid

    async def ask(self, question: str, user_id: str = "local", *, chat: str | None = None,
                  context: Any = None) -> Answer:
        self.asked.append({"question": question, "user_id": user_id, "chat": chat,
                           "context": context})
        self.started.set()
        if self.release is not None:
            await self.release.wait()
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def context(self) -> Any:
        @dataclass(frozen=True)
        class Context:
            memory_ttl: float = 3600.0
        return Context()

    async def forget_thread(self, user: str, chat: str) -> None:
        self.forgotten.append((user, chat))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    opened = Store(tmp_path / "inbox.sqlite3", clock=clock)
    yield opened
    opened.close()


@pytest.fixture
def users(tmp_path: Path, clock: Clock) -> Iterator[UserDirectory]:
    opened = UserDirectory(tmp_path / "users.sqlite3", clock=clock)
    yield opened
    opened.close()


@pytest.fixture
def stats() -> ServiceStats:
    return ServiceStats()


@pytest.fixture
def alerting(stats: ServiceStats) -> Alerting:
    return Alerting(stats, alert=lambda kind: None)


@pytest.fixture
def db() -> Db:
    return Db()  # not opened: calls run on asyncio's default threads


def admitted(store: Store, text: str, *, sender: str = ALICE, timestamp: int = 1,
             group: str | None = None, **payload: Any) -> InboxMessage:
    """A message as the coordinator hands it to the parts: in the inbox, claimed."""
    message = store.admit(sender, timestamp, group or "dm",
                          {"text": text, "group_id": group, "number": None, **payload})
    assert message is not None
    return message
