"""Slack failing: 429 with Retry-After and 5xx answers are retried by the slack-sdk retry handlers; what
still fails is logged and the rest of the outcome goes on; no case is ever lost."""

from __future__ import annotations

import logging

from adapters.slack.translate import thread_ref
from tests.e2e.slack.conftest import CHANNEL, HARMFUL, MODERATOR, MODLOG, TEAM, drive_to_freeze, thread_texts


async def test_rate_limits_and_server_errors_are_retried(slack_env, http, payloads):
    standin = slack_env.standin
    standin.fail("chat.postMessage", status=429, retry_after=0, error="ratelimited")
    first = payloads.mention("hello")
    await http.event(first)
    await slack_env.settle()
    assert [c.status for c in standin.attempts("chat.postMessage")] == [429, 200]
    [answer] = thread_texts(standin, first["event"]["ts"])
    assert answer.startswith("(demo) Thanks for your message. You said: “hello”")


async def test_failed_posts_never_lose_the_case(slack_env, http, payloads, caplog):
    standin = slack_env.standin
    first = payloads.mention(HARMFUL)
    root = first["event"]["ts"]
    await http.event(first)
    await slack_env.settle()
    for _ in range(2):
        await http.event(payloads.message(HARMFUL, root))
        await slack_env.settle()
    # Slack keeps failing for the freeze notice (beyond the retries) and for the mod-log post.
    standin.fail("chat.postMessage", status=500, times=3)
    standin.fail("chat.postMessage", status=503, times=3)
    caplog.set_level(logging.WARNING)
    await http.event(payloads.message(HARMFUL, root))
    await slack_env.settle()

    assert len([c for c in standin.attempts("chat.postMessage") if c.status >= 500]) == 6
    case = await slack_env.runtime.cases.get(TEAM, 1)
    assert case.reason == "persistent_abuse"
    assert not standin.calls_to("chat.postMessage", channel=MODLOG)
    assert "mod-log case T0TEAM#1: not posted; the case stays filed" in caplog.text
    assert HARMFUL not in caplog.text  # message bodies stay out of logs above DEBUG
    assert "xoxb" not in caplog.text

    # The thread is frozen all the same, and moderators still find the case.
    await http.event(payloads.message("hello?", root))
    await slack_env.settle()
    assert standin.calls_to("chat.postEphemeral", thread_ts=root)
    status, _ = await http.command(payloads.command("case 1", MODERATOR, standin.response_url("c")))
    assert status == 200
    await slack_env.settle()
    assert standin.responses[-1]["blocks"][0]["text"]["text"] == "Case #1 · end"


async def test_a_deleted_thread_or_channel_is_handled_and_the_case_kept(slack_env, http, payloads):
    standin = slack_env.standin
    first = payloads.mention(HARMFUL)
    root = first["event"]["ts"]
    await http.event(first)
    await slack_env.settle()
    for _ in range(2):
        await http.event(payloads.message(HARMFUL, root))
        await slack_env.settle()
    standin.deleted_channels.add(CHANNEL)  # the channel (and the thread) went away mid-conversation
    await http.event(payloads.message(HARMFUL, root))
    await slack_env.settle()
    assert (await slack_env.runtime.cases.get(TEAM, 1)).reason == "persistent_abuse"
    [post] = standin.calls_to("chat.postMessage", channel=MODLOG)
    assert post["blocks"][0]["text"]["text"] == "Case #1 · end"

    # Reopening a case whose thread is gone still reopens it, and says the post failed.
    await http.command(payloads.command("reopen 1", MODERATOR, standin.response_url("re"), channel="CMODS"))
    await slack_env.settle()
    assert standin.responses[-1]["text"].startswith("Reopened the thread of case #1 (filed as case #2).")
    assert "couldn't post in the thread" in standin.responses[-1]["text"]


async def test_events_for_unknown_threads_change_nothing(slack_env, http, payloads):
    standin = slack_env.standin
    stranger = payloads.message("a reply in a thread I never joined", payloads.ts())
    await http.event(stranger)
    await http.event(payloads.changed(stranger, "edited in a thread I never joined"))
    await http.event(payloads.message("", None, subtype="message_deleted", user=None))
    await slack_env.settle()
    assert slack_env.model.turns == 0
    assert not standin.calls_to("chat.postMessage")
    assert not standin.calls_to("chat.postEphemeral")
    state = await slack_env.runtime.member_actions.thread_state(
        thread_ref(TEAM, CHANNEL, stranger["event"]["thread_ts"]))
    assert state.ladder.turn == 0


async def test_a_refused_upload_falls_back_to_a_transcript_snippet(slack_env, http, payloads):
    standin = slack_env.standin
    standin.missing_scope.add("files.getUploadURLExternal")
    await drive_to_freeze(slack_env, http.event, payloads)
    [post] = standin.calls_to("chat.postMessage", channel=MODLOG, thread_ts=None)
    snippets = standin.calls_to("chat.postMessage", channel=MODLOG, thread_ts=post["_ts"])
    assert snippets
    assert snippets[0]["text"].startswith("```Case #1 (end)")


async def test_long_answers_are_split_cleanly(make_env, payloads):
    from tests.e2e.slack.conftest import serve

    env = await make_env(message_limit=200)
    words = " ".join(f"word{i}" for i in range(40))
    async with serve(env) as endpoint:
        first = payloads.mention(words)
        await endpoint.event(first)
        await env.settle()
    shown = thread_texts(env.standin, first["event"]["ts"])
    assert len(shown) == 2
    assert all(len(t) <= 200 for t in shown)
    assert " ".join(shown) == f"(demo) Thanks for your message. You said: \u201c{words[:200]}\u201d"
    assert shown[1].startswith("word")
