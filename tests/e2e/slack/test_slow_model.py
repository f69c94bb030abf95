"""A slow Messages API: the member sees the bot is working, and is told when it gives up.

The real Bolt app over HTTP, the engine on a real Redis, a model that says nothing for a while.
"""

from __future__ import annotations

from adapters.slack.answer import WORKING
from bot.errors import ModelTimedOut
from tests.e2e.slack.conftest import serve, thread_texts


async def test_a_placeholder_shows_while_the_model_is_silent_and_becomes_the_answer(make_env, payloads):
    env = await make_env(model_delay=1.2, engine={"working_notice_seconds": 0.3})
    async with serve(env) as endpoint:
        first = payloads.mention("hi there")
        root = first["event"]["ts"]
        assert (await endpoint.event(first))[0] == 200
        await env.standin.wait_for(lambda: thread_texts(env.standin, root) == [WORKING], timeout=3)
        placeholder = env.standin.calls_to("chat.postMessage", thread_ts=root)[0]["_ts"]
        await env.settle()
    shown = thread_texts(env.standin, root)
    assert len(shown) == 1 and shown[0].startswith("(demo) Thanks for your message")
    # the same message became the answer: one post, no delete
    assert [c["_ts"] for c in env.standin.calls_to("chat.postMessage", thread_ts=root)] == [placeholder]
    assert not env.standin.calls_to("chat.delete")


async def test_a_fast_answer_shows_no_placeholder(make_env, payloads):
    env = await make_env(model_delay=0.0, engine={"working_notice_seconds": 0.5})
    async with serve(env) as endpoint:
        first = payloads.mention("hi there")
        assert (await endpoint.event(first))[0] == 200
        await env.settle()
    assert WORKING not in [c["text"] for c in env.standin.calls_to("chat.postMessage")]


async def test_a_model_past_its_deadline_is_told_to_the_member(make_env, payloads):
    env = await make_env(model_delay=3.0, engine={"working_notice_seconds": 0.2, "model_deadline_seconds": 1.0})
    async with serve(env) as endpoint:
        first = payloads.mention("hi there")
        root = first["event"]["ts"]
        assert (await endpoint.event(first))[0] == 200
        await env.standin.wait_for(lambda: env.standin.calls_to("chat.postEphemeral", thread_ts=root), timeout=5)
        await env.settle()
    told = env.standin.calls_to("chat.postEphemeral", thread_ts=root)
    assert [c["text"] for c in told] == [ModelTimedOut.user_message.replace("&", "&amp;")]
    assert thread_texts(env.standin, root) == []  # the placeholder went with the failed turn
