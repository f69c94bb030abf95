"""/end with its confirmation, /chat, and the moderators' /threadguard commands as real interactions."""

from __future__ import annotations

from adapters.discord.app import DiscordBot
from adapters.discord.translate import thread_ref
from bot.bootstrap import Runtime
from bot.store.review import RedisReviewStore
from bot.types import Author, ThreadStatus
from tests.e2e.discord.conftest import HARMFUL, CountingModel, buttons, say
from tests.integration.dashboard_client import dashboard
from tests.support.discord_standin import EPHEMERAL, MANAGE_MESSAGES, DiscordStandin

CASE_NUMBER = [{"type": 4, "name": "number", "value": 1}]


def ephemeral(interaction) -> bool:
    return bool(int(interaction.callbacks[0]["data"].get("flags") or 0) & EPHEMERAL)


async def open_thread(standin: DiscordStandin, text: str = "hello there") -> str:
    return (await say(standin, standin.general_id, text, mention=True))["id"]


async def test_end_asks_for_confirmation_then_freezes_and_files_a_case(
        bot: DiscordBot, standin: DiscordStandin) -> None:
    thread_id = await open_thread(standin)
    names = {c["name"] for c in standin.commands}
    assert {"chat", "end", "threadguard"} <= names

    asked = await standin.slash("end", thread_id)
    await standin.settle()
    assert ephemeral(asked)
    yes, no = buttons(asked)
    assert yes.startswith(f"tg:end:yes:{thread_id}:{standin.alice['id']}:")  # all a click needs, no memory
    assert no.startswith(f"tg:end:no:{thread_id}:")
    assert standin.find("PATCH", rf"/channels/{thread_id}") == []  # nothing happens before confirming

    clicked = await standin.click(asked, yes)
    await standin.settle(quiet=0.3)
    assert clicked.callbacks[0]["type"] == 7  # the confirmation message is updated in place
    assert standin.bot_texts(thread_id)[-1].startswith("This conversation has been ended at your request")
    assert [c.json for c in standin.find("PATCH", rf"/channels/{thread_id}")] == [{"archived": True, "locked": True}]
    [post] = standin.find("POST", rf"/channels/{standin.modlog_id}/messages")
    assert {f["name"]: f["value"] for f in post.json["embeds"][0]["fields"]}["Reason"] == "user_requested"
    case = await bot.commands.cases.get(standin.guild_id, 1)
    assert case.ended_by == f"user:{standin.alice['id']}"


async def test_end_can_be_cancelled(bot: DiscordBot, standin: DiscordStandin) -> None:
    thread_id = await open_thread(standin)
    asked = await standin.slash("end", thread_id)
    await standin.settle()
    await standin.click(asked, buttons(asked)[1])
    await standin.settle()
    assert asked.original["content"] == "Okay, the conversation stays open."
    state = await bot.conversations.members.thread_state(
        thread_ref(int(standin.guild_id), int(standin.general_id), int(thread_id)))
    assert state.status is ThreadStatus.ACTIVE


async def test_chat_command_opens_a_thread_from_its_response(bot: DiscordBot, standin: DiscordStandin) -> None:
    used = await standin.slash("chat", standin.general_id, options=[{"type": 3, "name": "message",
                                                                      "value": "what is a mole?"}])
    await standin.settle(quiet=0.3)
    assert not ephemeral(used) and "what is a mole?" in used.original["content"]
    thread_id = used.original["id"]
    assert standin.find("POST", rf"/channels/{standin.general_id}/messages/{thread_id}/threads")
    assert standin.bot_texts(thread_id)[-1].startswith("(demo)")


async def test_moderators_list_show_and_reopen_cases(bot: DiscordBot, standin: DiscordStandin,
                                                     model: CountingModel) -> None:
    thread_id = await open_thread(standin, HARMFUL)
    for _ in range(3):
        await say(standin, thread_id, HARMFUL)
    assert standin.thread(thread_id)["thread_metadata"]["locked"]

    listed = await standin.slash("threadguard", standin.general_id, standin.mod, subcommand="cases")
    await standin.settle()
    assert ephemeral(listed) and listed.original["content"].startswith("**#1** end · persistent_abuse")

    shown = await standin.slash("threadguard", standin.general_id, standin.mod, subcommand="case",
                                options=CASE_NUMBER)
    await standin.settle()
    assert ephemeral(shown) and shown.original["embeds"][0]["title"] == "Case #1 · end"
    assert shown.callbacks[0]["_files"][0][0] == "case-1.txt"

    reopened = await standin.slash("threadguard", standin.general_id, standin.mod, subcommand="reopen",
                                   options=CASE_NUMBER)
    await standin.settle(quiet=0.3)
    assert reopened.callbacks[0]["type"] == 5 and ephemeral(reopened)  # deferred, ephemeral
    assert "Reopened case #1" in reopened.followups[-1]["content"]
    meta = standin.thread(thread_id)["thread_metadata"]
    assert not meta["locked"] and not meta["archived"]
    assert standin.bot_texts(thread_id)[-1] == "A moderator has reopened this conversation. You can continue here."
    modlog = standin.find("POST", rf"/channels/{standin.modlog_id}/messages")
    assert modlog[-1].json["embeds"][0]["title"] == "Case #2 · reopen of case #1"

    calls = model.calls
    await say(standin, thread_id, "thanks, back to chemistry")
    assert model.calls > calls and standin.bot_texts(thread_id)[-1].startswith("(demo)")


