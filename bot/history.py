"""Turning a thread's log into model history, and recovering the ladder of a log prefix."""

from __future__ import annotations

from bot.model import ModelMessage, Role, TextBlock
from bot.types import Entry, EntryKind, LadderState


def estimate_tokens(text: str) -> int:
    """A cheap, conservative estimate (about four characters a token) used for the history budget."""
    return len(text) // 4 + 4


def build_history(entries: list[Entry], token_budget: int) -> list[ModelMessage]:
    """User and assistant lines that belong in the history, oldest dropped first beyond the budget.

    When the history outgrows the budget it is cut back to three quarters of it, so the cut point (and
    with it the cached prompt prefix) stays put for several turns instead of moving every turn. The
    ladder state is not lost by the cut: it lives in the thread state and reaches the model in the
    per-turn note.
    """
    lines = [e for e in entries if e.in_history and e.kind in (EntryKind.USER, EntryKind.ASSISTANT)]
    total = sum(estimate_tokens(e.text) for e in lines)
    if total > token_budget:
        target = token_budget * 3 // 4
        while lines and total > target:
            total -= estimate_tokens(lines.pop(0).text)
    while lines and lines[0].kind is EntryKind.ASSISTANT:
        lines.pop(0)
    messages: list[ModelMessage] = []
    for e in lines:
        role: Role = "user" if e.kind is EntryKind.USER else "assistant"
        if messages and messages[-1].role == role:
            prev = messages[-1]
            messages[-1] = ModelMessage(role, (*prev.blocks, TextBlock(e.text)))
        else:
            messages.append(ModelMessage(role, (TextBlock(e.text),)))
    return messages


def ladder_from_prefix(prefix: list[Entry], turn: int) -> LadderState:
    """The ladder a thread held after ``prefix``: what a branch from that point starts with."""
    ladder = LadderState(turn=turn)
    for e in prefix:
        if e.kind is EntryKind.REDIRECTION and e.category == "self_harm":
            ladder.at_risk = True  # logs written before self-harm counted as risk
        elif e.kind is EntryKind.REDIRECTION:
            ladder.redirects += 1
        elif e.kind is EntryKind.WARNING:
            ladder.warned, ladder.warned_turn = True, e.turn
        elif e.kind is EntryKind.RISK:
            ladder.at_risk = True
        elif e.kind is EntryKind.CRISIS:
            ladder.crisis_posted = True
        elif e.kind is EntryKind.REOPEN:
            ladder.redirects, ladder.warned, ladder.warned_turn = 0, False, -1
    return ladder
