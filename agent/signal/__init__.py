"""The signal-cli transport: JSON-RPC over HTTP+SSE or a socket, typed envelopes, our errors.

Everything the bot service needs is importable from here; the submodules hold the parts
(client, envelope parsing, send results, errors, reconnect policy, SSE reading).
"""

from agent.signal.client import (
    DEFAULT_STALE_AFTER,
    KEEPALIVE_INTERVAL,
    HttpTransport,
    ReceiptType,
    ReceiveMode,
    SignalTransport,
    SocketTransport,
    create_transport,
    mention,
    text_style,
)
from agent.signal.envelope import (
    OBJECT_REPLACEMENT,
    Envelope,
    EnvelopeKind,
    MalformedEnvelopeError,
    Mention,
    Quote,
    Reaction,
    Receipt,
    parse_envelope,
    parse_receive_json,
    parse_receive_payload,
)
from agent.signal.errors import (
    SignalCaptchaRequired,
    SignalError,
    SignalInvalidParams,
    SignalNetworkError,
    SignalProtocolError,
    SignalRateLimited,
    SignalRpcError,
    SignalTimeoutError,
    SignalUnregistered,
    SignalUntrustedIdentity,
    error_from_rpc,
)
from agent.signal.reconnect import Backoff, ConnectionState, TransportStatus
from agent.signal.results import RecipientResult, SendResult, parse_send_result

__all__ = [
    "DEFAULT_STALE_AFTER",
    "KEEPALIVE_INTERVAL",
    "OBJECT_REPLACEMENT",
    "Backoff",
    "ConnectionState",
    "Envelope",
    "EnvelopeKind",
    "HttpTransport",
    "MalformedEnvelopeError",
    "Mention",
    "Quote",
    "Reaction",
    "Receipt",
    "ReceiptType",
    "ReceiveMode",
    "RecipientResult",
    "SendResult",
    "SignalCaptchaRequired",
    "SignalError",
    "SignalInvalidParams",
    "SignalNetworkError",
    "SignalProtocolError",
    "SignalRateLimited",
    "SignalRpcError",
    "SignalTimeoutError",
    "SignalTransport",
    "SignalUnregistered",
    "SignalUntrustedIdentity",
    "SocketTransport",
    "TransportStatus",
    "create_transport",
    "error_from_rpc",
    "mention",
    "parse_envelope",
    "parse_receive_json",
    "parse_receive_payload",
    "parse_send_result",
    "text_style",
]
