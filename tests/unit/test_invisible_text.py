"""Messages made only of invisible characters are empty; invisible characters inside visible text stay."""

from __future__ import annotations

import pytest

from bot.validation import EMPTY_MESSAGE, check_message, is_invisible, looks_empty

INVISIBLE_ONLY = {
    "zero-width space": "\u200b",
    "zero-width non-joiner and joiner": "\u200c\u200d",
    "word joiner": "\u2060",
    "byte order mark": "\ufeff",
    "left-to-right and right-to-left marks": "\u200e\u200f",
    "Arabic letter mark": "\u061c",
    "bidi embeddings and overrides": "\u202a\u202b\u202c\u202d\u202e",
    "bidi isolates": "\u2066\u2067\u2068\u2069",
    "variation selectors": "\ufe0e\ufe0f\U000e0100",
    "tag characters": "\U000e0001\U000e0041\U000e007f",
    "soft hyphen": "\u00ad",
    "combining grapheme joiner": "\u034f",
    "invisible operators": "\u2061\u2062\u2063\u2064",
    "Mongolian vowel separator and selectors": "\u180e\u180b",
    "Hangul fillers": "\u115f\u1160\u3164\uffa0",
    "Braille pattern blank": "\u2800",
    "wide spaces": "\u00a0\u2003\u3000\u202f",
    "line and paragraph separators": "\u2028\u2029",
    "a mix with ordinary white space": " \u200b\n\t\ufeff\u2060 \u200d ",
    "a mix with control characters": "\x00\u200b\x1b\u202e",
}

VISIBLE = {
    "an emoji family joined by zero-width joiners": "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "a heart with its variation selector": "\u2764\ufe0f",
    "Hebrew wrapped in right-to-left marks": "\u200f\u05e9\u05dc\u05d5\u05dd\u200f",
    "an Arabic number sign": "\u0600",
    "a word after a zero-width space": "\u200bhello",
    "text in a bidi isolate": "\u2068abc\u2069",
}


@pytest.mark.parametrize("text", INVISIBLE_ONLY.values(), ids=INVISIBLE_ONLY.keys())
def test_only_invisible_characters_is_an_empty_message(text: str) -> None:
    assert looks_empty(text)
    checked = check_message(text, 4000)
    assert (checked.text, checked.problem) == ("", EMPTY_MESSAGE)


@pytest.mark.parametrize("text", VISIBLE.values(), ids=VISIBLE.keys())
def test_visible_text_keeps_its_joiners_marks_and_selectors(text: str) -> None:
    checked = check_message(text, 4000)
    assert checked.problem is None
    assert checked.text == text  # nothing inside is taken out: emoji and right-to-left text need them


def test_every_character_is_judged_one_by_one() -> None:
    assert is_invisible("\u200b") and is_invisible(" ") and is_invisible("\U000e0020")
    assert not any(is_invisible(ch) for ch in "a1.\u0600\u05d0\u4e2d\U0001f600\u0301")
