"""Every spelling of every category the model may send reaches the case as the taxonomy value.

The tool schema asks for the exact values, but a model writes "Harassment", "violent extremism" or
"weapons-of-mass-harm" often enough; only text outside the taxonomy becomes ``other``.
"""

from __future__ import annotations

import pytest

from bot.policy import ToolCall, _category, apply_tool_call
from bot.types import CATEGORIES, CATEGORY_LABELS, LadderState

# Self-harm is not a ladder category (a risk signal, handled apart); the mapping itself still applies.
LADDER_CATEGORIES = [c for c in CATEGORIES if c != "self_harm"]


def _spellings(value: str) -> list[str]:
    words = value.split("_")
    return [
        value,
        value.upper(),
        value.title(),
        value.capitalize(),
        " ".join(words),
        " ".join(w.capitalize() for w in words),
        "-".join(words),
        "-".join(words).upper(),
        f"  {value}\t",
        f"\n{' '.join(words).upper()} ",
    ]


@pytest.mark.parametrize("value", CATEGORIES)
def test_every_spelling_of_a_taxonomy_value_maps_to_it(value):
    for raw in _spellings(value):
        assert _category(raw) == value, raw


def test_anything_outside_the_taxonomy_is_other():
    for raw in (None, "", "   ", "made up", "harass", "harassments", "harassment!", "violent", "extremism",
                "csam", "weapons of mass", "other stuff", "hate speech", "harass ment", "violentextremism",
                "violent__extremism", "violent - extremism", 0, 42, ["harassment"], {"category": "harassment"}):
        assert _category(raw) == "other", raw


def test_the_taxonomy_is_the_published_one_and_every_value_has_a_label():
    assert set(CATEGORIES) == {"child_sexual_exploitation", "violent_extremism", "weapons_of_mass_harm",
                               "violent_threats", "harassment", "hate", "self_harm", "other"}
    assert set(CATEGORY_LABELS) == set(CATEGORIES)


@pytest.mark.parametrize("value", LADDER_CATEGORIES)
def test_a_redirection_and_an_end_carry_the_mapped_category(value):
    for raw in _spellings(value):
        call = ToolCall("t1", "record_redirection", {"category": raw, "note": ""})
        counted = apply_tool_call(LadderState(), call, 3)
        assert counted.accepted and counted.redirection == value, raw
        ended = apply_tool_call(LadderState(), ToolCall("t2", "end_conversation", {
            "reason": "user_requested", "category": raw, "summary": "asked"}), 3)
        assert ended.accepted and ended.end is not None and ended.end.category == value, raw


def test_a_redirection_or_end_without_a_category_is_filed_as_other():
    counted = apply_tool_call(LadderState(), ToolCall("t1", "record_redirection", {"note": ""}), 3)
    assert counted.redirection == "other"
    ended = apply_tool_call(LadderState(), ToolCall("t2", "end_conversation", {"reason": "user_requested"}), 3)
    assert ended.end is not None and ended.end.category == "other"
