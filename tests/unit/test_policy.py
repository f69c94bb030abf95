"""The ladder as pure functions: every rule of the design, one decision at a time."""

from __future__ import annotations

import dataclasses

import pytest

from bot.policy import ToolCall, apply_tool_call
from bot.types import LadderState


def call(name: str, **fields: str) -> ToolCall:
    return ToolCall("toolu_1", name, fields)


def redirect(state: LadderState, threshold: int = 3):
    return apply_tool_call(state, call("record_redirection", category="harassment", note="n"), threshold)


def test_redirections_count_up_and_warn_once_at_threshold():
    state = LadderState(turn=0)
    verdicts = []
    for turn in range(5):
        state = dataclasses.replace(state, turn=turn)
        v = redirect(state)
        verdicts.append(v)
        state = v.state
    assert [v.state.redirects for v in verdicts] == [1, 2, 3, 4, 5]
    assert [v.post_warning for v in verdicts] == [False, False, True, False, False]
    assert state.warned and state.warned_turn == 2


def test_abuse_end_refused_before_warning():
    v = apply_tool_call(LadderState(redirects=2, turn=2),
                        call("end_conversation", reason="persistent_abuse", category="harassment", summary="s"), 3)
    assert not v.accepted and v.end is None
    assert "warning" in v.result


def test_abuse_end_refused_in_the_warning_turn_itself():
    state = LadderState(redirects=3, warned=True, warned_turn=4, turn=4)
    v = apply_tool_call(state, call("end_conversation", reason="persistent_abuse", category="other", summary=""), 3)
    assert not v.accepted


def test_abuse_end_accepted_in_a_later_turn():
    state = LadderState(redirects=3, warned=True, warned_turn=4, turn=5)
    v = apply_tool_call(state, call("end_conversation", reason="persistent_abuse",
                                    category="violent_extremism", summary="kept asking"), 3)
    assert v.accepted
    assert v.end is not None and v.end.category == "violent_extremism" and v.end.summary == "kept asking"


@pytest.mark.parametrize("reason", ["persistent_abuse", "user_requested"])
def test_risk_flag_blocks_every_model_initiated_end(reason):
    state = LadderState(redirects=9, warned=True, warned_turn=0, turn=5)
    flagged = apply_tool_call(state, call("flag_risk", kind="self_harm", note="n"), 3)
    assert flagged.accepted and flagged.post_crisis and flagged.state.at_risk
    v = apply_tool_call(flagged.state, call("end_conversation", reason=reason, category="other", summary=""), 3)
    assert not v.accepted and v.end is None
    assert "risk" in v.result


def test_crisis_resources_posted_once():
    first = apply_tool_call(LadderState(), call("flag_risk", kind="harm_to_others", note=""), 3)
    second = apply_tool_call(first.state, call("flag_risk", kind="self_harm", note=""), 3)
    assert first.post_crisis and not second.post_crisis
    assert first.risk_flagged == "harm_to_others"


def test_user_requested_end_needs_no_warning():
    v = apply_tool_call(LadderState(), call("end_conversation", reason="user_requested", category="other",
                                            summary="asked"), 3)
    assert v.accepted and v.end is not None and v.end.reason == "user_requested"


@pytest.mark.parametrize("bad", [{"reason": "bored"}, {}])
def test_unknown_end_reason_refused(bad):
    v = apply_tool_call(LadderState(warned=True, warned_turn=0, turn=3), call("end_conversation", **bad), 3)
    assert not v.accepted


def test_unknown_tool_and_unknown_category():
    v = apply_tool_call(LadderState(), call("delete_server"), 3)
    assert not v.accepted
    v = apply_tool_call(LadderState(), call("record_redirection", category="made up", note=""), 3)
    assert v.accepted and v.redirection == "other"


def test_nothing_after_an_end():
    v = apply_tool_call(LadderState(), call("record_redirection", category="other", note=""), 3, ended=True)
    assert not v.accepted and v.state.redirects == 0
