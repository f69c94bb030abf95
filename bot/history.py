"""Turning a thread's log into model history, and recovering the ladder of a log prefix."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from bot.files import file_blocks, refs_tokens
from bot.model import Block, ModelMessage, Role, TextBlock
from bot.participants import clean_name
from bot.types import Entry, EntryKind, LadderState


def estimate_tokens(text: str) -> int:
    """A cheap, conservative estimate (about four characters a token) used for the history budget."""
    return len(text) // 4 + 4


_USER, _ASSISTANT = EntryKind.USER, EntryKind.ASSISTANT


def _is_line(e: Entry) -> bool:
    return e.in_history and (e.kind is _USER or e.kind is _ASSISTANT)


def window_cut(entries: list[Entry], token_budget: int, incoming_tokens: int = 0) -> int:
    """Where the history window should start within ``entries`` (the stored window): 0 while it fits.

    When the window and the new message outgrow the budget the start moves forward, to the first member
    line that leaves at most half the budget; it then stays put for many turns, so the prompt prefix the
    model API caches is byte-identical from one turn to the next.
    """
    total = incoming_tokens
    for e in entries:  # estimate_tokens, inline: this runs over the whole window every turn
        if e.in_history and (e.kind is _USER or e.kind is _ASSISTANT):
            total += len(e.text) // 4 + 4
            if e.attachments:
                total += refs_tokens(e.attachments)
    if total <= token_budget:
        return 0
    lines = [(i, e) for i, e in enumerate(entries) if _is_line(e)]
    target = token_budget // 2
    cut = len(entries)
    for n, (i, e) in enumerate(lines):
        if total <= target and e.kind is EntryKind.USER:
            cut = i
            break
        total -= estimate_tokens(e.text) + refs_tokens(e.attachments)
        if n == len(lines) - 1:
            cut = len(entries)
    return cut


def build_history(entries: list[Entry], token_budget: int) -> list[ModelMessage]:
    """User and assistant lines of ``entries`` that belong in the history, cut by ``window_cut``.

    The ladder state is not lost by a cut: it lives in the thread state and reaches the model in the
    per-turn note.
    """
    return to_messages(entries[window_cut(entries, token_budget):])


# --- who said what: member lines labelled with their speaker in shared threads --------------------------

#: An opening or closing member tag a member's own text could use to end its label or forge another one
#: (compatibility forms of ``<`` included): its ``<`` is escaped.
_TAG = re.compile(r"[<\uff1c\ufe64](?=\s*/?\s*member\b)", re.IGNORECASE)


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def member_line(text: str, member_id: str | None, name: str | None) -> str:
    """A member's line as the model reads it in a shared thread: ``<member name="…" id="…">text</member>``.

    The name is the display name the line was stored with (one line, no control or bidi characters, at most
    64 characters, quotes and brackets escaped); the id is the platform's. Neither can leave the label, and
    the text cannot close it or open another. Built from the stored entry alone, so the same line gives the
    same bytes in every turn (the cached prompt prefix holds)."""
    who = _attr(clean_name(name or member_id))
    ident = _attr(clean_name(member_id, 64) if member_id else "")
    return f'<member name="{who}" id="{ident}">{_TAG.sub("&lt;", text)}</member>'


def is_shared(entries: Iterable[Entry], newest: str | None = None) -> bool:
    """Whether more than one member wrote among ``entries`` (with ``newest``, the author of the message
    being answered): their lines then reach the model labelled with their speaker."""
    seen = {e.author_id for e in entries if e.kind is _USER and e.author_id}
    if newest:
        seen.add(newest)
    return len(seen) > 1


def to_messages(entries: list[Entry], files: Mapping[str, str] | None = None, *,
                named: bool = False) -> list[ModelMessage]:
    """The model messages of a window: its user and assistant lines, starting with the member's;
    consecutive lines of one role make one message. ``files``: the thread's stored files by id (a line's
    files come before its text; one no longer stored becomes a placeholder). ``named``: each member line is
    labelled with its speaker (``member_line``; a shared thread)."""
    messages: list[ModelMessage] = []
    last: Role | None = None
    for e in entries:
        if not e.in_history:
            continue
        role: Role
        if e.kind is _USER:
            role = "user"
        elif e.kind is _ASSISTANT and last is not None:
            role = "assistant"
        else:  # not a line, or an answer before the window's first member line
            continue
        blocks = _line_blocks(e, files, named and role == "user")
        if role == last:
            prev = messages[-1]
            messages[-1] = ModelMessage(role, (*prev.blocks, *blocks))
        else:
            messages.append(ModelMessage(role, blocks))
            last = role
    return messages


def _line_blocks(e: Entry, files: Mapping[str, str] | None, named: bool = False) -> tuple[Block, ...]:
    text = member_line(e.text, e.author_id, e.author_name) if named else e.text
    if not e.attachments:
        return (TextBlock(text),)
    blocks = file_blocks(e.attachments, files or {})
    return (*blocks, TextBlock(text)) if text else tuple(blocks)


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
