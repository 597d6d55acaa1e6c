"""Readiness with a hung signal-cli daemon: its check times out on its own and the others
still report, so /readyz names the hung dependency instead of timing out as a whole."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, ClassVar, cast

from agent.observability.readiness import service_readiness


class HungTransport:
    status = SimpleNamespace(state="connecting")

    async def check(self) -> bool:
        await asyncio.Event().wait()  # accepts and never answers
        return True


class Counts:
    oldest_unanswered_age = 0.0
    inbox: ClassVar[dict[str, int]] = {"pending": 0, "processing": 0}


async def _counts() -> Counts:
    return Counts()


async def test_a_hung_daemon_is_named_and_the_other_checks_still_report() -> None:
    service = SimpleNamespace(
        transport=HungTransport(),
        assistant=SimpleNamespace(index=SimpleNamespace(manifest=SimpleNamespace(chunk_count=3)),
                                  breaker=SimpleNamespace(state=SimpleNamespace(value="closed"))),
        dependencies=None,
        counts=_counts,
    )
    checks = await service_readiness(cast(Any, service), signal_cli_timeout=0.01)
    assert not checks["signal_cli"].ok
    assert "timed out" in checks["signal_cli"].detail
    assert checks["index"].ok and checks["model"].ok and checks["inbox"].ok


class LyingTransport:
    """Answers its check, but not with a JSON-RPC version (garbage behind a 200)."""

    status = SimpleNamespace(state="connecting")
    check_error: str | None = None

    async def check(self) -> bool:
        self.check_error = "SignalProtocolError"
        return False


async def test_a_failed_check_gives_its_reason() -> None:
    service = SimpleNamespace(
        transport=LyingTransport(),
        assistant=SimpleNamespace(index=None,
                                  breaker=SimpleNamespace(state=SimpleNamespace(value="closed"))),
        dependencies=None,
        counts=_counts,
    )
    checks = await service_readiness(cast(Any, service))
    assert not checks["signal_cli"].ok
    assert checks["signal_cli"].detail == "unreachable: SignalProtocolError, stream connecting"
