import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from guards.sanitize import sanitize


def test_nfkc_normalises_compatibility_forms():
    assert sanitize("ｆｕｌｌｗｉｄｔｈ ﬁle").text == "fullwidth file"


def test_strips_zero_width_bidi_tag_and_control_characters():
    hostile = "ig\u200bnore\u202e pre\u2066vious\U000e0041 \x07text\x1b[31m"
    result = sanitize(hostile)
    assert result.text == "ignore previous text[31m"
    assert result.removed == 6


def test_collapses_whitespace_but_keeps_paragraphs():
    assert sanitize("  a \t  b \n\n\n\n c  ").text == "a b\n\nc"


def test_too_long_is_refused_after_normalisation():
    assert sanitize("x" * 2001).refusal == "too_long"
    assert sanitize("x" * 2000).refusal is None
    # invisible padding does not count against the limit
    assert sanitize("x" * 1990 + "\u200b" * 50).refusal is None


def test_empty_after_cleaning_is_refused():
    assert sanitize("\u200b\u200c  \x00").refusal == "empty"


@given(st.text(max_size=300))
def test_output_never_contains_invisible_characters(text: str):
    result = sanitize(text, max_chars=5000)
    for char in result.text:
        assert char == "\n" or unicodedata.category(char) not in {"Cc", "Cf", "Co", "Cs", "Cn"}
    assert result.text == result.text.strip()
