"""The whole ladder through the real anthropic SDK against a local Messages API stand-in, on real Redis."""

from __future__ import annotations

import pytest

from bot.types import EntryKind, ThreadRef, ThreadStatus
from tests.integration.engine_helpers import ALICE, CRISIS, claude_runtime, kinds, message
from tests.support.anthropic_standin import http_error, reply, stream_error, tool_use

T = ThreadRef("discord", "guild-1", "chan-1", "thread-1")


def redirect(category: str = "violent_extremism") -> dict:
    return tool_use("record_redirection", {"category": category, "note": "declined"})


def end(reason: str = "persistent_abuse") -> dict:
    return tool_use("end_conversation", {"reason": reason, "category": "violent_extremism",
                                         "summary": "Kept asking for attack help."})


def tool_results(body: dict) -> list[dict]:
    last = body["messages"][-1]
    return [b for b in last["content"] if b.get("type") == "tool_result"]


@pytest.fixture
async def runtime(redis_client, anthropic_standin):
    rt = claude_runtime(redis_client, anthropic_standin.base_url)
    yield rt
    await rt.aclose()


async def test_whole_ladder_premature_end_refused_warning_once_then_end(runtime, anthropic_standin):
    members, api = runtime.member_actions, anthropic_standin
    # turn 0: a redirection
    api.enqueue(reply("I can't help with that.", redirect()), reply(" Want to talk about history instead?"))
    o = await members.handle_message(message(T, "help me plan an attack"))
    assert kinds(o) == ["answer"] and o.status is ThreadStatus.ACTIVE
    assert "I can't help with that.\n\nWant to talk" in o.replies[0].text
    # turn 1: a redirection plus a premature end: the end is refused with a tool result saying why
    api.enqueue(reply("No.", redirect(), end()), reply("Let's keep talking about something else."))
    o = await members.handle_message(message(T, "just tell me"))
    results = tool_results(api.last_body)
    assert [r.get("is_error", False) for r in results] == [False, True]
    assert "Refused" in results[1]["content"] and "warning" in results[1]["content"]
    assert o.status is ThreadStatus.ACTIVE and kinds(o) == ["answer"]
    # turn 2: the third redirection reaches the threshold: the warning, once; an end in the same turn is refused
    api.enqueue(reply("Still no.", redirect(), end()), reply("I won't help with that."))
    o = await members.handle_message(message(T, "come on"))
    assert kinds(o) == ["answer", "warning"]
    assert "may end this conversation" in o.replies[1].text and "violent extremism" in o.replies[1].text
    assert "same turn" in tool_results(api.last_body)[1]["content"]
    state = await members.thread_state(T)
    assert (state.ladder.redirects, state.ladder.warned, state.status) == (3, True, ThreadStatus.ACTIVE)
    # turn 3: a fourth redirection does not warn again
    api.enqueue(reply("No.", redirect()), reply("Anything else?"))
    o = await members.handle_message(message(T, "again"))
    assert kinds(o) == ["answer"]
    # the model sees the ladder state in the engine's note, not in user text
    note = api.last_body["messages"][-3]["content"][-1]["text"]
    assert note.startswith("<thread_state>") and "redirections=3" in note and "warning_posted=yes" in note
    # turn 4: the end after the warning is accepted; the model is not called again after it
    calls = api.calls
    api.enqueue(reply(end()))
    o = await members.handle_message(message(T, "tell me how to build it"))
    assert api.calls == calls + 1
    assert o.status is ThreadStatus.ENDED and kinds(o) == ["freeze_notice"]
    assert "edit one of your earlier messages" in o.replies[0].text
    case = o.case
    assert case is not None and case.case_id == 1
    assert (case.reason, case.category, case.redirect_count, case.warned, case.at_risk) == (
        "persistent_abuse", "violent_extremism", 4, True, False)
    assert [p.id for p in case.participants] == [ALICE.id]
    timeline = [e.kind for e in case.ladder_timeline]
    assert timeline.count(EntryKind.WARNING) == 1 and timeline.count(EntryKind.REDIRECTION) == 4
    assert timeline[-1] is EntryKind.END
    # a message into the frozen thread costs no model call
    o = await members.handle_message(message(T, "hello?"))
    assert api.calls == calls + 1 and o.frozen and kinds(o) == ["frozen_reminder"] and o.replies[0].ephemeral
    assert await runtime.cases.count("guild-1") == 1


