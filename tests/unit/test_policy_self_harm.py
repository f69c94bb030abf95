"""Risk beats abuse: every self-harm signal flags risk, never counts toward the warning, never ends."""

from __future__ import annotations

import dataclasses

import pytest

from bot import notices
from bot.history import ladder_from_prefix
from bot.policy import ToolCall, apply_tool_call
from bot.types import CATEGORIES, Case, Entry, EntryKind, LadderState


def call(name: str, **fields: str) -> ToolCall:
    return ToolCall("toolu_1", name, fields)


@pytest.mark.parametrize("raw", ["self_harm", "Self-Harm", " self harm "])
def test_self_harm_redirection_flags_risk_and_never_counts(raw):
    state = LadderState(turn=0)
    posts = 0
    for turn in range(5):
        state = dataclasses.replace(state, turn=turn)
        v = apply_tool_call(state, call("record_redirection", category=raw, note="n"), 3)
        assert v.accepted and v.redirection is None and not v.post_warning
        assert v.risk_flagged == "self_harm"
        posts += v.post_crisis
        state = v.state
    assert (state.redirects, state.warned, state.at_risk, posts) == (0, False, True, 1)
    assert "flag_risk" in v.result


@pytest.mark.parametrize("reason", ["persistent_abuse", "user_requested", "made up", ""])
def test_end_under_self_harm_is_refused_whatever_the_reason(reason):
    warned = LadderState(redirects=5, warned=True, warned_turn=1, turn=4)
    v = apply_tool_call(warned, call("end_conversation", reason=reason, category="self_harm", summary="s"), 3)
    assert not v.accepted and v.end is None
    assert "self-harm" in v.result and "Refused" in v.result
    # the signal itself flags the thread at risk: later ends are refused too, crisis resources once
    assert v.state.at_risk and v.post_crisis and v.risk_flagged == "self_harm"
    later = dataclasses.replace(v.state, turn=5)
    again = apply_tool_call(later, call("end_conversation", reason="persistent_abuse", category="harassment",
                                        summary="s"), 3)
    assert not again.accepted and again.end is None and not again.post_crisis


def test_abuse_warning_then_self_harm_signal_blocks_the_end():
    state = LadderState(turn=0)
    for turn in range(3):
        state = apply_tool_call(dataclasses.replace(state, turn=turn),
                                call("record_redirection", category="harassment", note="n"), 3).state
    assert state.warned
    state = apply_tool_call(dataclasses.replace(state, turn=3),
                            call("record_redirection", category="self_harm", note="n"), 3).state
    assert state.at_risk and state.redirects == 3
    v = apply_tool_call(dataclasses.replace(state, turn=4),
                        call("end_conversation", reason="persistent_abuse", category="harassment", summary="s"), 3)
    assert not v.accepted and "at risk" in v.result


def test_harm_to_others_flag_blocks_ends_but_threat_redirections_still_count():
    v = apply_tool_call(LadderState(turn=0), call("record_redirection", category="violent_threats", note="n"), 3)
    assert v.redirection == "violent_threats" and v.state.redirects == 1 and not v.state.at_risk
    flagged = apply_tool_call(LadderState(redirects=4, warned=True, warned_turn=0, turn=3),
                              call("flag_risk", kind="harm_to_others", note="n"), 3)
    assert flagged.risk_flagged == "harm_to_others" and flagged.state.at_risk
    v = apply_tool_call(dataclasses.replace(flagged.state, turn=4),
                        call("end_conversation", reason="persistent_abuse", category="violent_threats", summary=""), 3)
    assert not v.accepted


@pytest.mark.parametrize("category", [*CATEGORIES, None, "unknown"])
def test_member_facing_texts_never_name_self_harm(category):
    for text in (notices.warning(category, 3), notices.freeze_notice("persistent_abuse", category),
                 notices.freeze_notice("user_requested", category)):
        assert "self-harm" not in text.lower() and "self harm" not in text.lower()
    assert "violent extremism" in notices.warning("violent_extremism", 3)


def test_branch_prefix_takes_legacy_self_harm_redirections_as_risk():
    prefix = [Entry(EntryKind.REDIRECTION, "n", turn=t, category="self_harm") for t in range(3)]
    prefix.append(Entry(EntryKind.REDIRECTION, "n", turn=3, category="harassment"))
    ladder = ladder_from_prefix(prefix, 4)
    assert (ladder.redirects, ladder.at_risk, ladder.warned) == (1, True, False)


def test_self_harm_cases_carry_a_marker_for_moderators():
    def case(*, category: str, action: str = "end") -> Case:
        return Case(case_id=1, community="c", platform="discord", thread="t", channel="ch", action=action,
                    category=category)

    assert case(category="self_harm").self_harm_marker
    assert case(category="harassment").self_harm_marker is None
    assert case(category="self_harm", action="note").self_harm_marker is None
