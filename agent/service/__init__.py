"""The Signal bot service, one module per job (see docs/architecture.md):

- `core`: the coordinator (receive loop, per-user ordering, drain);
- `retries`: second runs of crashed messages and of ones held for a dependency;
- `admission`: who gets an answer (allow list, activation, commands, mute, limits);
- `responder`: the graph's answer as a `Reply(text, citations, route)`;
- `outbox`: the sender of the durable outbox, with its retries;
- `housekeeping`: index watch and hot reload, memory expiry, queue purge, metrics;
- `common`: what they share (SQLite thread pool, stats, alerts, backoff).

`agent.wiring` builds them.
"""

from agent.service.admission import (
    ACTIVATED,
    FORGOTTEN,
    NOT_ADMIN,
    RESET,
    SLOW_DOWN,
    AccessPolicy,
    Admit,
    CommandRunner,
    Decision,
    Gate,
    Respond,
    Silence,
)
from agent.service.common import DIRECT, Alerting, Backoff, Db, DependencyDown, ServiceStats
from agent.service.core import GAVE_UP, MAX_ATTEMPTS, UNAVAILABLE, BotService
from agent.service.housekeeping import Housekeeping, index_fingerprint
from agent.service.outbox import OutboxSender
from agent.service.responder import Reply, Responder
from agent.service.retries import DEFAULT_HOLD, Retries

__all__ = [
    "ACTIVATED",
    "DEFAULT_HOLD",
    "DIRECT",
    "FORGOTTEN",
    "GAVE_UP",
    "MAX_ATTEMPTS",
    "NOT_ADMIN",
    "RESET",
    "SLOW_DOWN",
    "UNAVAILABLE",
    "AccessPolicy",
    "Admit",
    "Alerting",
    "Backoff",
    "BotService",
    "CommandRunner",
    "Db",
    "Decision",
    "DependencyDown",
    "Gate",
    "Housekeeping",
    "OutboxSender",
    "Reply",
    "Respond",
    "Responder",
    "Retries",
    "ServiceStats",
    "Silence",
    "index_fingerprint",
]
