"""Signed HTTP events through the real Bolt app and slack-sdk client: the whole ladder to a frozen thread,
the notice, the mod-log post with its transcript, the case; then the frozen thread's later posts."""

from __future__ import annotations

import asyncio

from adapters.slack.translate import thread_ref
from bot.types import ThreadStatus
from tests.e2e.slack.conftest import CHANNEL, HARMFUL, MODLOG, TEAM, drive_to_freeze, serve, thread_texts


async def test_whole_ladder_freezes_the_thread_files_and_posts_the_case(slack_env, http, payloads):
    standin = slack_env.standin
    root, _ = await drive_to_freeze(slack_env, http.event, payloads)

    shown = thread_texts(standin, root)
    assert len(shown) == 5
    assert all(t.startswith("(demo) I can't help with that") for t in shown[:3])
    assert shown[3].startswith("⚠️ Warning: this conversation has asked 3 times")
    assert shown[4].startswith("This conversation has been ended because")
    assert "edit one of your earlier messages" in shown[4]
    assert slack_env.model.turns == 4

    case = await slack_env.runtime.cases.get(TEAM, 1)
    assert (case.reason, case.category, case.redirect_count, case.warned) == (
        "persistent_abuse", "weapons_of_mass_harm", 3, True)
    link = f"https://example.slack.com/archives/{CHANNEL}/p{root.replace('.', '')}"
    assert case.jump_url == link
    state = await slack_env.runtime.member_actions.thread_state(thread_ref(TEAM, CHANNEL, root))
    assert state.status is ThreadStatus.ENDED

    [post] = standin.calls_to("chat.postMessage", channel=MODLOG)
    blocks = post["blocks"]
    assert blocks[0]["text"]["text"] == "Case #1 · end"
    fields = {f["text"].split("\n")[0].strip("*"): f["text"].split("\n", 1)[1] for f in blocks[1]["fields"]}
    assert fields["Reason"] == "persistent_abuse"
    assert fields["Category"] == "Weapons of mass harm"
    assert (fields["Redirections"], fields["Warned"], fields["Risk flag"]) == ("3", "yes", "no")
    assert fields["Thread"] == f"<{link}|open thread>"
    assert fields["Participants"] == "<@UALICE>"
    [done] = standin.calls_to("files.completeUploadExternal", channel_id=MODLOG, thread_ts=post["_ts"])
    [transcript] = standin.uploads.values()
    assert b"Case #1 (end)" in transcript
    assert b"[WARNING]" in transcript
    assert HARMFUL.encode() in transcript
    assert "Transcript of case #1" in done["files"]
    assert standin.calls_to("files.getUploadURLExternal", filename="case-1.txt")


async def test_later_posts_get_an_ephemeral_notice_and_no_model_call(slack_env, http, payloads):
    standin = slack_env.standin
    root, _ = await drive_to_freeze(slack_env, http.event, payloads)
    posted_before = len(standin.calls_to("chat.postMessage"))

    await http.event(payloads.message("hello? are you there", root))
    await http.event(payloads.message("please answer", root, user="UBOB"))
    await http.event(payloads.mention("answer me", thread_ts=root))
    await slack_env.settle()

    notices = standin.calls_to("chat.postEphemeral", channel=CHANNEL, thread_ts=root)
    assert [n["user"] for n in notices] == ["UALICE", "UBOB", "UALICE"]
    assert all(n["text"].startswith("This conversation has ended, so I won't answer here.") for n in notices)
    assert slack_env.model.turns == 4
    assert len(standin.calls_to("chat.postMessage")) == posted_before
    assert len(await slack_env.runtime.cases.list(TEAM)) == 1


async def test_events_are_acknowledged_before_the_model_answers(make_env, payloads):
    env = await make_env(model_delay=1.5)
    async with serve(env) as endpoint:
        first = payloads.mention("hi there")
        status, _ = await endpoint.event(first)
        assert status == 200
        assert endpoint.timings[0] < 0.5
        assert not env.standin.calls_to("chat.postMessage")
        await env.standin.wait_for(lambda: env.standin.calls_to("chat.postMessage"), timeout=5)
        await env.settle()
    assert thread_texts(env.standin, first["event"]["ts"])[0].startswith("(demo) Thanks for your message")


async def test_a_redelivered_event_is_answered_once(make_env, payloads):
    env = await make_env(model_delay=0.3)
    async with serve(env) as endpoint:
        event = payloads.mention("hello")
        root = event["event"]["ts"]
        assert (await endpoint.event(event))[0] == 200
        # Slack retries while the first delivery is still being processed, and once more later.
        assert (await endpoint.event(event, retry_num=1))[0] == 200
        await env.settle()
        assert (await endpoint.event(event, retry_num=2))[0] == 200
        await env.settle()
        # A new message (a new event_id) in the same thread is still answered.
        await endpoint.event(payloads.message("and again", root))
        await env.settle()
    assert env.model.turns == 2
    assert len(thread_texts(env.standin, root)) == 2


async def test_bad_or_stale_signatures_get_401_and_change_nothing(slack_env, http, payloads):
    event = payloads.mention("hello")
    root = event["event"]["ts"]
    assert (await http.event(event, secret="not-the-secret"))[0] == 401
    assert (await http.event(event, signature="v0=deadbeef"))[0] == 401
    stale = int(asyncio.get_running_loop().time())  # monotonic seconds: far in the past as a Unix time
    assert (await http.event(event, timestamp=stale))[0] == 401
    assert (await http.event(event, timestamp=1_000_000_000))[0] == 401
    await slack_env.settle()
    assert slack_env.model.turns == 0
    assert not slack_env.standin.calls_to("chat.postMessage")
    state = await slack_env.runtime.member_actions.thread_state(thread_ref(TEAM, CHANNEL, root))
    assert state.ladder.turn == 0
    # The same event, correctly signed, is then processed normally.
    assert (await http.event(event))[0] == 200
    await slack_env.settle()
    assert slack_env.model.turns == 1


async def test_url_verification_answers_the_challenge(http):
    status, text = await http.event({"token": "legacy", "challenge": "c-123", "type": "url_verification"})
    assert status == 200
    assert "c-123" in text


async def test_only_addressed_messages_in_allowed_channels_are_answered(make_env, payloads):
    from tests.e2e.slack.conftest import community

    env = await make_env(community_config=community(allowed_channels=(CHANNEL,)))
    bolt = env.bot.app

    async def send(body):
        from slack_bolt.request.async_request import AsyncBoltRequest

        resp = await bolt.async_dispatch(AsyncBoltRequest(body=body, mode="socket_mode"))
        assert resp.status == 200

    await send(payloads.message("a top-level chat message", None))
    await send(payloads.message("a reply in someone else's thread", payloads.ts()))
    await send(payloads.message("from another bot", None, bot_id="B0OTHER", user="UOTHERBOT"))
    await send(payloads.mention("hi from a bot", user="UBOT"))
    await send(payloads.mention("hi in a closed channel", channel="COTHER"))
    await env.settle()
    assert env.model.turns == 0
    assert not env.standin.calls_to("chat.postMessage")

    dm = payloads.message("hello in a DM", None, channel="DALICE", channel_type="im")
    await send(dm)
    await env.settle()
    assert env.model.turns == 1
    assert thread_texts(env.standin, dm["event"]["ts"], channel="DALICE")[0].startswith("(demo) Thanks")
