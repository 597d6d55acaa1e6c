"""Per-recipient outcomes of a send, as signal-cli reports them.

Why: signal-cli answers a send to several recipients (a group) with success as soon as
one recipient got it; the others' failures are only in the `results` list. Dropping that
list would hide rate limits and CAPTCHA challenges, so every send returns a SendResult
that keeps each outcome. Parsing is lenient: an odd item is kept with type "UNKNOWN"
rather than failing a send that went out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SUCCESS = "SUCCESS"


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _opt_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """One recipient's outcome: `type` is SUCCESS, NETWORK_FAILURE, UNREGISTERED_FAILURE,
    IDENTITY_FAILURE, RATE_LIMIT_FAILURE, INVALID_PRE_KEY_FAILURE (or UNKNOWN)."""

    type: str
    uuid: str | None = None
    number: str | None = None
    group_id: str | None = None
    token: str | None = None
    """CAPTCHA challenge token (a "proof required" rate limit)."""
    retry_after: int | None = None
    """Seconds Signal asked us to wait, when it said."""

    @property
    def ok(self) -> bool:
        return self.type == SUCCESS


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a send, sendTyping, sendReceipt or sendReaction call reported."""

    timestamp: int | None
    """Timestamp of the sent message: the id to quote, edit, delete or match reactions."""
    results: tuple[RecipientResult, ...] = ()

    @property
    def failures(self) -> tuple[RecipientResult, ...]:
        return tuple(item for item in self.results if not item.ok)

    @property
    def ok(self) -> bool:
        """Every recipient got it (also true when there were no recipients to report)."""
        return not self.failures

    @property
    def partial(self) -> bool:
        """Some recipients got it and some did not."""
        return bool(self.failures) and any(item.ok for item in self.results)

    @property
    def retry_after(self) -> int | None:
        """The longest wait any failed recipient asked for."""
        waits = [item.retry_after for item in self.failures if item.retry_after is not None]
        return max(waits) if waits else None

    @property
    def captcha_token(self) -> str | None:
        return next((item.token for item in self.failures if item.token), None)


def _parse_item(item: object) -> RecipientResult:
    if not isinstance(item, Mapping):
        return RecipientResult(type="UNKNOWN")
    address = item.get("recipientAddress")
    address = address if isinstance(address, Mapping) else {}
    return RecipientResult(
        type=_opt_str(item.get("type")) or "UNKNOWN",
        uuid=_opt_str(address.get("uuid")),
        number=_opt_str(address.get("number")),
        group_id=_opt_str(item.get("groupId")),
        token=_opt_str(item.get("token")),
        retry_after=_opt_int(item.get("retryAfterSeconds")),
    )


def parse_send_result(raw: object) -> SendResult:
    """Read `{"timestamp": T, "results": [...]}`; anything else gives an empty result."""
    if not isinstance(raw, Mapping):
        return SendResult(timestamp=None)
    items: Any = raw.get("results")
    parsed = tuple(_parse_item(item) for item in items) if isinstance(items, list) else ()
    return SendResult(timestamp=_opt_int(raw.get("timestamp")), results=parsed)
