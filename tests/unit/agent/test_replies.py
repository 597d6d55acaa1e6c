"""Splitting long answers for Signal (SIG-4): boundaries, markers, the Sources block, and
properties over arbitrary text: no part too long, nothing lost, markers consecutive."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.replies import SIGNAL_TEXT_LIMIT, split_reply

MARKER = re.compile(r" \((\d+)/(\d+)\)\Z")


def units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def strip_markers(parts: list[str]) -> list[str]:
    if len(parts) < 2:
        return parts
    return [MARKER.sub("", p) for p in parts]


def non_ws(text: str) -> str:
    return "".join(text.split())


def test_short_text_is_one_part_without_marker() -> None:
    assert split_reply("  Hello there.  ") == ["Hello there."]
    assert split_reply("x" * SIGNAL_TEXT_LIMIT) == ["x" * SIGNAL_TEXT_LIMIT]


def test_whitespace_only_gives_no_parts() -> None:
    assert split_reply("") == []
    assert split_reply(" \n\t ") == []


def test_limit_too_small_is_rejected() -> None:
    with pytest.raises(ValueError, match="limit"):
        split_reply("hello", limit=5)


def test_splits_on_paragraphs_first() -> None:
    first = "First paragraph. " * 5
    second = "Second paragraph here. " * 5
    parts = split_reply(f"{first.strip()}\n\n{second.strip()}", limit=130)
    assert parts == [f"{first.strip()} (1/2)", f"{second.strip()} (2/2)"]


def test_splits_long_paragraph_on_sentences_not_words() -> None:
    text = "One two three four. Five six seven eight. Nine ten eleven twelve."
    parts = split_reply(text, limit=50)
    assert parts == [
        "One two three four. Five six seven eight. (1/2)",
        "Nine ten eleven twelve. (2/2)",
    ]


def test_splits_on_words_when_a_sentence_is_too_long() -> None:
    text = " ".join(["word"] * 30)
    parts = strip_markers(split_reply(text, limit=30))
    assert all(set(p.split()) == {"word"} for p in parts)


def test_single_overlong_word_is_cut() -> None:
    parts = split_reply("a" * 100, limit=30)
    assert all(units(p) <= 30 for p in parts)
    assert "".join(strip_markers(parts)) == "a" * 100


def test_keeps_list_lines_and_breaks_between_them() -> None:
    text = "Steps:\n" + "\n".join(f"- step number {i} of the list" for i in range(10))
    parts = strip_markers(split_reply(text, limit=100))
    for part in parts:
        for line in part.splitlines():
            assert line == "Steps:" or re.fullmatch(r"- step number \d of the list", line)


def test_sources_block_stays_in_one_part() -> None:
    body = "\n\n".join(f"Paragraph {i} says something useful." for i in range(8))
    sources = "Sources:\n- garden.md (Tomatoes)\n- bikes.txt (Chains)"
    parts = split_reply(f"{body}\n\n{sources}", limit=120)
    assert len(parts) > 1
    holding = [p for p in parts if "Sources:" in p]
    assert len(holding) == 1
    assert sources in holding[0]
    assert holding[0] is parts[-1]


def test_oversized_sources_block_is_split_like_text() -> None:
    sources = "Sources:\n" + "\n".join(f"- document-{i}.md" for i in range(40))
    parts = split_reply(f"Answer.\n\n{sources}", limit=60)
    assert all(units(p) <= 60 for p in parts)
    assert non_ws("".join(strip_markers(parts))) == non_ws(f"Answer.\n\n{sources}")


def test_markers_widen_past_nine_parts() -> None:
    text = " ".join(f"w{i:03d}" for i in range(200))
    parts = split_reply(text, limit=20)
    assert len(parts) >= 10
    assert all(units(p) <= 20 for p in parts)
    assert parts[0].endswith(f" (1/{len(parts)})")


def test_astral_characters_count_as_two_units_and_are_never_cut() -> None:
    text = "😀" * 50
    parts = split_reply(text, limit=20)
    assert all(units(p) <= 20 for p in parts)
    assert "".join(strip_markers(parts)) == text


def test_hostile_whitespace_runs_are_fast_and_safe() -> None:
    text = ("x" + " " * 5000 + "y.") * 20 + "\n" * 3000
    parts = split_reply(text, limit=100)
    assert all(units(p) <= 100 for p in parts)
    assert non_ws("".join(parts)).startswith("x")


TOKENS = st.sampled_from([*"ab .!?\n\t:;-", "😀", "é", "…", "word", "Sources:", "\n\n"])
TEXT = st.lists(TOKENS, max_size=150).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=TEXT, limit=st.integers(min_value=16, max_value=120))
def test_properties(text: str, limit: int) -> None:
    parts = split_reply(text, limit)
    assert all(units(p) <= limit for p in parts)
    assert non_ws("".join(strip_markers(parts))) == non_ws(text)
    if len(parts) > 1:
        numbers = [MARKER.search(p) for p in parts]
        assert all(m is not None for m in numbers)
        seen = [(int(m.group(1)), int(m.group(2))) for m in numbers if m]
        assert seen == [(i, len(parts)) for i in range(1, len(parts) + 1)]
    assert all(p == p.strip() or len(parts) > 1 for p in parts)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=300), limit=st.integers(min_value=16, max_value=60))
def test_properties_on_arbitrary_unicode(text: str, limit: int) -> None:
    parts = split_reply(text, limit)
    assert all(units(p) <= limit for p in parts)
    assert non_ws("".join(strip_markers(parts))) == non_ws(text)


@settings(max_examples=200, deadline=None)
@given(words=st.lists(st.text(alphabet="abc😀.,", min_size=1, max_size=8), max_size=80),
       seps=st.sampled_from([" ", "\n", "\n\n", ". "]), limit=st.integers(30, 80))
def test_never_cuts_a_word_that_fits(words: list[str], seps: str, limit: int) -> None:
    # words are at most 16 UTF-16 units, below the room left beside any marker
    text = seps.join(words)
    parts = strip_markers(split_reply(text, limit))
    assert [w for p in parts for w in p.split()] == text.split()
