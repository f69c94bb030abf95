"""``/threadguard`` and the end shortcut over signed HTTP: moderator commands answered ephemerally to
moderators (by id or user group) and refused to everyone else; members end their own conversation; an
edit in an ended thread opens a branch in a new thread, linked from the old one."""

from __future__ import annotations

from adapters.slack.translate import thread_ref
from bot.store.review import RedisReviewStore
from bot.types import Author, ThreadStatus
from tests.e2e.slack.conftest import (
    CHANNEL,
    GROUP_MODERATOR,
    HARMFUL,
    MODERATOR,
    MODLOG,
    TEAM,
    drive_to_freeze,
    thread_texts,
)
from tests.integration.dashboard_client import dashboard


async def _command(env, http, payloads, text, user, rid="r"):
    status, _ = await http.command(payloads.command(text, user, env.standin.response_url(rid)))
    assert status == 200
    await env.settle()
    answers = [r for r in env.standin.responses if r["rid"] == rid]
    assert answers, f"no response to {text!r}"
    assert all(a["response_type"] == "ephemeral" for a in answers)
    return answers[-1]


async def test_moderator_commands_are_answered_to_moderators_and_refused_to_others(slack_env, http, payloads):
    root, _ = await drive_to_freeze(slack_env, http.event, payloads)

    for verb in ("cases", "case 1", "reopen 1"):
        refused = await _command(slack_env, http, payloads, verb, "UALICE", rid=f"no-{verb}")
        assert refused["text"] == "Only this workspace's moderators can use that command."
    state = await slack_env.runtime.member_actions.thread_state(thread_ref(TEAM, CHANNEL, root))
    assert state.status is ThreadStatus.ENDED

    listing = await _command(slack_env, http, payloads, "cases", MODERATOR, rid="list")
    assert "*#1* end · persistent_abuse · Weapons of mass harm" in listing["text"]

    shown = await _command(slack_env, http, payloads, "case 1", GROUP_MODERATOR, rid="show")
    assert shown["blocks"][0]["text"]["text"] == "Case #1 · end"
    assert "[WARNING]" in shown["blocks"][-1]["text"]["text"]

    missing = await _command(slack_env, http, payloads, "case 99", MODERATOR, rid="missing")
    assert missing["text"] == "There is no case with that number in this community."

    reopened = await _command(slack_env, http, payloads, "reopen 1", MODERATOR, rid="reopen")
    assert reopened["text"] == "Reopened the thread of case #1 (filed as case #2)."
    reopen_notice = "A moderator has reopened this conversation. You can continue here."
    assert thread_texts(slack_env.standin, root)[-1] == reopen_notice
    [_, action_post] = slack_env.standin.calls_to("chat.postMessage", channel=MODLOG)
    assert action_post["blocks"][0]["text"]["text"] == "Case #2 · reopen of case #1"

    turns = slack_env.model.turns
    await http.event(payloads.message("thanks, what about chemistry?", root))
    await slack_env.settle()
    assert slack_env.model.turns == turns + 1


async def test_members_end_their_conversation_with_the_command_or_the_shortcut(slack_env, http, payloads):
    standin = slack_env.standin
    usage = await _command(slack_env, http, payloads, "end", "UALICE", rid="usage")
    assert "link to a message in the thread" in usage["text"]

    first = payloads.mention("hello there")
    root = first["event"]["ts"]
    await http.event(first)
    await slack_env.settle()
    link = f"<https://example.slack.com/archives/{CHANNEL}/p{root.replace('.', '')}>"
    done = await _command(slack_env, http, payloads, f"end {link}", "UALICE", rid="end")
    assert done["text"].startswith("Done: the conversation is ended")
    assert thread_texts(standin, root)[-1].startswith("This conversation has been ended at your request")
    case = await slack_env.runtime.cases.get(TEAM, 1)
    assert (case.reason, case.ended_by) == ("user_requested", "user:UALICE")
    assert standin.calls_to("chat.postMessage", channel=MODLOG)

    again = await _command(slack_env, http, payloads, f"end {link}", "UALICE", rid="again")
    assert again["text"] == "This conversation has already ended."

    second = payloads.mention("another topic")
    root2 = second["event"]["ts"]
    await http.event(second)
    await slack_env.settle()
    reply = payloads.message("one more thing", root2)
    await http.event(reply)
    await slack_env.settle()
    status, _ = await http.shortcut(payloads.end_shortcut("UALICE", reply["event"]["ts"], root2,
                                                          standin.response_url("shortcut")))
    assert status == 200
    await slack_env.settle()
    assert thread_texts(standin, root2)[-1].startswith("This conversation has been ended at your request")
    assert (await slack_env.runtime.cases.get(TEAM, 2)).thread == thread_ref(TEAM, CHANNEL, root2).key


