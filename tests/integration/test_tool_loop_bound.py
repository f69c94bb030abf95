"""A model that keeps calling tools gets at most ``max_tool_rounds`` requests per turn, through the real
anthropic SDK, and every request it gets (the last one too) is one the Messages API accepts."""

from __future__ import annotations

from typing import Any

import pytest

from bot.types import ThreadRef, ThreadStatus
from tests.integration.engine_helpers import claude_runtime, message
from tests.support.anthropic_standin import MAX_CACHE_BREAKPOINTS, reply, text, tool_use

T = ThreadRef("discord", "guild-1", "chan-1", "loop")
RUNAWAY = 12  # the stand-in gives up after this many tool rounds, so a missing bound fails fast


def api_problems(body: dict[str, Any]) -> list[str]:
    """The Messages API's rules for a request, checked here rather than trusted to the stand-in."""
    problems: list[str] = []
    messages = body["messages"]
    if not messages or messages[-1]["role"] != "user":
        problems.append("the conversation must end with a user message")
    if sum(1 for m in messages for b in _blocks(m) if "cache_control" in b) + sum(
            1 for b in body.get("system") or [] if isinstance(b, dict) and "cache_control" in b) + sum(
            1 for t in body.get("tools") or [] if "cache_control" in t) > MAX_CACHE_BREAKPOINTS:
        problems.append("more than four cache breakpoints")
    for i, m in enumerate(messages):
        for b in _blocks(m):
            if b.get("type") == "text" and not str(b.get("text", "")).strip():
                problems.append(f"empty text block in message {i}")
        uses = {b["id"] for b in _blocks(m) if b.get("type") == "tool_use"}
        if uses:
            after = _blocks(messages[i + 1]) if i + 1 < len(messages) else []
            answered = {b.get("tool_use_id") for b in after if b.get("type") == "tool_result"}
            if m["role"] != "assistant" or not uses <= answered:
                problems.append(f"tool_use in message {i} without its tool_result right after")
        if i and m["role"] == messages[i - 1]["role"]:
            problems.append(f"two {m['role']} messages in a row at {i}")
    return problems


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message["content"]
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def keep_calling_tools(name: str, **fields: str):
    rounds = 0

    def respond(_body: dict[str, Any]):
        nonlocal rounds
        rounds += 1
        if rounds > RUNAWAY:
            return reply("giving up")
        return reply(text(f"round {rounds}."), tool_use(name, dict(fields)))

    return respond


@pytest.mark.parametrize("max_rounds", [1, 2, 4])
async def test_a_model_that_never_stops_calling_tools_gets_max_tool_rounds_requests(
        redis_client, anthropic_standin, max_rounds):
    api = anthropic_standin
    api.responder = keep_calling_tools("flag_risk", kind="harm_to_others", note="keeps saying it")
    rt = claude_runtime(redis_client, api.base_url, max_tool_rounds=max_rounds)
    try:
        outcome = await rt.member_actions.handle_message(message(T, "I keep thinking about hurting him"))
        assert api.calls == max_rounds
        for body in api.bodies:
            assert api_problems(body) == []
        # the last request answered every tool call of the round before it
        assert [m["role"] for m in api.last_body["messages"]][-1] == "user"
        assert outcome.status is ThreadStatus.ACTIVE
        answers = [r.text for r in outcome.replies if r.kind.value == "answer"]
        assert outcome.streamed or answers  # the member is answered, not left waiting
        # the next turn's request is valid too: no tool_use of the cut-off round is left dangling
        api.responder = None
        api.enqueue(reply("Here for you."))
        await rt.member_actions.handle_message(message(T, "are you there?"))
        assert api.calls == max_rounds + 1 and api_problems(api.last_body) == []
    finally:
        await rt.aclose()


async def test_the_bound_holds_for_redirections_too_and_they_are_counted_once_per_call(
        redis_client, anthropic_standin):
    api = anthropic_standin
    api.responder = keep_calling_tools("record_redirection", category="harassment", note="again")
    rt = claude_runtime(redis_client, api.base_url, threshold=20, max_tool_rounds=3)
    try:
        await rt.member_actions.handle_message(message(T, "insult them for me"))
        assert api.calls == 3
        assert all(api_problems(body) == [] for body in api.bodies)
        state = await rt.member_actions.thread_state(T)
        assert state.ladder.redirects == 3 and state.status is ThreadStatus.ACTIVE
    finally:
        await rt.aclose()
