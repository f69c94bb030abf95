"""Input checks the engine applies before anything touches state or the model."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

#: Control (Cc: U+0000-U+001F, U+007F-U+009F) and surrogate (Cs) characters, but for line feed and tab:
#: dropped from messages. Both categories are closed: Unicode never adds to them.
_DROPPED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")

#: Format characters (category Cf) that do show something: the Arabic, Syriac and Kaithi marks that
#: prepend to a number (Unicode's Prepended_Concatenation_Mark property). Every other Cf character is
#: invisible: zero-width space, non-joiner and joiner, word joiner, the bidi marks, embeddings, overrides
#: and isolates, the byte order mark, soft hyphen, invisible operators, tags, shorthand format controls...
_VISIBLE_FORMAT = frozenset("\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u0890\u0891\u08e2"
                            "\U000110bd\U000110cd")

#: Invisible characters outside Cf and the separators: the rest of Unicode's Default_Ignorable_Code_Point
#: (DerivedCoreProperties.txt), plus blanks that render as nothing and are used as "invisible text".
_INVISIBLE_RANGES = (
    (0x034F, 0x034F),    # combining grapheme joiner
    (0x115F, 0x1160),    # Hangul choseong and jungseong fillers
    (0x17B4, 0x17B5),    # Khmer inherent vowels
    (0x180B, 0x180F),    # Mongolian free variation selectors and vowel separator
    (0x2800, 0x2800),    # Braille pattern blank
    (0x3164, 0x3164),    # Hangul filler
    (0xFE00, 0xFE0F),    # variation selectors 1-16
    (0xFFA0, 0xFFA0),    # halfwidth Hangul filler
    (0xFFF0, 0xFFF8),    # reserved default-ignorable
    (0xE0000, 0xE0FFF),  # tags and variation selectors 17-256
)

EMPTY_MESSAGE = ("Your message looks empty, so there's nothing for me to answer. "
                 "Write some text and I'll reply.")


@dataclass(frozen=True)
class CheckedText:
    text: str
    #: A clear message for the author when the text cannot be used; ``text`` is then empty.
    problem: str | None = None


def is_invisible(ch: str) -> bool:
    """Whether ``ch`` shows nothing on its own: white space, separators, control and format characters,
    and the default-ignorable code points (variation selectors, fillers...)."""
    if ch.isspace():
        return True
    category = unicodedata.category(ch)
    if category in ("Zs", "Zl", "Zp", "Cc"):
        return True
    if category == "Cf":
        return ch not in _VISIBLE_FORMAT
    point = ord(ch)
    return any(low <= point <= high for low, high in _INVISIBLE_RANGES)


def looks_empty(text: str) -> bool:
    """Nothing a reader would see: only white space and invisible characters (or nothing at all)."""
    return all(is_invisible(ch) for ch in text)


def check_message(raw: str, max_chars: int) -> CheckedText:
    """Normalise line ends, drop control characters, reject empty (or only invisible) and oversized
    messages. Invisible characters inside visible text stay: emoji sequences and right-to-left text
    need their joiners, variation selectors and bidi marks."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    text = _DROPPED.sub("", text)
    if looks_empty(text):
        return CheckedText("", EMPTY_MESSAGE)
    if len(text) > max_chars:
        return CheckedText("", f"Your message is {len(text):,} characters long; I can read at most "
                               f"{max_chars:,}. Please shorten it or split it into several messages.")
    return CheckedText(text.strip())
