"""Answers an admitted question through the graph and returns a `Reply` (text, citations,
route), with the courtesies around it: a read receipt, and a typing indicator only when
the answer takes longer than `typing_delay` (an instant answer needs none). The indicator
is not switched off before a reply, because Signal clients clear it when the sender's
next message arrives.

Disappearing messages (SIG-7): signal-cli stores the timer of each incoming message for
its chat and applies it to every message it sends there (checked in its source,
`IncomingMessageHandler` and `SendHelper`), so replies carry the same timer; the chat's
conversation memory is forgotten on the same timer (the graph context's memory TTL and
the thread's `expires`, which housekeeping honours).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from agent.anomaly_rules import MessageFacts
from agent.service.admission import Admit, require_embeddings
from agent.service.common import Db, Sleep, best_effort
from graph.contract import BLOCKED_REASONS, Route, route_of

if TYPE_CHECKING:
    from agent.anomaly_rules import AnomalyDetector
    from agent.assistant import Assistant
    from agent.observability.anomalies import AnomalyRecorder
    from agent.observability.dependencies import DependencyMonitor
    from agent.signal import SignalTransport
    from agent.store import InboxMessage
    from agent.users import UserDirectory

ServiceRoute = Literal["service", "silence", "held"]
"""Routes of messages that do not (or not yet) reach the graph, on the span only."""
SILENCE: Final = "silence"
"""The route of a message that gets no reply."""
SERVICE: Final = "service"
"""The route of a reply the service gives itself (activation, a command, a notice)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What a message gets: `text` None is a deliberate silence; `citations` are kept for
    /sources and feedback once the first part is sent; `route` names the path taken
    (`answered`, `fallback:<reason>`, `service`, `silence`)."""

    text: str | None
    citations: list[dict[str, Any]] = field(default_factory=list)
    route: Route | ServiceRoute = SERVICE


class Responder:
    """Runs the graph for one admitted message."""

    def __init__(self, *, assistant: Assistant, transport: SignalTransport,
                 users: UserDirectory, db: Db, sleep: Sleep, typing_delay: float = 0.5,
                 dependencies: DependencyMonitor | None = None,
                 anomalies: AnomalyDetector | None = None,
                 anomaly_recorder: AnomalyRecorder | None = None) -> None:
        self._assistant = assistant
        self._transport = transport
        self._users = users
        self._db = db
        self._sleep = sleep
        self._typing_delay = typing_delay
        self._dependencies = dependencies
        self._anomalies = anomalies
        self._anomaly_recorder = anomaly_recorder
        self._courtesy: set[asyncio.Task[Any]] = set()

    async def answer(self, message: InboxMessage, admitted: Admit) -> Reply:
        """Raises DependencyDown when the query embedding failed because its endpoint is
        down (the message then waits in the inbox)."""
        payload = message.payload or {}
        uuid = message.key.sender_uuid
        user, text, chat = admitted.user, admitted.text, message.chat_id
        group = payload.get("group_id")
        if not group:
            self._background(self._transport.send_receipt(uuid, [message.key.msg_timestamp]))
        typing = asyncio.ensure_future(self._typing_after_delay(uuid, group))
        if self._typing_delay <= 0:
            await asyncio.wait({typing})  # shown before the work starts
        expires = int(payload.get("expires") or 0)
        context = None
        if expires:  # a disappearing chat forgets on its own timer (SIG-7)
            graph_context = self._assistant.context()
            context = dataclasses.replace(
                graph_context, memory_ttl=min(graph_context.memory_ttl, float(expires)))
        try:
            answer = await self._assistant.ask(text, user_id=uuid, chat=chat, context=context)
        except BaseException:
            typing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                if await typing:  # no reply will clear the indicator: switch it off
                    await best_effort(self._transport.send_typing(
                        recipient=None if group else uuid, group_id=group, stop=True))
            raise
        typing.cancel()  # the reply clears an indicator that was shown
        if answer.fallback_reason == "index_unavailable":
            # the query embedding failed just now: wait for it
            require_embeddings(self._dependencies, self._assistant.index is not None)
        if self._anomalies is not None and self._anomaly_recorder is not None:
            new_user = not await self._db(self._users.chats, user)
            self._anomaly_recorder.record(self._anomalies.observe(MessageFacts(
                user=user, at=admitted.at, length=len(text), new_user=new_user,
                blocked=answer.fallback_reason in BLOCKED_REASONS)))
        await self._db(self._users.touch_thread, user, chat, expires=expires)
        return Reply(answer.reply, [dict(c) for c in answer.citations],
                     route_of(answer.fallback_reason))

    async def _typing_after_delay(self, uuid: str, group: str | None) -> bool:
        """Show "typing…" once an answer takes longer than `typing_delay`; True if shown."""
        if self._typing_delay > 0:
            await self._sleep(self._typing_delay)
        return await best_effort(self._transport.send_typing(
            recipient=None if group else uuid, group_id=group))

    def _background(self, call: Awaitable[Any]) -> None:
        """Fire a courtesy call (read receipt) without holding up the answer."""
        task = asyncio.ensure_future(best_effort(call))
        self._courtesy.add(task)
        task.add_done_callback(self._courtesy.discard)

    def cancel_courtesy(self) -> None:
        """At the end of a drain: receipts still in flight are not worth waiting for."""
        for task in self._courtesy:
            task.cancel()
