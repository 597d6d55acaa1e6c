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
from agent.feedback import AnswerRecord, answer_record
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
    feedback: AnswerRecord | None = field(default=None, compare=False)
    """A graph answer's feedback record (EV-4): reactions to it are counted. Bookkeeping,
    not part of what the message gets, so replies compare without it."""


@dataclass(kw_only=True, eq=False, repr=False)
class Responder:
    """Runs the graph for one admitted message."""

    assistant: Assistant
    transport: SignalTransport
    users: UserDirectory
    db: Db
    sleep: Sleep
    typing_delay: float = 0.5
    dependencies: DependencyMonitor | None = None
    anomalies: AnomalyDetector | None = None
    anomaly_recorder: AnomalyRecorder | None = None
    keep_feedback_text: bool = False
    """EV-4: with FEEDBACK__KEEP_TEXT the question is kept for a reaction to refer to."""
    _courtesy: set[asyncio.Task[Any]] = field(default_factory=set, init=False)

    async def answer(self, message: InboxMessage, admitted: Admit) -> Reply:
        """Raises DependencyDown when the query embedding failed because its endpoint is
        down (the message then waits in the inbox)."""
        payload = message.payload or {}
        uuid = message.key.sender_uuid
        user, text, chat = admitted.user, admitted.text, message.chat_id
        group = payload.get("group_id")
        if not group:
            self._background(self.transport.send_receipt(uuid, [message.key.msg_timestamp]))
        typing = asyncio.ensure_future(self._typing_after_delay(uuid, group))
        if self.typing_delay <= 0:
            await asyncio.wait({typing})  # shown before the work starts
        expires = int(payload.get("expires") or 0)
        context = None
        if expires:  # a disappearing chat forgets on its own timer (SIG-7)
            graph_context = self.assistant.context()
            context = dataclasses.replace(
                graph_context, memory_ttl=min(graph_context.memory_ttl, float(expires)))
        try:
            answer = await self.assistant.ask(text, user_id=uuid, chat=chat, context=context)
        except BaseException:
            typing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                if await typing:  # no reply will clear the indicator: switch it off
                    await best_effort(self.transport.send_typing(
                        recipient=None if group else uuid, group_id=group, stop=True))
            raise
        typing.cancel()  # the reply clears an indicator that was shown
        if answer.fallback_reason == "index_unavailable":
            # the query embedding failed just now: wait for it
            require_embeddings(self.dependencies, self.assistant.index is not None)
        if self.anomalies is not None and self.anomaly_recorder is not None:
            new_user = not await self.db(self.users.chats, user)
            self.anomaly_recorder.record(self.anomalies.observe(MessageFacts(
                user=user, at=admitted.at, length=len(text), new_user=new_user,
                blocked=answer.fallback_reason in BLOCKED_REASONS)))
        await self.db(self.users.touch_thread, user, chat, expires=expires)
        return Reply(answer.reply, [dict(c) for c in answer.citations],
                     route_of(answer.fallback_reason),
                     feedback=answer_record(answer, text, keep_text=self.keep_feedback_text))

    async def _typing_after_delay(self, uuid: str, group: str | None) -> bool:
        """Show "typing…" once an answer takes longer than `typing_delay`; True if shown."""
        if self.typing_delay > 0:
            await self.sleep(self.typing_delay)
        return await best_effort(self.transport.send_typing(
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
