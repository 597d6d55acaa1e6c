"""Fail closed, loudly (SEC-6): a guard that errors refuses the message and alerts operators.

An alert sink that itself fails must not turn a refusal into a crash, so its errors are
logged and swallowed here, once, for every node.
"""

from __future__ import annotations

import logging

from graph.context import GraphContext
from graph.contract import GUARD_ERROR

log = logging.getLogger(__name__)


def raise_alert(ctx: GraphContext, condition: str, **fields: str) -> None:
    try:
        ctx.alerts.alert(condition, **fields)
    except Exception as exc:  # noqa: BLE001 - the user's reply must still go out
        log.error("alert_failed", extra={"condition": condition, "error": type(exc).__name__})


def guard_failed(ctx: GraphContext, guard: str, exc: BaseException) -> None:
    """Alert that `guard` raised; only the exception's class name leaves (its text may echo
    the input)."""
    raise_alert(ctx, GUARD_ERROR, guard=guard, error=type(exc).__name__)
