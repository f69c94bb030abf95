"""A reopen on the dashboard (a process without a Slack connection) reaches the Slack thread once."""

from __future__ import annotations

import asyncio

from bot.types import Author, ThreadStatus
from tests.e2e.slack.conftest import TEAM, drive_to_freeze, serve, thread_texts

REOPENED = "A moderator has reopened this conversation. You can continue here."


async def test_a_dashboard_reopen_is_posted_in_the_thread_once(make_env, payloads):
    env = await make_env(notice_poll_interval=0.05)
    await env.bot.start()
    async with serve(env) as http:
        root, _ = await drive_to_freeze(env, http.event, payloads)
    engine = env.runtime.engine
    # what the dashboard does: the engine reopens, then queues the notice for the Slack process
    outcome = await engine.reopen(TEAM, 1, Author("dashboard:mod", "Mod"))
    await engine.queue_notice(outcome, "reopen", 1)
    for _ in range(100):
        if thread_texts(env.standin, root)[-1] == REOPENED:
            break
        await asyncio.sleep(0.02)
    assert thread_texts(env.standin, root)[-1] == REOPENED
    posts = len(env.standin.calls_to("chat.postMessage"))
    await asyncio.sleep(0.3)  # several more polls
    assert len(env.standin.calls_to("chat.postMessage")) == posts
    assert await env.bot.relay_notices() == 0
    assert (await engine.thread_state(outcome.thread)).status is ThreadStatus.ACTIVE
