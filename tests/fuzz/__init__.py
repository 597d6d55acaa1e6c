"""Fuzzing of what comes from outside the bot (issue 11): signal-cli envelopes and JSON-RPC
replies, SSE framing, `guard scan` input, settings and secret files, backup archives.

Hypothesis drives every target. The budget comes from `SIGNAL_RAG_FUZZ`:

- `ci` (default, what `make test` runs): a bounded number of inputs per target, so the
  whole folder costs well under a minute on 2 cores;
- `long` (`make fuzz`): fifty times as many, for a run before a release or after changing
  a parser. Add `--hypothesis-show-statistics` to see inputs and time per target.

A failure prints the falsifying input and a `@reproduce_failure` blob; the input then
becomes a regression test (an `@example` on the target, or a plain test beside it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import HealthCheck, settings

PROFILES = {"ci": 150, "long": 7500}
"""Inputs per target for each budget."""

PROFILE = os.environ.get("SIGNAL_RAG_FUZZ", "ci")
if PROFILE not in PROFILES:
    raise RuntimeError(f"SIGNAL_RAG_FUZZ must be one of {sorted(PROFILES)}, got {PROFILE!r}")

for _name, _examples in PROFILES.items():
    settings.register_profile(
        f"fuzz-{_name}", max_examples=_examples, deadline=None, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.function_scoped_fixture])


def fuzz(scale: float = 1.0) -> settings:
    """The settings for one target: the chosen budget, scaled for an expensive target."""
    base = settings.get_profile(f"fuzz-{PROFILE}")
    return settings(base, max_examples=max(10, int(base.max_examples * scale)))


@contextmanager
def rendered_logs() -> Iterator[list[str]]:
    """Every log record emitted inside the block, rendered as the product renders it."""
    from agent.observability.logs import json_formatter

    formatter = json_formatter()
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(formatter.format(record))

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
