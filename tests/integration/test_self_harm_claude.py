"""Self-harm never leads to a warning or an end, whatever the model does: the real anthropic SDK against
the Messages API stand-in, on real Redis."""

from __future__ import annotations

import pytest

from bot.types import EntryKind, ThreadRef, ThreadStatus
from tests.integration.engine_helpers import ALICE, CRISIS, claude_runtime, kinds, message
from tests.support.anthropic_standin import reply, tool_use

T = ThreadRef("discord", "guild-1", "chan-1", "thread-sh")


def redirect(category: str) -> dict:
    return tool_use("record_redirection", {"category": category, "note": "declined"})


def end(reason: str = "persistent_abuse", category: str = "self_harm") -> dict:
    return tool_use("end_conversation", {"reason": reason, "category": category, "summary": "Ending it."})


def tool_results(body: dict) -> list[dict]:
    return [b for b in body["messages"][-1]["content"] if b.get("type") == "tool_result"]


@pytest.fixture
async def runtime(redis_client, anthropic_standin):
    rt = claude_runtime(redis_client, anthropic_standin.base_url)
    yield rt
    await rt.aclose()


async def test_self_harm_redirections_bring_crisis_resources_once_and_never_a_warning(runtime, anthropic_standin):
    api, members = anthropic_standin, runtime.member_actions
    posted = []
    for n in range(4):
        api.enqueue(reply("I can't help with that.", redirect("self_harm")), reply(" I'm here to talk."))
        o = await members.handle_message(message(T, f"message {n}"))
        assert o.status is ThreadStatus.ACTIVE
        assert "warning" not in kinds(o)
        posted += [r.text for r in o.replies if r.kind.value == "crisis"]
        assert "flag_risk" in tool_results(api.last_body)[0]["content"]
    assert posted == [CRISIS]
    state = await members.thread_state(T)
    assert (state.ladder.redirects, state.ladder.warned, state.ladder.at_risk) == (0, False, True)
    # and the model's end, in either reason, is refused there
    for reason in ("persistent_abuse", "user_requested"):
        api.enqueue(reply(end(reason, "harassment")), reply("I'm staying with you."))
        o = await members.handle_message(message(T, "end it"))
        assert o.status is ThreadStatus.ACTIVE and kinds(o) == ["answer"]
        assert "at risk" in tool_results(api.last_body)[0]["content"]
    assert await runtime.cases.count("guild-1") == 0


async def test_an_end_under_self_harm_is_refused_with_a_reason(runtime, anthropic_standin):
    api, members = anthropic_standin, runtime.member_actions
    # an abuse thread warned in an earlier turn: an end would be allowed, but not under self_harm
    for n in range(3):
        api.enqueue(reply("No.", redirect("harassment")), reply(" Let's talk about something else."))
        await members.handle_message(message(T, f"abuse {n}"))
    assert (await members.thread_state(T)).ladder.warned
    api.enqueue(reply(end("persistent_abuse", "self_harm")), reply("I'm not going anywhere."))
    o = await members.handle_message(message(T, "whatever"))
    result = tool_results(api.last_body)[0]
    assert result.get("is_error") is True and "self-harm is never ended" in result["content"]
    assert o.status is ThreadStatus.ACTIVE and kinds(o) == ["answer", "crisis"]
    _, log = await runtime.store.turns.load(T)
    assert [e.category for e in log if e.kind is EntryKind.RISK] == ["self_harm"]
    assert not any(e.kind is EntryKind.END for e in log)


async def test_warned_abuse_thread_then_self_harm_signal_is_never_ended(runtime, anthropic_standin):
    api, members = anthropic_standin, runtime.member_actions
    for n in range(3):
        api.enqueue(reply("No.", redirect("harassment")), reply(" Something else?"))
        await members.handle_message(message(T, f"abuse {n}"))
    api.enqueue(reply("That sounds really hard.", redirect("self_harm")), reply(" I'm here."))
    o = await members.handle_message(message(T, "i want to hurt myself"))
    assert kinds(o) == ["answer", "crisis"]
    api.enqueue(reply(end("persistent_abuse", "harassment")), reply("Still here."))
    o = await members.handle_message(message(T, "more abuse"))
    assert o.status is ThreadStatus.ACTIVE and "at risk" in tool_results(api.last_body)[0]["content"]
    state = await members.thread_state(T)
    assert (state.ladder.redirects, state.ladder.at_risk, state.status) == (3, True, ThreadStatus.ACTIVE)


async def test_member_can_still_end_an_at_risk_thread_themselves(runtime, anthropic_standin):
    api, members = anthropic_standin, runtime.member_actions
    api.enqueue(reply("I'm here.", redirect("self_harm")), reply(" Talk to me."))
    await members.handle_message(message(T, "i feel like hurting myself"))
    # the model ending it on the member's request is refused in an at-risk thread...
    api.enqueue(reply(end("user_requested", "other")), reply("Before we stop: the resources are above."))
    o = await members.handle_message(message(T, "yes, end it"))
    assert o.status is ThreadStatus.ACTIVE
    # ...but the member's own end command is theirs to use
    o = await members.end_by_user(T, ALICE)
    assert o.status is ThreadStatus.ENDED and o.case is not None
    assert (o.case.reason, o.case.at_risk, o.case.self_harm_marker) == ("user_requested", True, None)
    assert "self-harm" not in o.replies[-1].text.lower()
