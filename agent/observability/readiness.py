"""Readiness checks of a running bot (OBS-5), each a status and a content-free detail.

Ready means it can do its job now: signal-cli answers, an index is loaded and verified,
the model's circuit is not open (with it open the bot still replies, from the fallback,
so operators should know), and the inbox is draining (nothing waits longer than
`max_backlog_age` seconds). With an embedding endpoint, a chat model server or Redis
configured, each must have answered its last probe (agent/observability/dependencies.py):
the detail then names the error class of the failure, e.g. `unreachable: APIConnectionError`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.observability.dependencies import MODEL

if TYPE_CHECKING:
    from agent.service import BotService

MAX_BACKLOG_AGE_S = 300.0
SIGNAL_CLI_CHECK_TIMEOUT_S = 1.0
"""Under the health server's whole budget (2 s), so a hung daemon is named as such and
the other checks still report, instead of the whole of `/readyz` timing out."""


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    detail: str
    """A short, content-free explanation (a state, a count, an error class)."""


async def service_readiness(service: BotService, *,
                            max_backlog_age: float = MAX_BACKLOG_AGE_S,
                            signal_cli_timeout: float = SIGNAL_CLI_CHECK_TIMEOUT_S,
                            ) -> dict[str, Check]:
    transport = service.transport
    try:
        reachable = await asyncio.wait_for(transport.check(), signal_cli_timeout)
    except TimeoutError:
        signal_cli = Check(False, f"check timed out after {signal_cli_timeout:g} s")
    except Exception as exc:  # noqa: BLE001 - any failure to check is "not reachable"
        signal_cli = Check(False, f"check failed: {type(exc).__name__}")
    else:
        status = transport.status
        # The transports name why their check failed (a timeout, garbage instead of a
        # JSON-RPC reply); a transport without that attribute says only "unreachable".
        why = getattr(transport, "check_error", None)
        seen = "reachable" if reachable else f"unreachable: {why}" if why else "unreachable"
        signal_cli = Check(reachable, f"{seen}, stream {status.state}")
    index = service.assistant.index
    index_check = Check(True, f"{index.manifest.chunk_count} passages") if index is not None \
        else Check(False, "no verified index loaded")
    circuit = service.assistant.breaker.state.value
    model = Check(circuit != "open", f"circuit {circuit}")
    dependencies: dict[str, Check] = {}
    if service.dependencies is not None:
        for name, state in service.dependencies.states().items():
            if name == MODEL:  # one check for the model: its circuit and its server
                model = Check(model.ok and state.up is True,
                              f"{model.detail}, {state.detail}")
            else:
                dependencies[name] = Check(state.up is True, state.detail)
    counts = await service.counts()
    age = counts.oldest_unanswered_age or 0.0
    inbox = Check(age <= max_backlog_age,
                  f"{sum(counts.inbox[s] for s in ('pending', 'processing'))} open, "
                  f"oldest {age:.0f} s")
    return {"signal_cli": signal_cli, "index": index_check, "model": model, **dependencies,
            "inbox": inbox}
