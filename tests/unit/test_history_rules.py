"""The history budget at its edges: the estimate, the exact budget, where a cut lands, a leading answer."""

from __future__ import annotations

from bot.history import build_history, estimate_tokens, ladder_from_prefix, window_cut
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


def test_beyond_the_budget_the_window_starts_where_at_most_half_remains():
    # 21 lines (2,100) over a budget of 2,000: the oldest go until 1,000 remain (11 lines); line 11 is an
    # answer, so the window starts one further, at the member's line 12 (900 tokens)
    history = build_history(_lines(21), 2_000)
    assert _first_and_total(history) == ("012", 900)
    assert history[0].role == "user" and len(history) == 9


def test_a_cut_that_lands_on_a_members_line_keeps_it():
    # 22 lines (2,200): 12 go to reach 1,000, and line 12 is the member's, so the window starts there
    history = build_history(_lines(22), 2_000)
    assert _first_and_total(history) == ("012", 1_000) and history[0].role == "user"


def test_the_window_stays_put_while_it_fits_again():
    # once cut, the stored window (from line 12) grows a line a turn and needs no new cut for 10 lines
    entries = _lines(22)
    assert window_cut(entries, 2_000) == 12
    window = entries[12:]
    for n in range(22, 32):
        window.append(_lines(n + 1)[n])
        assert window_cut(window, 2_000) == 0, n
    window.append(_lines(33)[32])
    assert window_cut(window, 2_000) > 0


def test_a_log_that_starts_with_an_answer_sends_the_users_line_first():
    entries = [Entry(EntryKind.ASSISTANT, "welcome", in_history=True), Entry(EntryKind.USER, "hi", in_history=True),
               Entry(EntryKind.ASSISTANT, "hello", in_history=True)]
    history = build_history(entries, 10_000)
    assert [(m.role, [b.text for b in m.blocks]) for m in history] == [("user", ["hi"]), ("assistant", ["hello"])]


def test_a_reopen_in_the_prefix_clears_the_warning_turn():
    prefix = [Entry(EntryKind.REDIRECTION, turn=0), Entry(EntryKind.WARNING, turn=2), Entry(EntryKind.REOPEN, turn=3)]
    ladder = ladder_from_prefix(prefix, 4)
    assert (ladder.redirects, ladder.warned, ladder.warned_turn, ladder.turn) == (0, False, -1, 4)


def _reference_cut(entries: list[Entry], token_budget: int, incoming_tokens: int = 0) -> int:
    """``window_cut`` as first written, the plain way."""
    lines = [(i, e) for i, e in enumerate(entries)
             if e.in_history and e.kind in (EntryKind.USER, EntryKind.ASSISTANT)]
    total = sum(estimate_tokens(e.text) for _, e in lines) + incoming_tokens
    if total <= token_budget:
        return 0
    cut = len(entries)
    for n, (i, e) in enumerate(lines):
        if total <= token_budget // 2 and e.kind is EntryKind.USER:
            cut = i
            break
        total -= estimate_tokens(e.text)
        if n == len(lines) - 1:
            cut = len(entries)
    return cut


def _reference_messages(entries: list[Entry]) -> list[tuple[str, tuple[str, ...]]]:
    lines = [e for e in entries if e.in_history and e.kind in (EntryKind.USER, EntryKind.ASSISTANT)]
    while lines and lines[0].kind is EntryKind.ASSISTANT:
        lines.pop(0)
    out: list[tuple[str, tuple[str, ...]]] = []
    for e in lines:
        role = "user" if e.kind is EntryKind.USER else "assistant"
        if out and out[-1][0] == role:
            out[-1] = (role, (*out[-1][1], e.text))
        else:
            out.append((role, (e.text,)))
    return out


def test_the_window_and_its_messages_are_what_the_plain_rules_give_on_any_log():
    import random

    from bot.history import to_messages

    rng = random.Random(7)
    kinds = list(EntryKind)
    for _ in range(400):
        entries = [Entry(rng.choice(kinds[:2] * 3 + kinds), "x" * rng.randrange(0, 900),
                         in_history=rng.random() < 0.8) for _ in range(rng.randrange(0, 40))]
        budget, incoming = rng.choice([50, 500, 2_000, 24_000]), rng.randrange(0, 300)
        assert window_cut(entries, budget, incoming) == _reference_cut(entries, budget, incoming)
        got = [(m.role, tuple(b.text for b in m.blocks)) for m in to_messages(entries)]
        assert got == _reference_messages(entries)
