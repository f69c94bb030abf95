"""The opening message (the mention in the channel that opened the thread) is part of the conversation:
editing it after the end branches from it, as "Edit and branch" on it does. A bare mention opens nothing
and gets a short answer on how to use the bot."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.discord.app import DiscordBot
from adapters.discord.branching import COMMAND_NAME
from adapters.discord.openings import HOW_TO
from adapters.discord.translate import thread_ref
from bot.types import ThreadRef, ThreadStatus
from tests.e2e.discord.conftest import HARMFUL, CountingModel, say
from tests.support.discord_standin import DiscordStandin


def ref(standin: DiscordStandin, thread_id: str) -> ThreadRef:
    return thread_ref(int(standin.guild_id), int(standin.general_id), int(thread_id))


async def ended_from_an_opening(standin: DiscordStandin) -> dict[str, Any]:
    opening = await say(standin, standin.general_id, "hi, can you help with chemistry?", mention=True)
    for _ in range(4):
        await say(standin, opening["id"], HARMFUL)
    assert standin.thread(opening["id"])["thread_metadata"]["locked"]
    return opening


def mention(standin: DiscordStandin, text: str) -> str:
    return f"<@{standin.bot['id']}> {text}"


async def assert_branched(bot: DiscordBot, standin: DiscordStandin, thread_id: str, asked: str) -> str:
    [branch_id] = [t["id"] for t in standin.threads() if t["id"] != thread_id]
    texts = standin.bot_texts(branch_id)
    assert f"/{thread_id}" in texts[0]  # the branch names where it came from
    assert texts[-1].startswith("(demo)") and asked in texts[-1]
    assert standin.bot_texts(thread_id)[-1].endswith(f"/{branch_id}")  # and the old thread links to it
    members = bot.conversations.members
    case = await bot.commands.cases.get(standin.guild_id, 1)
    assert case.thread == ref(standin, thread_id).key and case.branches == [ref(standin, branch_id).key]
    state = await members.thread_state(ref(standin, branch_id))
    assert state.status is ThreadStatus.ACTIVE and state.branch_of == case.thread
    assert state.ladder.redirects == 0  # nothing came before the opening message
    return branch_id


async def test_editing_the_opening_mention_after_the_end_branches_from_it(
        bot: DiscordBot, standin: DiscordStandin, model: CountingModel) -> None:
    opening = await ended_from_an_opening(standin)
    calls = model.calls

    await standin.edit(opening["id"], mention(standin, "tell me about noble gases"))
    await standin.settle(quiet=0.3)

    assert [c.status for c in standin.find("POST", rf"/channels/{standin.general_id}/threads")] == [200]
    await assert_branched(bot, standin, opening["id"], "noble gases")
    assert model.calls == calls + 1
    assert standin.bot_texts(standin.general_id) == []  # nothing said in the channel itself
    assert standin.unknown == []


async def test_edit_and_branch_works_on_the_opening_mention_too(
        bot: DiscordBot, standin: DiscordStandin, model: CountingModel) -> None:
    opening = await ended_from_an_opening(standin)
    opened = await standin.message_command(COMMAND_NAME, opening)
    await standin.settle(quiet=0.1)
    [callback] = opened.callbacks
    assert callback["type"] == 9  # the form, not "use this in a conversation"
    [component] = callback["data"]["components"]
    text_input = component["component"] if component["type"] == 18 else component["components"][0]
    assert text_input["value"] == "hi, can you help with chemistry?"

    await standin.submit_modal(opened, {text_input["custom_id"]: "tell me about noble gases"})
    await standin.settle(quiet=0.3)
    await assert_branched(bot, standin, opening["id"], "noble gases")


async def test_editing_the_opening_mention_of_a_live_conversation_changes_nothing(
        bot: DiscordBot, standin: DiscordStandin, model: CountingModel) -> None:
    opening = await say(standin, standin.general_id, "hi there", mention=True)
    before = len(standin.calls)
    await standin.edit(opening["id"], mention(standin, "hi there, edited"))
    await standin.settle(quiet=0.3)
    assert standin.calls[before:] == [] and model.calls == 1
    # and an edited message that never mentioned the bot is none of its business
    chatter = await say(standin, standin.general_id, "just chatting")
    await standin.edit(chatter["id"], "just chatting, edited")
    await standin.settle(quiet=0.2)
    assert standin.calls[before:] == [] and model.calls == 1


@pytest.mark.parametrize("text", ["", "   ", "\u200b\u2060", "\u202e\ufe0f"], ids=["nothing", "spaces",
                                                                                 "zero-width", "bidi"])
async def test_a_bare_mention_gets_a_short_answer_and_no_thread(
        bot: DiscordBot, standin: DiscordStandin, model: CountingModel, text: str) -> None:
    opening = await say(standin, standin.general_id, text, mention=True)

    assert standin.find("POST", r"/channels/\d+/messages/\d+/threads") == []
    assert standin.threads() == []
    [reply] = [m for m in standin.channel_messages(standin.general_id) if m["author"]["id"] == standin.bot["id"]]
    assert reply["content"] == HOW_TO
    [post] = standin.find("POST", rf"/channels/{standin.general_id}/messages")
    assert str(post.json["message_reference"]["message_id"]) == opening["id"]  # a reply to the mention
    assert post.json["allowed_mentions"]["parse"] == []  # pings nobody
    assert model.calls == 0


async def test_a_replayed_bare_mention_is_answered_once(bot: DiscordBot, standin: DiscordStandin) -> None:
    await say(standin, standin.general_id, "", mention=True)
    await standin.request_reconnect(redeliver_last=5)  # op 7, RESUME, then the mention again
    await standin.wait_until(lambda: standin.sessions[0].resumes == 1, what="RESUME")
    await standin.settle(quiet=0.4)
    assert standin.bot_texts(standin.general_id) == [HOW_TO]
