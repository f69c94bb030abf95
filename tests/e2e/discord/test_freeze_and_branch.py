"""The ladder ends a thread: notice, lock and archive, mod-log; a frozen thread costs no model call;
an edit in an ended thread opens a linked branch."""

from __future__ import annotations

import contextlib
import logging

from adapters.discord.app import DiscordBot
from adapters.discord.translate import thread_ref
from bot.types import ThreadRef, ThreadStatus
from tests.e2e.discord.conftest import HARMFUL, CountingModel, say
from tests.support.discord_standin import DiscordStandin


async def end_by_ladder(standin: DiscordStandin) -> str:
    """Three redirections (the third with the warning), then the end: returns the thread id."""
    opening = await say(standin, standin.general_id, HARMFUL, mention=True)
    thread_id = opening["id"]
    for _ in range(3):
        await say(standin, thread_id, HARMFUL)
    return thread_id


async def test_the_ladder_ends_the_thread_with_notice_lock_archive_and_a_modlog_case(
        bot: DiscordBot, standin: DiscordStandin, model: CountingModel) -> None:
    thread_id = await end_by_ladder(standin)
    texts = standin.bot_texts(thread_id)
    warnings = [t for t in texts if t.startswith("\u26a0\ufe0f Warning")]
    assert len(warnings) == 1 and texts.index(warnings[0]) == 3  # after the third answer
    assert texts[-1].startswith("This conversation has been ended because it kept asking")

    notice_call = standin.find("POST", rf"/channels/{thread_id}/messages")[-1]
    lock = standin.find("PATCH", rf"/channels/{thread_id}")
    assert [c.json for c in lock] == [{"archived": True, "locked": True}]
    assert lock[0].at >= notice_call.at  # the notice first, then lock and archive
    meta = standin.thread(thread_id)["thread_metadata"]
    assert meta["locked"] and meta["archived"]

    [post] = standin.find("POST", rf"/channels/{standin.modlog_id}/messages")
    embed = post.json["embeds"][0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert embed["title"] == "Case #1 · end"
    assert fields["Reason"] == "persistent_abuse"
    assert fields["Category"] == "Weapons of mass harm"
    assert (fields["Redirections"], fields["Warned"], fields["Risk flag"]) == ("3", "yes", "no")
    assert f"https://discord.com/channels/{standin.guild_id}/{thread_id}" in fields["Thread"]
    [(filename, data)] = post.files
    transcript = data.decode()
    assert filename == "case-1.txt"
    assert "[WARNING]" in transcript and "[END]" in transcript and transcript.count("[REDIRECTION]") == 3
    assert post.json["attachments"][0]["filename"] == "case-1.txt"

    case = await bot.commands.cases.get(standin.guild_id, 1)
    assert case.reason == "persistent_abuse" and case.thread.endswith(thread_id)
    calls = model.calls
    with_thread_posts = len(standin.find("POST", rf"/channels/{thread_id}/messages"))
    with contextlib.suppress(PermissionError):  # members cannot post into the locked thread at all
        await standin.post(thread_id, "hello?")
    assert len(standin.find("POST", rf"/channels/{thread_id}/messages")) == with_thread_posts
    assert model.calls == calls


async def test_without_manage_threads_the_thread_stays_frozen_and_costs_no_model_call(
        bot: DiscordBot, standin: DiscordStandin, model: CountingModel, caplog) -> None:
    caplog.set_level(logging.INFO, logger="adapters.discord")
    standin.fail("PATCH", r"/channels/\d+", 403, code=50013)
    thread_id = await end_by_ladder(standin)
    assert any("Manage Threads" in r.getMessage() and thread_id in r.getMessage() for r in caplog.records)
    assert not standin.thread(thread_id)["thread_metadata"]["locked"]
    assert await bot.commands.cases.get(standin.guild_id, 1)
    calls = model.calls

    await say(standin, thread_id, "are you still there?")
    await say(standin, thread_id, "hello??")
    assert model.calls == calls
    reminders = [t for t in standin.bot_texts(thread_id) if t.startswith("This conversation has ended")]
    assert len(reminders) == 1  # at most one per cooldown
    assert not any(r.message.startswith("(demo)") for r in caplog.records)  # no message bodies in logs


async def test_editing_a_message_in_an_ended_thread_opens_a_linked_branch(
        bot: DiscordBot, standin: DiscordStandin, model: CountingModel) -> None:
    opening = await say(standin, standin.general_id, "hi, can you help with chemistry?", mention=True)
    thread_id = opening["id"]
    second = await say(standin, thread_id, "what is a mole?")
    for _ in range(4):
        await say(standin, thread_id, HARMFUL)
    members = bot.conversations.members
    old_ref = (await bot.commands.cases.get(standin.guild_id, 1)).thread
    assert (await members.thread_state(bot_ref(standin, thread_id))).status is ThreadStatus.ENDED

    await standin.edit(second["id"], "what is Avogadro's number?")
    await standin.settle(quiet=0.3)

    [created] = standin.find("POST", rf"/channels/{standin.general_id}/threads")
    assert created.status == 200
    [branch_id] = [t["id"] for t in standin.threads() if t["id"] != thread_id]
    branch_texts = standin.bot_texts(branch_id)
    assert f"/{thread_id}" in branch_texts[0]  # the branch names where it came from
    assert "Avogadro" in branch_texts[-1] and branch_texts[-1].startswith("(demo)")
    assert standin.find("PUT", rf"/channels/{branch_id}/thread-members/{standin.alice['id']}")
    link = standin.bot_texts(thread_id)[-1]
    assert link == f"This conversation continues in a new thread: https://discord.com/channels/{standin.guild_id}/{branch_id}"
    meta = standin.thread(thread_id)["thread_metadata"]
    assert meta["archived"] and meta["locked"]  # archived again after the link

    case = await bot.commands.cases.get(standin.guild_id, 1)
    assert case.thread == old_ref and case.branches == [bot_ref(standin, branch_id).key]
    branch_state = await members.thread_state(bot_ref(standin, branch_id))
    assert branch_state.status is ThreadStatus.ACTIVE and branch_state.branch_of == old_ref
    assert branch_state.ladder.redirects == 0  # the prefix before the edited message held no redirections


def bot_ref(standin: DiscordStandin, thread_id: str) -> ThreadRef:
    return thread_ref(int(standin.guild_id), int(standin.general_id), int(thread_id))
