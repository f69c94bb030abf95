"""Input checks, history building and the ladder of a log prefix."""

from __future__ import annotations

from bot.history import build_history, estimate_tokens, ladder_from_prefix
from bot.types import Entry, EntryKind
from bot.validation import check_message


def test_empty_and_whitespace_rejected_with_clear_message():
    for raw in ["", "   ", "\n\t \n", "\x00\x07\x1b"]:
        checked = check_message(raw, 100)
        assert checked.problem and "empty" in checked.problem and checked.text == ""


def test_oversized_rejected_with_both_numbers():
    checked = check_message("x" * 101, 100)
    assert checked.problem and "101" in checked.problem and "100" in checked.problem


def test_control_characters_dropped_newlines_kept():
    checked = check_message("a\x00b\x1b[31mc\r\nd\te\u200b", 100)
    assert checked.problem is None
    assert checked.text == "ab[31mc\nd\te\u200b"


def _e(kind, text="t", turn=0, in_history=True):
    return Entry(kind, text, turn=turn, in_history=in_history)


def test_history_keeps_only_model_lines_and_merges_roles():
    entries = [_e(EntryKind.USER, "u1"), _e(EntryKind.REDIRECTION, in_history=False), _e(EntryKind.ASSISTANT, "a1"),
               _e(EntryKind.USER, "refused", in_history=False), _e(EntryKind.ASSISTANT, "x", in_history=False),
               _e(EntryKind.USER, "u2"), _e(EntryKind.USER, "u3")]
    history = build_history(entries, 10_000)
    assert [m.role for m in history] == ["user", "assistant", "user"]
    assert [b.text for b in history[2].blocks] == ["u2", "u3"]


def test_history_budget_drops_oldest_and_starts_with_user():
    entries = []
    for i in range(40):
        entries += [_e(EntryKind.USER, f"question {i} " + "x" * 400),
                    _e(EntryKind.ASSISTANT, f"answer {i} " + "y" * 400)]
    budget = 2000
    history = build_history(entries, budget)
    total = sum(estimate_tokens(b.text) for m in history for b in m.blocks)
    assert total <= budget
    assert history[0].role == "user"
    assert history[-1].blocks[-1].text.startswith("answer 39")
    # the cut lands at three quarters of the budget, so the next turns keep the same prefix
    assert total <= budget * 3 // 4


def test_ladder_from_prefix():
    prefix = [_e(EntryKind.USER), _e(EntryKind.REDIRECTION), _e(EntryKind.REDIRECTION, turn=1),
              _e(EntryKind.WARNING, turn=1), _e(EntryKind.RISK, turn=2), _e(EntryKind.CRISIS, turn=2)]
    ladder = ladder_from_prefix(prefix, 3)
    assert (ladder.redirects, ladder.warned, ladder.warned_turn, ladder.at_risk, ladder.crisis_posted, ladder.turn) == (
        2, True, 1, True, True, 3)
    reopened = ladder_from_prefix([*prefix, _e(EntryKind.REOPEN, turn=3)], 4)
    assert reopened.redirects == 0 and not reopened.warned and reopened.at_risk
