"""Fault campaign, dependencies (issue 11): signal-cli, the embedding endpoint, the model
server and Redis each killed, hung and answering garbage, at start and mid-conversation,
with `serve` as a real process (tests/integration/campaign.py, docs/reliability.md).

One process per fault mode: it starts with every dependency in that mode, must come up
and say why it is not ready, alert, keep the messages it receives, and recover as each
dependency comes back; then each dependency fails again mid-conversation, one at a time.
Throughout: the process never exits, every message is answered exactly once (or gets the
"temporarily unavailable" reply), no reply is empty, and nothing it writes leaks.
"""

from __future__ import annotations

import pytest

from agent.observability.alerts import LIMITS_STORAGE_UNREACHABLE, SIGNAL_CLI_UNREACHABLE
from agent.testing.openai_server import CHAT_PATH, EMBEDDINGS_PATH, Reply, Slow
from tests.integration.faults.campaign import (
    GRACE_S,
    Bot,
    Conversation,
    Deps,
    finish,
    wait_for,
)
from tests.integration.faults.fault_proxy import Mode

pytestmark = [pytest.mark.faults, pytest.mark.slow]

CHECK = {"signal_cli": "signal_cli", "embeddings": "embeddings", "model": "model",
         "redis": "limits_storage"}
"""Fault proxy name → the /readyz check that must report it."""
ALERT = {"signal_cli": SIGNAL_CLI_UNREACHABLE, "embeddings": "embeddings_unreachable",
         "model": "model_unreachable", "redis": LIMITS_STORAGE_UNREACHABLE}
"""Fault proxy name → the alert condition that fires after the grace period."""
RECOVERY_ORDER = ("redis", "embeddings", "model", "signal_cli")
ANSWER = "Exit code 3 means the index is missing or damaged [1]."


def fault_in_flight(name: str, mode: Mode, deps: Deps, chat: Conversation) -> None:
    """Ask a question and break `name` while that question is being answered: the slow
    call is the embedding of the question, or the model's answer (which signal-cli, dying
    meanwhile, then cannot take); Redis is broken right after the question arrives."""
    path = EMBEDDINGS_PATH if name == "embeddings" else CHAT_PATH
    before = deps.model.count(path)
    if name != "redis":
        deps.model.enqueue(Slow(1.5, ANSWER), path=path)
    chat.ask()
    if name != "redis":
        wait_for(lambda: deps.model.count(path) > before, f"{path} called")
    deps.set(name, mode)
    if name == "signal_cli":
        # An event signal-cli writes into a stream at the instant it breaks is lost in
        # transit (it acknowledged the message to Signal already): inherent, not the bot's
        # to fix (docs/reliability.md). Ask the next question once the daemon has noticed,
        # so it waits for the bot as it would on Signal's servers.
        wait_for(lambda: deps.sim.subscriber_count == 0, "the daemon saw the stream end")


@pytest.mark.parametrize("mode", ["down", "hang", "garbage"])
def test_every_dependency_faulty_at_start_then_each_one_mid_conversation(
        mode: Mode, deps: Deps, bot: Bot, chat: Conversation) -> None:
    deps.model.default = Reply(ANSWER)
    deps.set_all(mode)
    bot.start()

    # At start: up, not ready, each dependency named, then alerted; messages kept.
    wait_for(lambda: set(CHECK.values()) <= bot.failing(),
             f"/readyz names every dependency as down (failing: {bot.failing()})")
    bot.assert_alive()
    chat.activate()
    chat.ask()
    wait_for(lambda: set(ALERT.values()) <= bot.alerts(),
             f"an alert per dependency after {GRACE_S} s (fired: {bot.alerts()})")
    for check in CHECK.values():
        if check != "signal_cli":
            assert bot.dependency_up(check) == 0, check
    assert chat.replies() == [], "nothing can be sent while signal-cli is down"

    # Recovery without a restart: everything comes back at once (one by one would add a
    # probe backoff of up to 30 s per dependency to the campaign).
    for name in RECOVERY_ORDER:
        deps.set(name, "up")
    for name in RECOVERY_ORDER:
        wait_for(lambda n=name: CHECK[n] not in bot.failing(), f"{name} back in /readyz")
    wait_for(bot.ready, "ready once everything is back")
    bot.assert_alive()
    for check in CHECK.values():
        if check != "signal_cli":
            assert bot.dependency_up(check) == 1, check
    chat.wait_all_answered()
    wait_for(lambda: set(ALERT.values()) <= bot.alerts("resolved"),
             f"every alert resolved (resolved: {bot.alerts('resolved')})")

    # Mid-conversation: each dependency fails while a question is being answered, and a
    # second question arrives during the fault.
    chat.activate()  # the activation made while Redis was down may have been refused
    redis_alerts = (0, 0)
    for name in RECOVERY_ORDER:
        alert = ALERT[name]
        fired, resolved = bot.alert_count(alert), bot.alert_count(alert, "resolved")
        fault_in_flight(name, mode, deps, chat)
        chat.ask()
        wait_for(lambda n=name: CHECK[n] in bot.failing(),
                 f"/readyz reports {name} {mode} mid-conversation")
        wait_for(lambda a=alert, f=fired: bot.alert_count(a) > f,
                 f"{alert} fired again mid-conversation")
        bot.assert_alive()
        deps.set(name, "up")
        wait_for(bot.ready, f"ready again after {name} came back")
        wait_for(lambda a=alert, r=resolved: bot.alert_count(a, "resolved") > r,
                 f"{alert} resolved again")
        chat.wait_all_answered()
        if name == "redis":
            redis_alerts = (bot.alert_count(alert), bot.alert_count(alert, "resolved"))

    # Once resolved, the Redis alert stays resolved while the questions after its return
    # meet the rate limiter's stale pooled connections (it used to fire and resolve once
    # per stale connection).
    assert (bot.alert_count(LIMITS_STORAGE_UNREACHABLE),
            bot.alert_count(LIMITS_STORAGE_UNREACHABLE, "resolved")) == redis_alerts
    finish(bot, chat)

