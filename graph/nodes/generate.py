"""Node `generate`: answer from the passages with the chat model, or extractively offline.

Retries live in exactly one layer: the node's `RetryPolicy` (see `builder.py`); the model
client is built with `max_retries=0`. Only timeouts, connection errors, 429 and 5xx are
retried; a Retry-After header is honoured up to `max_retry_after`. On the last attempt,
or on a non-retryable error, the node routes to the fallback instead of raising, so the
user still gets exactly one reply. Every failure is counted by the circuit breaker.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from graph.citations import format_reply, has_text, keep_cited
from graph.context import GraphContext
from graph.extractive import extractive_answer
from graph.prompts import build_messages
from graph.state import GraphState

RETRYABLE_STATUS = frozenset({408, 409, 429})


def should_retry(exc: BaseException) -> bool:
    """The RetryPolicy filter: transient failures only; never 4xx other than 429 (and 408/409)."""
    import openai

    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        if getattr(exc, "code", None) == "insufficient_quota":
            return False  # a 429 that waiting does not fix: the account is out of credit
        return exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500
    return isinstance(exc, TimeoutError | ConnectionError)


def retry_after_seconds(exc: BaseException) -> float | None:
    """The server's Retry-After in seconds, if it sent one we can read."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name in ("retry-after-ms", "retry-after"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            continue  # an HTTP date: let the policy's own backoff decide
        return seconds / 1000.0 if name == "retry-after-ms" else seconds
    return None


async def generate(state: GraphState, runtime: Runtime[GraphContext]) -> GraphState:
    ctx = runtime.context
    passages = state["passages"]
    if ctx.chat_model is None:
        answer, citations = extractive_answer(state["text"], passages)
        if not has_text(answer):  # passages without a quotable sentence: "I don't know"
            return {"fallback_reason": "no_context", "model": "extractive"}
        return {"answer": answer, "citations": citations,
                "reply": format_reply(answer, citations), "model": "extractive",
                "fallback_reason": None}
    if not ctx.breaker.allow():
        return {"fallback_reason": "circuit_open", "model": ctx.model_name}

    messages, numbered = build_messages(state["text"], passages, state.get("history") or [],
                                        canary=ctx.canary)
    try:
        with ctx.spans.span(f"chat {ctx.model_name}", {
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": ctx.model_name}) as span:
            try:
                response = await ctx.chat_model.ainvoke(messages)
            except Exception as exc:
                span.fail(exc)
                raise
            reported = getattr(response, "usage_metadata", None) or {}
            usage = {key: int(reported[key]) for key in ("input_tokens", "output_tokens")
                     if key in reported}
            for key, value in usage.items():
                span.set(f"gen_ai.usage.{key}", value)
    except Exception as exc:
        ctx.breaker.record_failure()
        info = runtime.execution_info
        attempt = info.node_attempt if info is not None else 1
        if should_retry(exc) and attempt < ctx.max_attempts:
            wait = retry_after_seconds(exc)
            if wait is None or wait <= ctx.max_retry_after:
                if wait:
                    await ctx.sleep(wait)
                raise  # the node's RetryPolicy runs the next attempt
        code = getattr(exc, "code", None)  # e.g. insufficient_quota: page the operator
        return {"fallback_reason": "model_error", "error": type(exc).__name__,
                "error_code": code if isinstance(code, str) else None, "model": ctx.model_name}
    ctx.breaker.record_success()
    text = response.content if isinstance(response.content, str) else str(response.content)
    answer, citations = keep_cited(text, numbered)
    if not has_text(answer):  # an empty (or marker-only) completion is not an answer
        return {"fallback_reason": "model_error", "error": "EmptyAnswer", "model": ctx.model_name}
    # The exchange joins the history only once the output guard has passed it.
    return {"answer": answer, "citations": citations, "reply": format_reply(answer, citations),
            "model": ctx.model_name, "fallback_reason": None, "usage": usage or None}