async def test_tool_contract_caching_and_streaming_on_the_wire(runtime, anthropic_standin):
    api = anthropic_standin
    api.enqueue(reply("Hello there, nice to meet you."), reply("Second answer."))
    deltas: list[str] = []

    async def sink(delta: str) -> None:
        deltas.append(delta)

    o = await runtime.member_actions.handle_message(message(T, "hi"), sink)
    assert o.streamed and kinds(o) == [] and "".join(deltas) == "Hello there, nice to meet you."
    assert len(deltas) > 1
    o = await runtime.member_actions.handle_message(message(T, "and again"), sink)
    body = api.last_body
    assert body["stream"] is True
    tools = {t["name"]: t["input_schema"] for t in body["tools"]}
    assert set(tools) == {"record_redirection", "end_conversation", "flag_risk"}
    assert set(tools["record_redirection"]["properties"]) == {"category", "note"}
    assert set(tools["end_conversation"]["properties"]) == {"reason", "category", "summary"}
    assert tools["end_conversation"]["properties"]["reason"]["enum"] == ["persistent_abuse", "user_requested"]
    assert set(tools["flag_risk"]["properties"]) == {"kind", "note"}
    assert tools["flag_risk"]["properties"]["kind"]["enum"] == ["self_harm", "harm_to_others"]
    # cache breakpoints: system, the last tool, and the end of the earlier history
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][1]["role"] == "assistant"
    assert body["messages"][1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in body["messages"][-1]["content"][-1]


async def test_risk_flag_blocks_every_model_end_and_posts_resources_once(runtime, anthropic_standin):
    api, members = anthropic_standin, runtime.member_actions
    api.enqueue(reply("I'm here with you.", tool_use("flag_risk", {"kind": "self_harm", "note": "n"})),
                reply(" Can you tell me more?"))
    o = await members.handle_message(message(T, "I don't want to be here any more"))
    assert kinds(o) == ["answer", "crisis"] and o.replies[1].text == CRISIS
    for reason in ("user_requested", "persistent_abuse"):
        api.enqueue(reply(tool_use("flag_risk", {"kind": "self_harm", "note": "again"}), end(reason)),
                    reply("I'm staying right here."))
        o = await members.handle_message(message(T, "just end this"))
        assert o.status is ThreadStatus.ACTIVE and kinds(o) == ["answer"]  # no second crisis post
        assert "at risk" in tool_results(api.last_body)[1]["content"]
    state = await members.thread_state(T)
    assert state.ladder.at_risk and state.status is ThreadStatus.ACTIVE
    # the member's own end command still works
    o = await members.end_by_user(T, ALICE)
    assert o.status is ThreadStatus.ENDED and o.case.reason == "user_requested" and o.case.at_risk


async def test_user_requested_end(runtime, anthropic_standin):
    api, members = anthropic_standin, runtime.member_actions
    api.enqueue(reply("Ending is permanent for this thread. Are you sure?"))
    o = await members.handle_message(message(T, "please end this conversation"))
    assert o.status is ThreadStatus.ACTIVE
    api.enqueue(reply(tool_use("end_conversation", {"reason": "user_requested", "category": "other",
                                                     "summary": "User asked to end."})))
    o = await members.handle_message(message(T, "yes, I'm sure"))
    assert o.status is ThreadStatus.ENDED and kinds(o) == ["freeze_notice"] and "at your request" in o.replies[0].text
    assert o.case.reason == "user_requested" and o.case.ended_by == "model"


async def test_refusal_stop_counts_as_redirection_and_leaves_the_history(runtime, anthropic_standin):
    api, members = anthropic_standin, runtime.member_actions
    api.enqueue(reply("Hi!"))
    await members.handle_message(message(T, "hello"))
    api.enqueue(reply("Here is how", stop_reason="refusal"))
    o = await members.handle_message(message(T, "REFUSED-REQUEST-TEXT"))
    assert kinds(o) == ["answer"] and "can't continue" in o.replies[0].text and not o.streamed
    state = await members.thread_state(T)
    assert state.ladder.redirects == 1
    api.enqueue(reply("Sure."))
    await members.handle_message(message(T, "tell me a joke"))
    sent = str(api.last_body["messages"])
    assert "REFUSED-REQUEST-TEXT" not in sent and "Here is how" not in sent and "hello" in sent
    _, log = await runtime.store.turns.load(T)
    assert any(e.kind is EntryKind.REFUSAL for e in log)  # moderators still see it
    assert any(e.text == "REFUSED-REQUEST-TEXT" and not e.in_history for e in log)


async def test_rate_limit_and_overload_are_retried(runtime, anthropic_standin):
    api = anthropic_standin
    api.enqueue(http_error(429, retry_after_ms=10), http_error(529, retry_after_ms=10), reply("Made it."))
    o = await runtime.member_actions.handle_message(message(T, "hi"))
    assert kinds(o) == ["answer"] and o.replies[0].text == "Made it."
    assert api.calls == 3


@pytest.mark.parametrize("failure", ["overloaded", "mid_stream", "after_tool_call", "bad_request"])
async def test_failing_api_leaves_the_thread_consistent_and_tells_the_user(runtime, anthropic_standin, failure):
    api, members = anthropic_standin, runtime.member_actions
    api.enqueue(reply("Welcome."))
    await members.handle_message(message(T, "hello"))
    before_state = await members.thread_state(T)
    _, before_log = await runtime.store.turns.load(T)
    if failure == "overloaded":
        api.enqueue(*(http_error(529, retry_after_ms=1) for _ in range(3)))
    elif failure == "mid_stream":
        api.enqueue(stream_error("I was say"))
    elif failure == "after_tool_call":
        api.enqueue(reply("No.", redirect()), *(http_error(500, retry_after_ms=1) for _ in range(3)))
    else:
        api.enqueue(http_error(400))
    failing = message(T, "second message")
    o = await members.handle_message(failing)
    assert kinds(o) == ["error"] and o.replies[0].ephemeral
    assert "Traceback" not in o.replies[0].text and "529" not in o.replies[0].text
    after_state = await members.thread_state(T)
    _, after_log = await runtime.store.turns.load(T)
    assert after_state == before_state and len(after_log) == len(before_log)
    # the thread is not left locked, and the same event can be delivered again and answered
    api.enqueue(reply("Back again."))
    o = await members.handle_message(failing)
    assert kinds(o) == ["answer"] and o.replies[0].text == "Back again."


async def test_logs_carry_thread_keys_but_no_message_text_or_secrets(runtime, anthropic_standin, caplog):
    import logging

    caplog.set_level(logging.INFO)
    api = anthropic_standin
    api.enqueue(reply("No.", redirect()), reply("SECRET-ANSWER-TEXT"), http_error(400))
    await runtime.member_actions.handle_message(message(T, "SECRET-USER-TEXT one"))
    await runtime.member_actions.handle_message(message(T, "SECRET-USER-TEXT two"))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert T.key in logged
    assert "SECRET-USER-TEXT" not in logged and "SECRET-ANSWER-TEXT" not in logged
    assert "test-key" not in logged
    assert "test-key" not in repr(runtime.settings.anthropic)


async def test_text_of_two_model_rounds_is_one_paragraph_apart_on_screen_too(runtime, anthropic_standin):
    shown: list[str] = []

    async def sink(delta: str) -> None:
        shown.append(delta)

    anthropic_standin.enqueue(reply("Is there anything else?", redirect()), reply("Understood."))
    o = await runtime.member_actions.handle_message(message(T, "stop"), sink)
    assert o.streamed and "".join(shown) == "Is there anything else?\n\nUnderstood."
    _, log = await runtime.store.turns.load(T)
    assert [e.text for e in log if e.kind is EntryKind.ASSISTANT] == ["Is there anything else?\n\nUnderstood."]
