"""The input checks at their edges: line ends, surrogates, the exact length limit, the messages."""

from __future__ import annotations

from bot.validation import check_message


def test_a_lone_carriage_return_becomes_a_newline():
    assert check_message("one\rtwo\r\nthree", 100).text == "one\ntwo\nthree"


def test_lone_surrogates_are_dropped():
    assert check_message("a\ud800b\udfffc", 100).text == "abc"


def test_a_message_of_exactly_the_limit_is_accepted_and_one_more_is_not():
    exact = check_message("x" * 100, 100)
    assert exact.problem is None and exact.text == "x" * 100
    over = check_message("x" * 1_234, 1_233)
    assert over.text == "" and over.problem is not None
    assert over.problem.startswith("Your message is 1,234 characters long; I can read at most 1,233.")


def test_an_empty_message_gets_a_plain_sentence_and_no_text():
    checked = check_message(" \r\n\x00 ", 100)
    assert checked.text == "" and checked.problem is not None
    assert checked.problem.startswith("Your message looks empty, so there's nothing for me to answer.")
    assert checked.problem.endswith("Write some text and I'll reply.")


def test_every_control_and_surrogate_but_line_feed_and_tab_is_dropped_and_nothing_else():
    import sys
    import unicodedata

    every = "x" + "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c) != "\r")
    kept = check_message(every, len(every)).text
    expected = "".join(ch for ch in every if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs"))
    assert kept == expected.strip()
