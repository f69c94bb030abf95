"""Input checks the engine applies before anything touches state or the model."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

_KEEP = {"\n", "\t"}


@dataclass(frozen=True)
class CheckedText:
    text: str
    #: A clear message for the author when the text cannot be used; ``text`` is then empty.
    problem: str | None = None


def check_message(raw: str, max_chars: int) -> CheckedText:
    """Normalise line ends, drop control characters, reject empty and oversized messages."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(ch for ch in text if ch in _KEEP or unicodedata.category(ch) not in ("Cc", "Cs"))
    if not text.strip():
        return CheckedText("", "Your message looks empty, so there's nothing for me to answer. "
                               "Write some text and I'll reply.")
    if len(text) > max_chars:
        return CheckedText("", f"Your message is {len(text):,} characters long; I can read at most "
                               f"{max_chars:,}. Please shorten it or split it into several messages.")
    return CheckedText(text.strip())
