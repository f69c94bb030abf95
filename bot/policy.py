"""The ladder as pure functions: what the engine does with each tool call the model makes.

No I/O here. The engine feeds the thread's ``LadderState`` and a ``ToolCall`` in and gets back the
new state, the tool result for the model and the effects to carry out (notices to post, an end).

Risk beats abuse. Every self-harm signal is taken as risk, whatever tool carries it: ``flag_risk``, a
``record_redirection`` under ``self_harm`` (flags the thread at risk, posts crisis resources once, never
counts toward the warning) and an ``end_conversation`` under ``self_harm`` (refused, and flags the thread
at risk). Once a thread is at risk, no model-initiated end is accepted there, for either reason; the
member's own end command stays available (it does not pass through this module).

Shared threads: an end at a member's request (``user_requested``) is accepted only when the member being
answered started the thread; anyone else may leave it or start a conversation of their own.

Harm to others: ``flag_risk(kind="harm_to_others")`` is the signal that a member may act on it, and it
blocks every model-initiated end like self-harm does. A redirection under ``violent_threats`` stays a
redirection: threats aimed at people are the relentless abuse the ladder exists for, and the model is
told to call ``flag_risk`` instead when it believes the member may really act.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bot.types import CATEGORIES, LadderState

RECORD_REDIRECTION = "record_redirection"
END_CONVERSATION = "end_conversation"
FLAG_RISK = "flag_risk"
TOOL_NAMES = frozenset({RECORD_REDIRECTION, END_CONVERSATION, FLAG_RISK})
END_REASONS = frozenset({"persistent_abuse", "user_requested"})
RISK_KINDS = frozenset({"self_harm", "harm_to_others"})
#: A signal in this category means the member may be at risk, never that they are abusive: it flags risk.
SELF_HARM = "self_harm"


@dataclass(frozen=True)
class ToolCall:
    """A tool the model asked to run, as the model client reports it."""

    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class EndDecision:
    reason: str
    category: str
    summary: str


@dataclass
class Verdict:
    """The engine's answer to one tool call."""

    state: LadderState
    #: Text returned to the model as the tool result.
    result: str
    accepted: bool
    #: A redirection was counted (category), for the ladder timeline.
    redirection: str | None = None
    post_warning: bool = False
    risk_flagged: str | None = None
    post_crisis: bool = False
    end: EndDecision | None = None
    notes: list[str] = field(default_factory=list)


def _category(raw: Any) -> str:
    value = str(raw or "other").strip().lower().replace(" ", "_").replace("-", "_")
    return value if value in CATEGORIES else "other"


def _text(raw: Any, limit: int = 500) -> str:
    return str(raw or "").strip()[:limit]


def apply_tool_call(state: LadderState, call: ToolCall, threshold: int, *, ended: bool = False,
                    starter: bool = True) -> Verdict:
    """Decide one tool call. ``state.turn`` is the number of the turn in progress; ``starter``: whether the
    member being answered started the thread (in a shared thread only they may have it ended)."""
    if ended:
        return Verdict(state, "The conversation has already ended. Write nothing more.", accepted=False)
    if call.name == RECORD_REDIRECTION:
        return _record_redirection(state, call, threshold)
    if call.name == FLAG_RISK:
        return _flag_risk(state, call)
    if call.name == END_CONVERSATION:
        return _end_conversation(state, call, starter)
    return Verdict(state, f"Unknown tool {call.name!r}. Answer the user in plain text instead.",
                   accepted=False)


def _record_redirection(state: LadderState, call: ToolCall, threshold: int) -> Verdict:
    category = _category(call.input.get("category"))
    if category == SELF_HARM:
        return _self_harm_signal(
            state,
            "Not counted as a redirection: a member talking about hurting themselves may be at risk, "
            "not abusive. The thread is now flagged at risk and will not be ended; next time call "
            "flag_risk with kind 'self_harm' instead.",
        )
    new = dataclasses.replace(state, redirects=state.redirects + 1)
    if new.redirects >= threshold and not state.warned:
        new = dataclasses.replace(new, warned=True, warned_turn=state.turn)
        return Verdict(
            new,
            f"Redirection recorded ({new.redirects}). This reached the community's threshold: the "
            "system will now post an explicit warning that the conversation may be ended. Do not end "
            "the conversation in this turn; answer the user briefly.",
            accepted=True, redirection=category, post_warning=True,
        )
    remaining = max(threshold - new.redirects, 0)
    result = f"Redirection recorded ({new.redirects})."
    if not new.warned:
        result += f" {remaining} more before the explicit warning."
    return Verdict(new, result, accepted=True, redirection=category)


def _flag_risk(state: LadderState, call: ToolCall) -> Verdict:
    kind = str(call.input.get("kind", "")).strip()
    if kind not in RISK_KINDS:
        kind = SELF_HARM
    return _risk(state, kind, "Risk flagged.", accepted=True)


def _self_harm_signal(state: LadderState, head: str, *, accepted: bool = True) -> Verdict:
    """Any self-harm signal the model gives, whatever tool it used, is taken as risk."""
    return _risk(state, SELF_HARM, head, accepted=accepted)


def _risk(state: LadderState, kind: str, head: str, *, accepted: bool) -> Verdict:
    first_post = not state.crisis_posted
    new = dataclasses.replace(state, at_risk=True, crisis_posted=True)
    result = f"{head} Stay engaged and supportive; this conversation will not be ended by the system. "
    result += ("Crisis resources are being posted to the user." if first_post
               else "Crisis resources were already posted; you may remind the user of them.")
    return Verdict(new, result, accepted=accepted, risk_flagged=kind, post_crisis=first_post)


def _end_conversation(state: LadderState, call: ToolCall, starter: bool = True) -> Verdict:
    reason = str(call.input.get("reason", "")).strip()
    category = _category(call.input.get("category"))
    summary = _text(call.input.get("summary"))
    if category == SELF_HARM:
        return _self_harm_signal(
            state,
            "Refused: a conversation about self-harm is never ended; the member may be at risk. The "
            "thread is now flagged at risk. Answer the user now.",
            accepted=False,
        )
    if reason not in END_REASONS:
        return Verdict(state, "Refused: reason must be 'persistent_abuse' or 'user_requested'. "
                       "Answer the user instead.", accepted=False)
    if state.at_risk:
        return Verdict(
            state,
            "Refused: this user may be at risk of harm, so the conversation must not be ended. Stay "
            "engaged, be supportive and point to the crisis resources. Answer the user now.",
            accepted=False,
        )
    if reason == "user_requested" and not starter:
        return Verdict(
            state,
            "Refused: this thread is shared, and only the member who started it can ask to end it. The "
            "member asking did not start it. Tell them they can leave the thread or start a conversation of "
            "their own, and answer them now.",
            accepted=False,
        )
    if reason == "persistent_abuse":
        if not state.warned:
            return Verdict(
                state,
                f"Refused: the conversation can only be ended for abuse after repeated redirections and "
                f"an explicit warning. Redirections so far: {state.redirects}; no warning yet. Record a "
                "redirection if this message warrants it and answer the user.",
                accepted=False,
            )
        if state.warned_turn >= state.turn:
            return Verdict(
                state,
                "Refused: the warning was posted in this same turn. The user must get a chance to "
                "change course; answer the user now.",
                accepted=False,
            )
    return Verdict(state, "Conversation ended. Write nothing more.", accepted=True,
                   end=EndDecision(reason, category, summary))
