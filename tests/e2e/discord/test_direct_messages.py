"""Direct messages have no threads: the engine numbers the conversations held in one DM. An ended one
stays frozen (and keeps its case); `/chat` in the DM starts a new one; branching starts one too."""

from __future__ import annotations

from adapters.discord.app import DiscordBot
from adapters.discord.branching import COMMAND_NAME
from adapters.discord.translate import dm_ref
from bot.types import ThreadStatus
from tests.e2e.discord.conftest import CountingModel, say
from tests.support.discord_standin import EPHEMERAL, DiscordStandin


async def end_dm_conversation(standin: DiscordStandin, dm: str) -> dict[str, object]:
    """A DM conversation the member ends by asking (and confirming); returns their first message."""
    first = await say(standin, dm, "hi, can you help with chemistry?")
    await say(standin, dm, "please end this conversation")
    await say(standin, dm, "yes, end it")
    assert standin.bot_texts(dm)[-1].startswith("This conversation has been ended at your request")
    return first


async def test_an_ended_dm_stays_frozen_and_chat_starts_a_new_conversation(
        bot: DiscordBot, standin: DiscordStandin, model: CountingModel) -> None:
    members = bot.conversations.members
    dm = standin.open_dm(standin.alice)
    await end_dm_conversation(standin, dm)
    first_key = dm_ref(int(dm)).key
    case = await bot.commands.cases.get("dm", 1)
    assert (case.thread, case.reason) == (first_key, "user_requested")

    calls = model.calls
    await say(standin, dm, "hello? are you there?")
    assert standin.bot_texts(dm)[-1].startswith("This conversation has ended, so I won't answer in it.")
    assert not any("thread" in t for t in standin.bot_texts(dm)[-2:])  # a DM has no threads
    assert model.calls == calls

    used = await standin.slash("chat", dm, options=[{"type": 3, "name": "message", "value": "a fresh start"}])
    await standin.settle(quiet=0.2)
    assert used.original is not None and used.original["content"].startswith("*New conversation*")
    assert standin.bot_texts(dm)[-1] == "(demo) Thanks for your message. You said: “a fresh start”"
    await say(standin, dm, "and one more thing")  # later DMs go to the new conversation
    assert standin.bot_texts(dm)[-1].startswith("(demo)") and "one more thing" in standin.bot_texts(dm)[-1]
    assert model.calls == calls + 2

    current = await members.conversation_in(dm_ref(int(dm)))
    assert current.key != first_key and (await members.thread_state(current)).status is ThreadStatus.ACTIVE
    assert (await members.thread_state(dm_ref(int(dm)))).status is ThreadStatus.ENDED
    assert (await bot.commands.cases.get("dm", 1)).transcript == case.transcript  # the old case is untouched
    assert await bot.commands.cases.list("dm") == [case]
    assert standin.find("POST", r"/channels/\d+/threads") == []  # no threads anywhere in a DM


async def test_edit_and_branch_in_a_dm_continues_as_a_new_conversation(
        bot: DiscordBot, standin: DiscordStandin, model: CountingModel) -> None:
    members = bot.conversations.members
    dm = standin.open_dm(standin.alice)
    first = await end_dm_conversation(standin, dm)

    opened = await standin.message_command(COMMAND_NAME, first)
    await standin.settle(quiet=0.1)
    [component] = opened.callbacks[0]["data"]["components"]
    text_input = component["component"] if component["type"] == 18 else component["components"][0]
    submitted = await standin.submit_modal(opened, {text_input["custom_id"]: "can you help with physics?"})
    await standin.settle(quiet=0.3)

    assert [m["content"] for m in submitted.followups] == ["Your conversation continues below, as a new "
                                                          "conversation."]
    texts = [m["content"] for m in standin.channel_messages(dm)
             if m["author"]["id"] == standin.bot["id"] and not int(m["flags"]) & EPHEMERAL]
    assert texts[-2].startswith("Continuing from your edited message as a new conversation")
    assert texts[-1].startswith("(demo)") and "physics" in texts[-1]
    branch = await members.conversation_in(dm_ref(int(dm)))
    state = await members.thread_state(branch)
    assert state.status is ThreadStatus.ACTIVE and state.branch_of == dm_ref(int(dm)).key
    assert (await bot.commands.cases.get("dm", 1)).branches == [branch.key]


async def test_editing_a_message_of_an_older_ended_dm_conversation_branches_from_it(
        bot: DiscordBot, standin: DiscordStandin, model: CountingModel) -> None:
    members = bot.conversations.members
    dm = standin.open_dm(standin.alice)
    first = await end_dm_conversation(standin, dm)
    await standin.slash("chat", dm, options=[{"type": 3, "name": "message", "value": "a fresh start"}])
    await standin.settle(quiet=0.2)
    newer = await members.conversation_in(dm_ref(int(dm)))
    assert (await members.thread_state(newer)).status is ThreadStatus.ACTIVE

    # the context-menu form on the old message: it opens (not "this conversation is still going")
    opened = await standin.message_command(COMMAND_NAME, first)
    await standin.settle(quiet=0.1)
    assert opened.callbacks[0]["type"] == 9, opened.texts()
    # a plain edit of the old message branches from the old conversation
    await standin.edit(first["id"], "can you help with biology instead?")
    await standin.settle(quiet=0.3)
    texts = standin.bot_texts(dm)
    assert not any("still going" in t or "couldn't find" in t for t in texts)
    assert texts[-2].startswith("Continuing from your edited message as a new conversation")
    assert "biology" in texts[-1]
    branch = await members.conversation_in(dm_ref(int(dm)))
    assert branch.key not in (newer.key, dm_ref(int(dm)).key)
    assert (await members.thread_state(branch)).branch_of == dm_ref(int(dm)).key
    assert (await bot.commands.cases.get("dm", 1)).branches == [branch.key]
