"""A reopen on the dashboard (a process without a Slack connection) reaches the Slack thread once."""

from __future__ import annotations

import asyncio
import logging

from bot.types import Author, Outcome, Reply, ReplyKind, ThreadStatus
from tests.e2e.slack.conftest import TEAM, drive_to_freeze, serve, thread_texts

REOPENED = "A moderator has reopened this conversation. You can continue here."


async def test_a_dashboard_reopen_is_posted_in_the_thread_once(make_env, payloads):
    env = await make_env(notice_poll_interval=0.05)
    await env.bot.start()
    async with serve(env) as http:
        root, _ = await drive_to_freeze(env, http.event, payloads)
    members = env.runtime.member_actions
    # what the dashboard does: the moderation reopens, then queues the notice for the Slack process
    outcome = await env.runtime.moderation.reopen(TEAM, 1, Author("dashboard:mod", "Mod"))
    await env.runtime.notices.queue_notice(outcome, "reopen", 1)
    for _ in range(100):
        if thread_texts(env.standin, root)[-1] == REOPENED:
            break
        await asyncio.sleep(0.02)
    assert thread_texts(env.standin, root)[-1] == REOPENED
    posts = len(env.standin.calls_to("chat.postMessage"))
    await asyncio.sleep(0.3)  # several more polls
    assert len(env.standin.calls_to("chat.postMessage")) == posts
    assert await env.bot.relay_notices() == 0
    assert (await members.thread_state(outcome.thread)).status is ThreadStatus.ACTIVE


async def test_a_refused_post_is_logged_with_the_thread_key_and_the_relay_goes_on(make_env, payloads, caplog):
    env = await make_env(notice_poll_interval=0.05)
    await env.bot.start()
    async with serve(env) as http:
        root, _ = await drive_to_freeze(env, http.event, payloads)
    outcome = await env.runtime.moderation.reopen(TEAM, 1, Author("dashboard:mod", "Mod"))
    env.standin.fail("chat.postMessage", status=200, error="not_in_channel")
    with caplog.at_level(logging.WARNING):
        await env.runtime.notices.queue_notice(outcome, "reopen", 1)
        await env.standin.wait_for(lambda: [c for c in env.standin.attempts("chat.postMessage") if c.status == 200
                                            and c.args.get("thread_ts") == root and c.args.get("text") == REOPENED])
        await asyncio.sleep(0.1)
    assert any(outcome.thread.key in r.getMessage() and "not_in_channel" in r.getMessage() for r in caplog.records)
    assert REOPENED not in thread_texts(env.standin, root)

    note = Outcome(outcome.thread, replies=[Reply(ReplyKind.INFO, "A moderator left a note."),
                                            Reply(ReplyKind.INFO, "only for one member", ephemeral=True)])
    # an action without special handling: its replies are posted
    await env.runtime.notices.queue_notice(note, "note", 1)
    for _ in range(100):
        if thread_texts(env.standin, root)[-1] == "A moderator left a note.":
            break
        await asyncio.sleep(0.02)
    assert thread_texts(env.standin, root)[-1] == "A moderator left a note."
    assert "only for one member" not in thread_texts(env.standin, root)
    assert env.runtime.worker.running
