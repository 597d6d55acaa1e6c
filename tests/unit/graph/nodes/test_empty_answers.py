"""An answer is never empty: it carries text and a citation, or it is "I don't know".

The report: a page whose only text is "Widgets are blue." gave an empty reply, because the
extractive answerer dropped sentences under 20 characters and nothing caught the empty
body. Each layer is tested: the answerer, the model path, the fallback, the last guard.
"""

from __future__ import annotations

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from agent.audit import MemoryAuditSink
from graph.builder import build_graph, model_retry_policy
from graph.citations import has_text
from graph.extractive import extractive_answer
from graph.nodes.fallback import MESSAGES
from graph.nodes.output_guard import output_guard
from graph.state import Passage
from tests.unit.graph.graph_helpers import FixedKnowledge, context, runtime

WIDGETS = ("widgets.html", "Widgets are blue.")
FAST_RETRY = model_retry_policy(1, initial_interval=0.001, jitter=False)
I_DONT_KNOW = MESSAGES["no_context"]


def passage(text: str, source: str = "widgets.html") -> Passage:
    return Passage(source=source, title="Widgets", page=None, text=text, similarity=0.65)


async def ask(question: str, *texts: tuple[str, str], model: object = None) -> dict:
    sink = MemoryAuditSink()
    graph = build_graph(retry_policy=FAST_RETRY)
    extra = {"chat_model": model, "model_name": "m"} if model is not None else {}
    result = await graph.ainvoke({"question": question, "user": "u1"},
                                 context=context(knowledge=FixedKnowledge(*texts), audit=sink,
                                                 **extra))
    result["event"] = sink.events[-1]
    return result


def test_a_short_complete_sentence_is_quoted_with_its_citation() -> None:
    answer, citations = extractive_answer("What color are widgets?",
                                          [passage("Widgets are blue.")])
    assert answer == "• Widgets are blue. [1]"
    assert [c["source"] for c in citations] == ["widgets.html"]


@pytest.mark.parametrize("text", ["Blue", "Widgets and", "Colour:", "   ", "# Widgets"])
def test_a_passage_without_a_sentence_gives_no_answer_rather_than_an_empty_one(
        text: str) -> None:
    assert extractive_answer("What color are widgets?", [passage(text)]) == ("", [])


def test_has_text_ignores_markers_and_blanks() -> None:
    assert has_text("Blue [1].")
    assert not has_text("")
    assert not has_text(" [1] [2] \n• ")


async def test_offline_the_widget_page_answers_with_text_and_a_citation() -> None:
    result = await ask("What color are widgets?", WIDGETS)
    assert result["reply"].startswith("• Widgets are blue. [1]")
    assert "Sources:\n[1] Widgets (widgets.html)" in result["reply"]
    assert result["event"]["route"] == "answered" and result["event"]["citations"] == 1


async def test_offline_a_page_without_sentences_says_i_dont_know() -> None:
    result = await ask("What color are widgets?", ("widgets.html", "Blue"))
    assert result["reply"] == I_DONT_KNOW
    assert result["event"]["route"] == "fallback:no_context"


@pytest.mark.parametrize("completion", ["", "   ", "[1]", "\n[7]\n"])
async def test_an_empty_model_completion_is_never_sent(completion: str) -> None:
    model = GenericFakeChatModel(messages=iter([AIMessage(completion)]))
    result = await ask("What color are widgets?", WIDGETS, model=model)
    assert has_text(result["reply"])
    assert result["reply"].startswith("The language model is unavailable right now")
    assert "Widgets are blue. [1]" in result["reply"]
    assert result["event"]["error"] == "EmptyAnswer"


async def test_an_empty_completion_without_quotable_passages_is_the_apology() -> None:
    model = GenericFakeChatModel(messages=iter([AIMessage("")]))
    result = await ask("What color are widgets?", ("widgets.html", "Blue"), model=model)
    assert result["reply"] == MESSAGES["model_error"]  # not the prefix over an empty quote
    assert result["event"]["route"] == "fallback:model_error"


@pytest.mark.parametrize("state", [
    {"reply": "", "answer": "", "fallback_reason": None},
    {"reply": "\n\nSources:\n[1] W (w.html)", "answer": "[1]", "fallback_reason": None},
    {"reply": "  ", "fallback_reason": "no_context"},
])
def test_the_output_guard_replaces_an_empty_reply_whatever_produced_it(state: dict) -> None:
    update = output_guard({"text": "q", "passages": [], **state}, runtime())
    assert update["reply"] == I_DONT_KNOW
    assert update["fallback_reason"] == "no_context" and update["citations"] == []