async def test_an_edit_in_an_ended_thread_branches_into_a_new_thread(slack_env, http, payloads):
    standin = slack_env.standin
    root, sent = await drive_to_freeze(slack_env, http.event, payloads)
    turns = slack_env.model.turns

    # Alice edits her second message (a thread reply) into something harmless.
    edit = payloads.changed(sent[1], "what's the history of chemistry?")
    await http.event(edit)
    await slack_env.settle()

    roots = [c for c in standin.calls_to("chat.postMessage", channel=CHANNEL) if not c.get("thread_ts")]
    assert len(roots) == 1
    new_root = roots[0]["_ts"]
    old_link = f"https://example.slack.com/archives/{CHANNEL}/p{root.replace('.', '')}"
    new_link = f"https://example.slack.com/archives/{CHANNEL}/p{new_root.replace('.', '')}"
    assert f"<{old_link}|an ended conversation>" in roots[0]["text"]
    assert ">what's the history of chemistry?" in roots[0]["text"]
    assert thread_texts(standin, root)[-1] == f"↪️ This conversation continues <{new_link}|in a new thread>."
    [answer] = thread_texts(standin, new_root)
    assert answer.startswith("(demo) Thanks for your message. You said: “what's the history of chemistry?”")
    assert slack_env.model.turns == turns + 1

    new_thread = thread_ref(TEAM, CHANNEL, new_root)
    state = await slack_env.runtime.member_actions.thread_state(new_thread)
    assert state.branch_of == thread_ref(TEAM, CHANNEL, root).key
    assert state.ladder.redirects == 1  # the prefix before the edited message held one redirection
    assert (await slack_env.runtime.cases.get(TEAM, 1)).branches == [new_thread.key]

    # The branch is a live conversation: replies in it are answered.
    await http.event(payloads.message("tell me more", new_root))
    await slack_env.settle()
    assert len(thread_texts(standin, new_root)) == 2

    # The same edit redelivered opens nothing more; an edit in an active thread changes nothing.
    await http.event(edit, retry_num=1)
    live = payloads.mention("hi")
    await http.event(live)
    await slack_env.settle()
    await http.event(payloads.changed(live, "hi again"))
    await slack_env.settle()
    assert len([c for c in standin.calls_to("chat.postMessage", channel=CHANNEL) if not c.get("thread_ts")]) == 1
    assert len(thread_texts(standin, live["event"]["ts"])) == 1
    assert HARMFUL not in roots[0]["text"]


async def test_a_reopen_command_concludes_the_review_and_the_end_no_longer_counts(slack_env, http, payloads):
    await drive_to_freeze(slack_env, http.event, payloads)
    runtime = slack_env.runtime
    await runtime.review.file_appeal(TEAM, 1, Author("UALICE", "alice"), "")
    async with dashboard(runtime, [TEAM], "mod-a") as (record,):
        assert await record.strikes(TEAM, "UALICE") == 1

        reopened = await _command(slack_env, http, payloads, "reopen 1", MODERATOR, rid="reopen")
        assert reopened["text"].startswith("Reopened the thread of case #1")
        assert await record.strikes(TEAM, "UALICE") == 0
        policy = RedisReviewStore(runtime.redis, retention_s=runtime.settings.store.retention_s)
        assert await policy.ends_since(TEAM, "UALICE", 0) == 0
        review = await runtime.review.review(TEAM, 1)
        assert (review.state.value, review.outcome) == ("reviewed", "reopened")
        assert [a.status for a in await runtime.review.appeals_of(TEAM, 1)] == ["reopened"]
