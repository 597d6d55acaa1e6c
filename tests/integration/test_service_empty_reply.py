"""The service never sends an empty message, whatever the assistant returns."""

from __future__ import annotations

from typing import Any

from agent.assistant import Answer, Assistant
from agent.service import ACTIVATED, GAVE_UP
from agent.testing.signal_daemon import FakeSignalDaemon, direct_message
from tests.integration.test_service import (  # noqa: F401 - fixtures used by name
    activate,
    assistant,
    sim,
    start,
    texts,
)


async def test_an_empty_reply_becomes_the_apology(sim: FakeSignalDaemon, start: Any,  # noqa: F811
                                                  assistant: Assistant) -> None:  # noqa: F811
    async def empty(*_args: Any, **_kwargs: Any) -> Answer:
        return Answer(reply=" \n ")

    assistant.ask = empty  # type: ignore[method-assign]
    await start()
    await activate(sim)
    sim.deliver(direct_message("What color are widgets?"))
    await sim.wait_for("send", 2)
    assert texts(sim) == [ACTIVATED, GAVE_UP]