async def test_members_without_permission_are_refused(bot: DiscordBot, standin: DiscordStandin) -> None:
    thread_id = await open_thread(standin)
    await standin.slash("end", thread_id)  # a case to look at
    refused = [await standin.slash("threadguard", standin.general_id, standin.alice, subcommand=sub,
                                   options=opts)
               for sub, opts in (("cases", []), ("case", CASE_NUMBER), ("reopen", CASE_NUMBER))]
    await standin.settle()
    for interaction in refused:
        assert ephemeral(interaction)
        assert interaction.original["content"].startswith("You don't have permission to do that.")
        assert "Manage Messages" in interaction.original["content"]

    allowed = await standin.slash("threadguard", standin.general_id, standin.bob, subcommand="case",
                                  options=[{"type": 4, "name": "number", "value": 99}],
                                  permissions=MANAGE_MESSAGES)
    await standin.settle()
    assert allowed.original["content"] == "There is no case with that number in this community."


async def test_a_long_chat_message_is_shown_in_full_within_discords_limit(
        bot: DiscordBot, standin: DiscordStandin, model: CountingModel) -> None:
    paragraph = "A long question that goes on and on about many things. " * 20
    message = "\n\n".join([paragraph.strip()] * 3)  # about 3,400 characters: /chat takes up to 4,000
    used = await standin.slash("chat", standin.general_id, options=[{"type": 3, "name": "message",
                                                                      "value": message}])
    await standin.settle(quiet=0.3)
    thread_id = used.original["id"]
    shown = [used.original["content"], *standin.bot_texts(thread_id)[:-1]]
    assert all(len(t) <= 2000 for t in shown)
    assert "\n\n".join(shown).split() == f"**alice:** {message}".split()  # nothing lost
    assert standin.bot_texts(thread_id)[-1].startswith("(demo)") and model.calls == 1
    assert not standin.find("POST", r"/.*", status=400)


async def test_a_chat_message_of_invisible_characters_opens_nothing(
        bot: DiscordBot, standin: DiscordStandin, model: CountingModel) -> None:
    used = await standin.slash("chat", standin.general_id, options=[{"type": 3, "name": "message",
                                                                      "value": "\u200b\u2060"}])
    await standin.settle(quiet=0.2)
    assert ephemeral(used) and "looks empty" in used.original["content"]
    assert standin.threads() == [] and model.calls == 0


async def test_a_reopen_command_concludes_the_review_and_the_end_no_longer_counts(
        bot: DiscordBot, standin: DiscordStandin, runtime: Runtime) -> None:
    thread_id = await open_thread(standin, HARMFUL)
    for _ in range(3):
        await say(standin, thread_id, HARMFUL)
    alice, guild = standin.alice["id"], standin.guild_id
    await runtime.review.file_appeal(guild, 1, Author(alice, "alice"), "")
    async with dashboard(runtime, [guild], "mod-a") as (record,):
        assert await record.strikes(guild, alice) == 1

        reopened = await standin.slash("threadguard", standin.general_id, standin.mod, subcommand="reopen",
                                       options=CASE_NUMBER)
        await standin.settle(quiet=0.3)
        assert "Reopened case #1" in reopened.followups[-1]["content"]
        assert await record.strikes(guild, alice) == 0
        policy = RedisReviewStore(runtime.redis, retention_s=runtime.settings.store.retention_s)
        assert await policy.ends_since(guild, alice, 0) == 0
        review = await runtime.review.review(guild, 1)
        assert (review.state.value, review.outcome) == ("reviewed", "reopened")
        assert [a.status for a in await runtime.review.appeals_of(guild, 1)] == ["reopened"]
