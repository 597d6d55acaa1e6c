"""Node `threat_check`: refuse prompt injection and jailbreak attempts (SEC-2, first layer).

Runs on the sanitised text, so zero-width splitting and fullwidth letters are already
undone: rules, decoders and the n-gram model (`guards.threats.detect`), then the embedding
head (`guards.semantic`) on the message's query vector when the context can embed it (the
same vector retrieval uses), then the fine-tuned encoder (`guards.encoder`) when it is
switched on. Fails closed: if the detector, the head's weights or the encoder error, the
message is refused and operators alerted. An embedder that fails is left to `retrieve`,
which then takes the degraded path without calling the model.

Where it runs (PERF-1): the node is a coroutine on the event loop. The query embedding
and the encoder run a model, so they run on the loop's default executor (LangGraph's
thread pool); the embedding starts before the rules run, so the rules (a fraction of a
millisecond) run on the loop while the model embeds, instead of before it. A message
the rules block is thus embedded too, and the vector is not used; nothing else changes:
the head only reads the vector of a message the rules passed.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any, TypeVar

from langgraph.runtime import Runtime

from graph.context import GraphContext
from graph.nodes.alerting import guard_failed
from graph.state import GraphState
from guards.encoder import ENCODER_RULE
from guards.semantic import SEMANTIC_RULE, SemanticHead, default_head
from guards.threats import detect

T = TypeVar("T")


async def threat_check(state: GraphState, runtime: Runtime[GraphContext]) -> GraphState:
    ctx = runtime.context
    text = state["text"]
    rules = list(state.get("guard_rules", []))  # sanitize's findings stay in the audit
    embedding: asyncio.Future[tuple[SemanticHead, object]] | None = None
    try:
        if ctx.query_vector is not None:  # the model embeds while the rules run here
            embedding = _in_thread(_head_and_vector, ctx, text)
        verdict = detect(text)
        found = list(verdict.rules)
        if not verdict.blocked and embedding is not None:
            head, vector = await embedding
            if vector is not None and head.blocks(vector, "message"):
                found.append(SEMANTIC_RULE)
        if not found and ctx.encoder is not None and await _in_thread(_encoder_blocks,
                                                                      ctx, text):
            found.append(ENCODER_RULE)
    except Exception as exc:  # noqa: BLE001 - any guard failure must refuse, not crash
        guard_failed(ctx, "threat_check", exc)
        return {"fallback_reason": "guard_error", "error": type(exc).__name__}
    finally:
        if embedding is not None and not embedding.done():
            embedding.add_done_callback(_discard)  # blocked or failed first: not waited for
    return {"fallback_reason": "threat" if found else None, "guard_rules": rules + found}


def _in_thread(call: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """`call(*args)` on the loop's default executor, seeing the caller's context (spans)."""
    return asyncio.get_running_loop().run_in_executor(
        None, contextvars.copy_context().run, call, *args)


def _head_and_vector(ctx: GraphContext, text: str) -> tuple[SemanticHead, object]:
    """The head (loaded on first use; a damaged weights file raises: fail closed) and the
    message's query vector, or None when the embedder fails (retrieve handles that)."""
    head = default_head()
    assert ctx.query_vector is not None
    try:
        return head, ctx.query_vector(text)
    except Exception:  # noqa: BLE001 - the embedder's failure is retrieval's degraded path
        return head, None


def _encoder_blocks(ctx: GraphContext, text: str) -> bool:
    assert ctx.encoder is not None
    return bool(ctx.encoder().blocks(text))


def _discard(future: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of an embedding nobody waited for (asyncio would log it)."""
    if not future.cancelled():
        future.exception()
