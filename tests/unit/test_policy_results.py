"""What the model is told after each tool call, word for word, and what a refusal leaves unchanged.

The tool results are the engine's half of the tool contract: the model reads them and acts on them, so a
refusal that loses its reason, or an accepted end that does not say "write nothing more", is a bug.
"""

from __future__ import annotations

import dataclasses

import pytest

from bot.policy import ToolCall, apply_tool_call
from bot.types import LadderState

WARNED = LadderState(redirects=3, warned=True, warned_turn=1, turn=2)


def call(name: str, **fields: str) -> ToolCall:
    return ToolCall("toolu_1", name, dict(fields))


def end(reason: str = "persistent_abuse", **fields: str) -> ToolCall:
    return call("end_conversation", **{"reason": reason, "category": "harassment", "summary": "s", **fields})


def test_redirections_tell_the_model_how_many_remain_then_about_the_warning_then_only_the_count():
    state = LadderState()
    results = []
    for turn in range(4):
        v = apply_tool_call(dataclasses.replace(state, turn=turn), call("record_redirection", category="hate"), 3)
        assert v.accepted is True
        results.append(v.result)
        state = v.state
    assert results == [
        "Redirection recorded (1). 2 more before the explicit warning.",
        "Redirection recorded (2). 1 more before the explicit warning.",
        "Redirection recorded (3). This reached the community's threshold: the system will now post an explicit "
        "warning that the conversation may be ended. Do not end the conversation in this turn; answer the "
        "user briefly.",
        "Redirection recorded (4).",
    ]


def test_a_risk_flag_says_the_conversation_stays_open_and_whether_resources_went_out():
    first = apply_tool_call(LadderState(), call("flag_risk", kind="harm_to_others", note="n"), 3)
    again = apply_tool_call(first.state, call("flag_risk", kind="harm_to_others", note="n"), 3)
    stay = "Risk flagged. Stay engaged and supportive; this conversation will not be ended by the system. "
    assert first.result == stay + "Crisis resources are being posted to the user."
    assert again.result == stay + "Crisis resources were already posted; you may remind the user of them."
    assert first.accepted is True and again.accepted is True and again.risk_flagged == "harm_to_others"


@pytest.mark.parametrize("kind", ["", "   ", "danger", None], ids=["empty", "blank", "unknown", "missing"])
def test_a_risk_flag_of_unknown_kind_is_treated_as_self_harm(kind):
    fields = {} if kind is None else {"kind": kind}
    v = apply_tool_call(LadderState(), ToolCall("t", "flag_risk", fields), 3)
    assert v.risk_flagged == "self_harm" and v.state.at_risk and v.post_crisis


REFUSALS = [
    (LadderState(), end("bored"),
     "Refused: reason must be 'persistent_abuse' or 'user_requested'. Answer the user instead."),
    (LadderState(), call("end_conversation", category="harassment", summary="s"),
     "Refused: reason must be 'persistent_abuse' or 'user_requested'. Answer the user instead."),
    (dataclasses.replace(WARNED, at_risk=True), end("user_requested"),
     "Refused: this user may be at risk of harm, so the conversation must not be ended. Stay engaged, be "
     "supportive and point to the crisis resources. Answer the user now."),
    (LadderState(redirects=2, turn=4), end(),
     "Refused: the conversation can only be ended for abuse after repeated redirections and an explicit "
     "warning. Redirections so far: 2; no warning yet. Record a redirection if this message warrants it and "
     "answer the user."),
    (dataclasses.replace(WARNED, warned_turn=2), end(),
     "Refused: the warning was posted in this same turn. The user must get a chance to change course; "
     "answer the user now."),
    (LadderState(), call("delete_server"), "Unknown tool 'delete_server'. Answer the user in plain text instead."),
]


@pytest.mark.parametrize(("state", "tool", "result"), REFUSALS)
def test_every_refusal_says_why_and_changes_nothing(state, tool, result):
    v = apply_tool_call(state, tool, 3)
    assert v.result == result
    assert v.accepted is False and v.end is None and v.state == state
    assert not (v.redirection or v.post_warning or v.risk_flagged or v.post_crisis)


def test_after_an_end_every_call_is_refused_and_the_model_told_to_stop():
    for tool in (call("record_redirection", category="hate"), call("flag_risk", kind="self_harm"), end()):
        v = apply_tool_call(WARNED, tool, 3, ended=True)
        assert v.result == "The conversation has already ended. Write nothing more."
        assert v.accepted is False and v.state == WARNED and v.end is None and not v.post_crisis


def test_an_accepted_end_tells_the_model_to_write_nothing_and_keeps_the_summary_to_500_characters():
    v = apply_tool_call(WARNED, end(summary="  " + "s" * 600 + "  "), 3)
    assert v.result == "Conversation ended. Write nothing more." and v.accepted is True
    assert v.end is not None and v.end.summary == "s" * 500 and v.end.reason == "persistent_abuse"
    exact = apply_tool_call(WARNED, end(summary="t" * 500), 3)
    assert exact.end is not None and exact.end.summary == "t" * 500
    bare = apply_tool_call(WARNED, call("end_conversation", reason=" user_requested ", category="hate"), 3)
    assert bare.end is not None and bare.end.summary == "" and bare.end.reason == "user_requested"
