"""Numbered citations and reply layout for a phone screen (GR-3)."""

from __future__ import annotations

import re

from graph.state import Citation, Passage

_MARKER = re.compile(r"\[(\d{1,2})\]")


def number_sources(passages: list[Passage]) -> list[Citation]:
    """One number per distinct (source, page), in passage order."""
    citations: list[Citation] = []
    seen: dict[tuple[str, int | None], int] = {}
    for passage in passages:
        key = (passage["source"], passage["page"])
        if key not in seen:
            seen[key] = len(citations) + 1
            citations.append(Citation(number=seen[key], title=passage["title"],
                                      source=passage["source"], page=passage["page"]))
    return citations


def citation_number(citations: list[Citation], passage: Passage) -> int:
    for citation in citations:
        if (citation["source"], citation["page"]) == (passage["source"], passage["page"]):
            return citation["number"]
    raise KeyError(passage["source"])


def has_text(answer: str) -> bool:
    """Whether an answer says anything: a letter or digit outside the [n] markers. An empty
    or marker-only body must never be sent as an answer."""
    return any(char.isalnum() for char in _MARKER.sub("", answer))


def keep_cited(answer: str, citations: list[Citation]) -> tuple[str, list[Citation]]:
    """Drop markers that point at no source and list only the sources actually cited."""
    valid = {c["number"] for c in citations}

    def _check(match: re.Match[str]) -> str:
        return match.group(0) if int(match.group(1)) in valid else ""

    return renumber(_MARKER.sub(_check, answer).strip(), citations)


def renumber(answer: str, citations: list[Citation]) -> tuple[str, list[Citation]]:
    """Number sources by first appearance in the answer, so a reader meets [1] first,
    and keep only the sources the answer cites."""
    order: dict[int, int] = {}
    for found in _MARKER.findall(answer):
        order.setdefault(int(found), len(order) + 1)
    by_number = {c["number"]: c for c in citations}
    kept = [Citation(number=new, title=by_number[old]["title"], source=by_number[old]["source"],
                     page=by_number[old]["page"])
            for old, new in order.items() if old in by_number]
    text = _MARKER.sub(lambda m: f"[{order[int(m.group(1))]}]", answer)
    return text, kept


def format_source(citation: Citation) -> str:
    page = f", p. {citation['page']}" if citation["page"] else ""
    return f"[{citation['number']}] {citation['title']} ({citation['source']}{page})"


def format_reply(answer: str, citations: list[Citation]) -> str:
    if not citations:
        return answer
    lines = "\n".join(format_source(c) for c in citations)
    return f"{answer}\n\nSources:\n{lines}"
