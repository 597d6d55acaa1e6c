"""Who a message is for (SIG-5): mentions, quotes, the command prefix, direct messages, and
hostile mention data that must count as "not mentioned" without raising."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.addressing import BotIdentity, address, clean_text
from agent.signal.envelope import Envelope, EnvelopeKind, Mention, Quote

BOT = BotIdentity(uuid="bot-uuid", number="+15550000000")
ALICE = "alice-uuid"
P = "\ufffc"


def env(text: str | None, *, group: bool = True, mentions: tuple[Any, ...] = (),
        quote: Quote | None = None) -> Envelope:
    return Envelope(kind=EnvelopeKind.DATA, timestamp=1, source_uuid=ALICE, text=text,
                    mentions=mentions, quote=quote, group_id="g1" if group else None)


def at(start: int, uuid: str | None = "bot-uuid", number: str | None = None,
       length: int = 1) -> Mention:
    return Mention(uuid=uuid, number=number, start=start, length=length)


def test_direct_message_is_always_addressed() -> None:
    result = address(env("what is compost?", group=False), BOT)
    assert (result.addressed, result.reason, result.text) == (True, "direct", "what is compost?")


def test_group_chatter_is_not_addressed() -> None:
    result = address(env("lunch anyone?"), BOT)
    assert not result.addressed
    assert result.reason == "none"


def test_group_without_text_is_not_addressed() -> None:
    assert not address(env(None), BOT).addressed


def test_mention_by_uuid_strips_placeholder() -> None:
    result = address(env(f"{P} how do I oil a chain?", mentions=(at(0),)), BOT)
    assert (result.addressed, result.reason, result.text) == (
        True, "mention", "how do I oil a chain?")


def test_mention_by_number_counts() -> None:
    mention = at(5, uuid=None, number=BOT.number)
    result = address(env(f"hey, {P} help", mentions=(mention,)), BOT)
    assert result.addressed
    assert result.text == "hey,  help"


def test_other_mentions_become_names_never_numbers() -> None:
    text = f"{P} ask {P} and {P}"
    mentions = (at(0), at(6, uuid=ALICE), at(12, uuid="carol", number="+4915112345678"))
    result = address(env(text, mentions=mentions), BOT, names={ALICE: "Alice"})
    assert result.text == "ask @Alice and @someone"
    assert "+49" not in result.text


def test_phone_like_display_name_is_hidden() -> None:
    result = address(env(f"{P} hi {P}", mentions=(at(0), at(5, uuid=ALICE))), BOT,
                     names={ALICE: "+49 151 1234567"})
    assert result.text == "hi @someone"


def test_mention_offsets_are_utf16_units() -> None:
    text = f"😀 {P} question"  # the emoji is two UTF-16 units
    result = address(env(text, mentions=(at(3),)), BOT)
    assert result.addressed
    assert result.text == "😀  question"


def test_only_others_mentioned_is_not_addressed() -> None:
    result = address(env(f"{P} see this", mentions=(at(0, uuid=ALICE),)), BOT)
    assert not result.addressed
    assert result.text == "@someone see this"


def test_quote_of_bot_message_is_addressed() -> None:
    quote = Quote(id=5, author_uuid=BOT.uuid, author_number=None, text="earlier answer")
    result = address(env("and in winter?", quote=quote), BOT)
    assert (result.addressed, result.reason) == (True, "quote")


def test_quote_of_someone_else_is_not_addressed() -> None:
    quote = Quote(id=5, author_uuid=ALICE, author_number=None, text="hi")
    assert not address(env("agreed", quote=quote), BOT).addressed
    anonymous = Quote(id=5, author_uuid=None, author_number=None, text="hi")
    assert not address(env("agreed", quote=anonymous), BotIdentity(uuid=None)).addressed


def test_command_prefix_is_addressed() -> None:
    result = address(env("  /help"), BOT)
    assert (result.addressed, result.reason, result.text) == (True, "command", "/help")
    assert address(env("!help"), BOT, command_prefix="!").addressed
    assert not address(env("/help"), BOT, command_prefix="").addressed


def test_mention_then_command_yields_bare_command() -> None:
    result = address(env(f"{P} /reset", mentions=(at(0),)), BOT)
    assert result.text == "/reset"


def test_hostile_mentions_count_as_not_mentioned() -> None:
    text = f"{P} hello"
    hostile = [
        at(-1), at(100), at(0, length=0), at(0, length=99), at(0, length=-3),
        at(1),  # not on the placeholder
        at(0, uuid=None, number=None),
        Mention(uuid=BOT.uuid, number=None, start="0", length=1),  # type: ignore[arg-type]
        Mention(uuid=BOT.uuid, number=None, start=True, length=True),
        "not a mention",
        None,
    ]
    for mention in hostile:
        result = address(env(text, mentions=(mention,)), BOT)
        assert not result.addressed, mention
        assert result.text == text.strip()


def test_overlapping_mentions_are_all_ignored() -> None:
    text = f"{P}{P} hi"
    mentions = (at(0, length=2), at(1, uuid=ALICE))
    result = address(env(text, mentions=mentions), BOT)
    assert not result.addressed
    assert result.text == text


def test_mention_span_may_not_split_a_surrogate_pair() -> None:
    text = f"{P}😀 hi"
    result = address(env(text, mentions=(at(0, length=2),)), BOT)
    assert not result.addressed


def test_lone_surrogates_do_not_raise() -> None:
    text, mentioned = clean_text(f"{P}\ud800 x", (at(0),), BOT)
    assert mentioned
    assert text == "\ud800 x"


def test_unset_bot_identity_matches_nothing() -> None:
    nobody = BotIdentity(uuid=None, number=None)
    result = address(env(f"{P} hi", mentions=(at(0, uuid=None, number="+1555"),)), nobody)
    assert not result.addressed


MENTIONS = st.builds(
    Mention,
    uuid=st.sampled_from([None, "bot-uuid", ALICE, ""]),
    number=st.sampled_from([None, BOT.number, "+4915112345678"]),
    start=st.integers(min_value=-5, max_value=30),
    length=st.integers(min_value=-2, max_value=5),
)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from([P, "a", " ", "😀", "\ud800", "/"]), max_size=25),
       mentions=st.lists(MENTIONS, max_size=6), group=st.booleans())
def test_never_raises_and_never_leaks_numbers(text: str, mentions: list[Mention],
                                              group: bool) -> None:
    result = address(env(text, group=group, mentions=tuple(mentions)), BOT)
    assert "+49" not in result.text
    assert result.addressed or group
