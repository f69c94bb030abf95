"""The bot's identity in a workspace (``auth.test``), with the real slack-sdk client against the Slack
stand-in: a burst of events before the first answer makes one call, and a failed call is tried again by the
next event."""

from __future__ import annotations

import asyncio

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.identity import IdentityCache
from tests.e2e.slack.conftest import serve, thread_texts
from tests.support.slack_standin import BOT_TOKEN, SlackStandin


async def test_a_burst_before_the_first_answer_asks_once(standin: SlackStandin) -> None:
    cache = IdentityCache(AsyncWebClient(token=BOT_TOKEN, base_url=standin.base_url))
    found = await asyncio.gather(*(cache.get() for _ in range(50)))
    assert {i.user_id for i in found} == {standin.bot_user_id}
    assert len(standin.attempts("auth.test")) == 1
    await cache.get()
    assert len(standin.attempts("auth.test")) == 1


async def test_a_failed_call_is_shared_by_its_waiters_and_tried_again_next_time(standin: SlackStandin) -> None:
    cache = IdentityCache(AsyncWebClient(token=BOT_TOKEN, base_url=standin.base_url, retry_handlers=[]))
    standin.fail("auth.test", status=200, error="internal_error")
    failed = await asyncio.gather(*(cache.get() for _ in range(20)))
    assert {i.user_id for i in failed} == {""} and len(standin.attempts("auth.test")) == 1
    assert (await cache.get()).user_id == standin.bot_user_id
    assert len(standin.attempts("auth.test")) == 2


async def test_a_burst_of_events_through_bolt_makes_one_auth_test(make_env, payloads) -> None:
    """Bolt's authorize step asks ``IdentityCache``: thirty mentions in before ``auth.test`` answers make one
    call, and every mention is answered."""
    env = await make_env()
    standin = env.standin
    standin.delay_for = lambda method, args: 0.5 if method == "auth.test" else 0.0
    async with serve(env) as http:
        # (over 15 channels: posts in one channel are paced at Slack's one a second)
        mentions = [payloads.mention(f"hello {i}", channel=f"CBURST{i % 15}") for i in range(30)]
        statuses = await asyncio.gather(*(http.event(m) for m in mentions))
        assert {status for status, _ in statuses} == {200}
        await env.settle()
    assert len(standin.attempts("auth.test")) == 1
    for mention in mentions:
        event = mention["event"]
        assert thread_texts(standin, event["ts"], channel=event["channel"]), event["text"]
