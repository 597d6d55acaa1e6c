"""Chat commands, their fixed reply texts, and the activation passphrase check (ACC-1, ACC-3).

Why a separate pure module: the bot service decides *what* to do with a command (and
whether the sender is an admin), while parsing and the wording users see must be one
obvious place, testable without Signal. Text given here has already passed through
`agent.addressing`, so "@bot /help" arrives as "/help".
"""

from __future__ import annotations

import hmac
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from pydantic import SecretStr

__all__ = [
    "Command",
    "ParsedCommand",
    "help_text",
    "info_text",
    "matches_passphrase",
    "parse_command",
    "requires_admin",
    "unknown_command_hint",
]


class Command(StrEnum):
    HELP = "help"
    INFO = "info"
    RESET = "reset"
    FORGET = "forget"
    SOURCES = "sources"
    STATUS = "status"
    UNKNOWN = "unknown"


_ADMIN_ONLY = frozenset({Command.STATUS})
_KNOWN = {c.value: c for c in Command if c is not Command.UNKNOWN}


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    command: Command
    args: str
    """Whatever follows the command word, stripped; "" when nothing does."""


def parse_command(text: str, prefix: str = "/") -> ParsedCommand | None:
    """Parse a command ("/HELP me" -> HELP, "me"); None when `text` is not a command at all.

    The text is NFKC-normalised first so a full-width "／help" counts too. Any other word
    after the prefix, or the prefix alone, is UNKNOWN: the caller replies with the hint.
    """
    if not prefix:
        return None
    normal = unicodedata.normalize("NFKC", text).strip()
    if not normal.startswith(prefix):
        return None
    rest = normal[len(prefix) :]
    if not rest or rest[0].isspace():  # "/" alone or "/ help"
        return ParsedCommand(command=Command.UNKNOWN, args=rest.strip())
    word, *tail = rest.split(maxsplit=1)
    command = _KNOWN.get(word.casefold(), Command.UNKNOWN)
    return ParsedCommand(command=command, args=tail[0].strip() if tail else "")


def requires_admin(command: Command) -> bool:
    """True for operator commands; the caller checks the sender against the admins list."""
    return command in _ADMIN_ONLY


def help_text(prefix: str = "/") -> str:
    """Reply to /help."""
    p = prefix
    return "\n".join(
        [
            "Ask me a question in plain words and I answer from my documents.",
            "In groups, mention me, reply to one of my messages, or start with a command.",
            f"{p}info – what I know and what happens to your data",
            f"{p}sources – sources of my last answer",
            f"{p}reset – start our conversation afresh",
            f"{p}forget – delete everything stored about you",
            f"{p}help – this list",
        ]
    )


def info_text(knowledge: str, prefix: str = "/", *, keep_feedback_text: bool = False) -> str:
    """Reply to /info; `knowledge` says in a few words what the collection covers,
    `keep_feedback_text` whether a reaction keeps the question (FEEDBACK__KEEP_TEXT)."""
    about = " ".join(knowledge.split()) or "a private document collection"
    forget = f"Send {prefix}forget to delete everything stored about you."
    if keep_feedback_text:
        forget = ("A \N{THUMBS UP SIGN} or \N{THUMBS DOWN SIGN} on an answer keeps your "
                  "question, the passages it cited and your reaction, to test and improve "
                  "the search (the disappearing-message timer deletes them too). " + forget)
    return "\n".join(
        [
            f"I answer questions from {about}, and say so when the documents do not cover it.",
            "Your message text leaves my queue once answered; the last few exchanges are "
            "kept as conversation memory until the chat is idle for a day "
            f"({prefix}reset clears it sooner).",
            "The audit log holds no message text, only keyed hashes (HMAC) of ids.",
            forget,
        ]
    )


def unknown_command_hint(prefix: str = "/") -> str:
    """Reply to an unknown command; it never echoes what was typed."""
    return f"I don't know that command. Send {prefix}help for the list."


def matches_passphrase(text: str, passphrase: SecretStr | str) -> bool:
    """Constant-time check of an activation attempt, after NFKC and stripping both sides.
    The passphrase arrives wrapped and is unwrapped only here, at the comparison.

    Fails closed: an empty passphrase never matches (activation cannot be switched off by
    leaving it blank).
    """
    secret = passphrase.get_secret_value() if isinstance(passphrase, SecretStr) else passphrase
    expected = unicodedata.normalize("NFKC", secret).strip()
    if not expected:
        return False
    given = unicodedata.normalize("NFKC", text).strip()
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )
