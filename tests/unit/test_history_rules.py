"""The history budget at its edges: the estimate, the exact budget, where a cut lands, a leading answer."""

from __future__ import annotations

from bot.history import build_history, estimate_tokens, ladder_from_prefix
from bot.types import Entry, EntryKind

HUNDRED = "x" * 384  # estimate_tokens: 384 // 4 + 4 = 100


def _lines(n: int) -> list[Entry]:
    """``n`` history lines of 100 estimated tokens each, user first, numbered in their text."""
    kinds = (EntryKind.USER, EntryKind.ASSISTANT)
    return [Entry(kinds[i % 2], f"{i:03d}" + HUNDRED[3:], in_history=True) for i in range(n)]


def _first_and_total(history) -> tuple[str, int]:
    texts = [b.text for m in history for b in m.blocks]
    return texts[0][:3], sum(estimate_tokens(t) for t in texts)


def test_the_estimate_is_a_quarter_of_the_characters_plus_four():
    assert estimate_tokens("") == 4
    assert estimate_tokens(HUNDRED) == 100
    assert estimate_tokens("x" * 7) == 5 and isinstance(estimate_tokens("x" * 7), int)


def test_a_history_of_exactly_the_budget_is_sent_whole():
    history = build_history(_lines(20), 2_000)
    assert _first_and_total(history) == ("000", 2_000) and len(history) == 20


def test_beyond_the_budget_the_oldest_lines_go_until_three_quarters_remain():
    # 21 lines (2,100) over a budget of 2,000: cut to 1,500, i.e. the 6 oldest go, and line 6 is a user's
    history = build_history(_lines(21), 2_000)
    assert _first_and_total(history) == ("006", 1_500)
    assert history[0].role == "user" and len(history) == 15


def test_a_cut_that_lands_on_an_answer_drops_it_too():
    # 22 lines (2,200): 7 go to reach 1,500; line 7 is an answer, so it goes as well
    history = build_history(_lines(22), 2_000)
    assert _first_and_total(history) == ("008", 1_400) and history[0].role == "user"


def test_a_log_that_starts_with_an_answer_sends_the_users_line_first():
    entries = [Entry(EntryKind.ASSISTANT, "welcome", in_history=True), Entry(EntryKind.USER, "hi", in_history=True),
               Entry(EntryKind.ASSISTANT, "hello", in_history=True)]
    history = build_history(entries, 10_000)
    assert [(m.role, [b.text for b in m.blocks]) for m in history] == [("user", ["hi"]), ("assistant", ["hello"])]


def test_a_reopen_in_the_prefix_clears_the_warning_turn():
    prefix = [Entry(EntryKind.REDIRECTION, turn=0), Entry(EntryKind.WARNING, turn=2), Entry(EntryKind.REOPEN, turn=3)]
    ladder = ladder_from_prefix(prefix, 4)
    assert (ladder.redirects, ladder.warned, ladder.warned_turn, ladder.turn) == (0, False, -1, 4)
