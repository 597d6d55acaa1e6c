"""Our own exception types for everything that can go wrong talking to signal-cli.

Why: the bot must react to *kinds* of failure (retry later, alert an operator, drop the
recipient) without knowing whether the daemon was reached over HTTP or a socket, and
without matching httpx/asyncio exceptions or JSON-RPC codes all over the code base. The
transport turns every transport error and every JSON-RPC error reply into one of these at
its edge. `str(exc)` never contains the daemon's message text: that text can hold phone
numbers ("The user +49... is not registered."), so it is kept in `daemon_message` for
debugging and stays out of logs unless someone asks for it explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.signal.results import SendResult, parse_send_result

# JSON-RPC codes signal-cli uses (signal-cli-jsonrpc.5 and its source).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
USER_ERROR = -1
IO_ERROR = -3
UNTRUSTED_KEY_ERROR = -4
RATE_LIMIT_ERROR = -5
CAPTCHA_REJECTED_ERROR = -6  # since 0.14.3, from submitRateLimitChallenge only


class SignalError(Exception):
    """Base of every error raised by agent.signal.

    `method` is the JSON-RPC method, `code` the JSON-RPC error code when the daemon sent
    one, `result` the per-recipient outcomes when the daemon reported them (signal-cli
    attaches them to the error of a failed send as `error.data.response`).
    """

    def __init__(
        self,
        reason: str = "",
        *,
        method: str | None = None,
        code: int | None = None,
        daemon_message: str | None = None,
        result: SendResult | None = None,
    ) -> None:
        self.reason = reason
        self.method = method
        self.code = code
        self.daemon_message = daemon_message
        """The daemon's own text; may contain phone numbers: never log it."""
        self.result = result
        parts = [reason or "signal-cli call failed"]
        if method:
            parts.append(f"method={method}")
        if code is not None:
            parts.append(f"code={code}")
        super().__init__(" ".join(parts))


class SignalNetworkError(SignalError):
    """The daemon or Signal's servers could not be reached (connection refused or lost,
    NETWORK_FAILURE for every recipient, I/O error −3). Safe to retry later."""


class SignalTimeoutError(SignalNetworkError):
    """No reply in time. The request may still have been carried out (a message may have
    been sent), so a retry can duplicate it."""


class SignalRateLimited(SignalError):  # noqa: N818 - named in issue 3; reads as a condition
    """Signal throttled the account (−5, or RATE_LIMIT_FAILURE results). Do not retry
    before `retry_after` seconds (None when Signal did not say)."""

    def __init__(self, reason: str = "", *, retry_after: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(reason, **kwargs)
        self.retry_after = retry_after


class SignalCaptchaRequired(SignalRateLimited):
    """Signal wants a CAPTCHA proof before more messages go out (a result with a challenge
    `token`, or −6 when a submitted captcha was rejected). Needs an operator; retrying
    before that only makes it worse."""

    def __init__(self, reason: str = "", *, token: str | None = None, **kwargs: Any) -> None:
        super().__init__(reason, **kwargs)
        self.token = token


class SignalUntrustedIdentity(SignalError):  # noqa: N818 - named in issue 3; reads as a condition
    """Every recipient's safety number changed (−4); needs `trust` before sending."""


class SignalUnregistered(SignalError):  # noqa: N818 - named in issue 3; reads as a condition
    """The recipient is not (or no longer) a Signal user (UNREGISTERED_FAILURE)."""


class SignalInvalidParams(SignalError):  # noqa: N818 - named in issue 3; reads as a condition
    """The daemon rejected the parameters (−32602), e.g. a multi-account daemon called
    without a valid `account`. A configuration or programming error: do not retry."""


class SignalRpcError(SignalError):
    """Any other JSON-RPC error reply (method not found, user error, internal error)."""


class SignalProtocolError(SignalError):
    """The daemon answered something that is not valid JSON-RPC for our request
    (unexpected HTTP status, invalid JSON, a reply with another id)."""


def _results_of(error: Mapping[str, Any]) -> SendResult | None:
    data = error.get("data")
    if isinstance(data, Mapping):
        response = data.get("response")
        if isinstance(response, Mapping) and "results" in response:
            return parse_send_result(response)
    return None


_BY_CODE: dict[int, tuple[type[SignalError], str]] = {
    INVALID_PARAMS: (SignalInvalidParams, "invalid params"),
    CAPTCHA_REJECTED_ERROR: (SignalCaptchaRequired, "captcha rejected"),
    UNTRUSTED_KEY_ERROR: (SignalUntrustedIdentity, "untrusted identity"),
    IO_ERROR: (SignalNetworkError, "I/O error in the daemon"),
    PARSE_ERROR: (SignalProtocolError, "daemon could not parse our request"),
    INVALID_REQUEST: (SignalProtocolError, "daemon rejected our request"),
}


def error_from_rpc(error: object, *, method: str) -> SignalError:
    """Map one JSON-RPC `error` object of a reply to our exception type."""
    if not isinstance(error, Mapping):
        return SignalProtocolError("error reply without an error object", method=method)
    raw_code = error.get("code")
    code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
    raw_message = error.get("message")
    message = raw_message if isinstance(raw_message, str) else None
    result = _results_of(error)
    common: dict[str, Any] = {
        "method": method, "code": code, "daemon_message": message, "result": result,
    }
    if code in _BY_CODE:
        cls, reason = _BY_CODE[code]
        return cls(reason, **common)
    mapped = None
    if result is not None:
        mapped = error_from_failures(result, method=method, code=code, daemon_message=message)
    if mapped is None and code == RATE_LIMIT_ERROR:
        mapped = SignalRateLimited("rate limited", **common)
    if mapped is None and code == USER_ERROR and (message or "").endswith("is not registered."):
        # UnregisteredRecipientException: raised before any result list exists.
        mapped = SignalUnregistered("recipient not registered", **common)
    return mapped or SignalRpcError("error reply", **common)


def error_from_failures(  # noqa: PLR0911 - one return per failure kind, in priority order
    result: SendResult, *, method: str, code: int | None = None,
    daemon_message: str | None = None,
) -> SignalError | None:
    """The exception that a set of failed per-recipient outcomes stands for, if any.

    Priority: a CAPTCHA challenge, then rate limits, untrusted identities, unregistered
    recipients, network failures. None when there are no failures.
    """
    failures = result.failures
    if not failures:
        return None
    common: dict[str, Any] = {
        "method": method, "code": code, "daemon_message": daemon_message, "result": result,
    }
    if result.captcha_token is not None:
        return SignalCaptchaRequired("captcha required", token=result.captcha_token,
                                     retry_after=result.retry_after, **common)
    types = {failure.type for failure in failures}
    if "RATE_LIMIT_FAILURE" in types:
        return SignalRateLimited("rate limited", retry_after=result.retry_after, **common)
    if types == {"IDENTITY_FAILURE"}:
        return SignalUntrustedIdentity("untrusted identity", **common)
    if types == {"UNREGISTERED_FAILURE"}:
        return SignalUnregistered("recipient not registered", **common)
    if "NETWORK_FAILURE" in types:
        return SignalNetworkError("network failure", **common)
    return SignalRpcError("send failed", **common)
