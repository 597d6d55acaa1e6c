"""Command parsing, reply texts and the passphrase check (ACC-1, ACC-3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.commands import (
    Command,
    ParsedCommand,
    help_text,
    info_text,
    matches_passphrase,
    parse_command,
    requires_admin,
    unknown_command_hint,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/help", ParsedCommand(Command.HELP, "")),
        ("/HELP", ParsedCommand(Command.HELP, "")),
        ("  /Info  ", ParsedCommand(Command.INFO, "")),
        ("/reset now please", ParsedCommand(Command.RESET, "now please")),
        ("/forget\neverything", ParsedCommand(Command.FORGET, "everything")),
        ("/sources\tlast", ParsedCommand(Command.SOURCES, "last")),
        ("/status", ParsedCommand(Command.STATUS, "")),
        ("／help", ParsedCommand(Command.HELP, "")),  # full-width slash, NFKC
        ("/ｈｅｌｐ", ParsedCommand(Command.HELP, "")),
        ("/helpme", ParsedCommand(Command.UNKNOWN, "")),
        ("/rm -rf", ParsedCommand(Command.UNKNOWN, "-rf")),
        ("/", ParsedCommand(Command.UNKNOWN, "")),
        ("/ help", ParsedCommand(Command.UNKNOWN, "help")),
        ("/unknown", ParsedCommand(Command.UNKNOWN, "")),
    ],
)
def test_parse(text: str, expected: ParsedCommand) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize("text", ["help", "what is /help", "", "   ", "\ufffc /help"])
def test_not_a_command(text: str) -> None:
    assert parse_command(text) is None


def test_other_prefix() -> None:
    assert parse_command("!reset", prefix="!") == ParsedCommand(Command.RESET, "")
    assert parse_command("/reset", prefix="!") is None
    assert parse_command("/reset", prefix="") is None


def test_only_status_requires_admin() -> None:
    assert requires_admin(Command.STATUS)
    assert not any(requires_admin(c) for c in Command if c is not Command.STATUS)


def test_help_lists_user_commands_but_not_status() -> None:
    text = help_text()
    for name in ("/info", "/sources", "/reset", "/forget", "/help"):
        assert name in text
    assert "/status" not in text
    assert "!forget" in help_text("!")


def test_info_covers_knowledge_and_data_handling() -> None:
    text = info_text("  gardening\nand bikes ")
    lines = text.splitlines()
    assert 3 <= len(lines) <= 4
    assert "gardening and bikes" in lines[0]
    assert "leaves my queue once answered" in text and "idle for a day" in text
    assert "/reset" in text
    assert "HMAC" in text
    assert "/forget" in text
    assert "a private document collection" in info_text("")
    assert "\N{THUMBS UP SIGN}" not in text, "said only when questions are kept"


def test_info_says_when_reactions_keep_the_question() -> None:
    text = info_text("bikes", "!", keep_feedback_text=True)
    assert 3 <= len(text.splitlines()) <= 4
    assert "\N{THUMBS UP SIGN}" in text and "keeps your question" in text
    assert "!forget" in text and "/forget" not in text


def test_unknown_hint_is_short_and_does_not_echo() -> None:
    hint = unknown_command_hint()
    assert "/help" in hint
    assert len(hint) < 80


@pytest.mark.parametrize(
    ("text", "passphrase", "expected"),
    [
        ("open sesame", "open sesame", True),
        ("  open sesame\n", "open sesame", True),
        ("ｏｐｅｎ sesame", "open sesame", True),  # NFKC folds full-width letters
        ("Open sesame", "open sesame", False),
        ("open sesame!", "open sesame", False),
        ("", "open sesame", False),
        ("", "", False),  # empty passphrase fails closed
        ("  ", "  ", False),
        ("schlüssel", "schlu\u0308ssel", True),  # composed vs decomposed
        ("\ud800", "open", False),  # lone surrogate does not raise
    ],
)
def test_matches_passphrase(text: str, passphrase: str, expected: bool) -> None:
    assert matches_passphrase(text, passphrase) is expected


@given(text=st.text(max_size=50))
def test_parse_never_raises(text: str) -> None:
    result = parse_command(text)
    assert result is None or isinstance(result.command, Command)
    matches_passphrase(text, "secret")
