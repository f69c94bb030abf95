"""The "Edit and branch" message command: a real APPLICATION_COMMAND (type 3, message target) and the
MODAL_SUBMIT that follows, in a locked, archived thread where members cannot edit their messages."""

from __future__ import annotations

from typing import Any

from adapters.discord.app import DiscordBot
from adapters.discord.branching import COMMAND_NAME, NOT_YOURS, STILL_GOING
from adapters.discord.translate import thread_ref
from bot.types import ThreadRef, ThreadStatus
from tests.e2e.discord.conftest import HARMFUL, CountingModel, buttons, say
from tests.support.discord_standin import EPHEMERAL, MANAGE_MESSAGES, DiscordStandin


def ref(standin: DiscordStandin, thread_id: str) -> ThreadRef:
    return thread_ref(int(standin.guild_id), int(standin.general_id), int(thread_id))


def private(message: dict[str, Any]) -> bool:
    return bool(int(message.get("flags") or 0) & EPHEMERAL)


def modal_input(opened: Any) -> dict[str, Any]:
    """The text input of the modal the bot answered with (inside a label, or an action row)."""
    [component] = opened.callbacks[0]["data"]["components"]
    return component["component"] if component["type"] == 18 else component["components"][0]


async def chemistry_thread_ended_by_ladder(standin: DiscordStandin) -> tuple[str, dict[str, Any]]:
    opening = await say(standin, standin.general_id, "hi, can you help with chemistry?", mention=True)
    second = await say(standin, opening["id"], "what is a mole?")
    for _ in range(4):
        await say(standin, opening["id"], HARMFUL)
    assert standin.thread(opening["id"])["thread_metadata"]["locked"]
    return opening["id"], second


async def test_edit_and_branch_opens_a_linked_thread_from_a_locked_one(
        bot: DiscordBot, standin: DiscordStandin, model: CountingModel) -> None:
    registered = {c["name"]: c for c in standin.commands}
    assert registered[COMMAND_NAME]["type"] == 3  # a message context-menu command
    thread_id, second = await chemistry_thread_ended_by_ladder(standin)
    members = bot.conversations.members
    old_key = (await bot.commands.cases.get(standin.guild_id, 1)).thread
    calls = model.calls

    opened = await standin.message_command(COMMAND_NAME, second)
    await standin.settle(quiet=0.1)
    [callback] = opened.callbacks
    assert callback["type"] == 9 and callback["data"]["title"] == COMMAND_NAME  # a modal
    text_input = modal_input(opened)
    assert (text_input["value"], text_input["max_length"]) == ("what is a mole?", 2000)

    submitted = await standin.submit_modal(opened, {text_input["custom_id"]: "what is Avogadro's number?"})
    await standin.settle(quiet=0.3)
    assert submitted.callbacks[0]["type"] == 5  # deferred while the engine answers
    [branch_id] = [t["id"] for t in standin.threads() if t["id"] != thread_id]
    [answer] = submitted.followups
    assert private(answer)
    assert answer["content"] == ("Your conversation continues in a new thread: "
                                 f"https://discord.com/channels/{standin.guild_id}/{branch_id}")

    # the same branch as an edit would open: a new thread, linked both ways, answered there
    assert standin.find("POST", rf"/channels/{standin.general_id}/threads")[0].status == 200
    branch_texts = standin.bot_texts(branch_id)
    assert f"/{thread_id}" in branch_texts[0]
    assert branch_texts[-1].startswith("(demo)") and "Avogadro" in branch_texts[-1]
    assert standin.bot_texts(thread_id)[-1].endswith(f"/{branch_id}")
    meta = standin.thread(thread_id)["thread_metadata"]
    assert meta["locked"] and meta["archived"]  # archived again after the link
    assert model.calls == calls + 1

    case = await bot.commands.cases.get(standin.guild_id, 1)
    assert case.branches == [ref(standin, branch_id).key]
    state = await members.thread_state(ref(standin, branch_id))
    assert state.status is ThreadStatus.ACTIVE and state.branch_of == old_key
    assert state.ladder.redirects == 0  # the prefix before the edited message held none
    assert standin.unknown == []


async def test_edit_and_branch_refuses_other_members_messages_and_active_threads(
        bot: DiscordBot, standin: DiscordStandin, model: CountingModel) -> None:
    opening = await say(standin, standin.general_id, "hi, can you help with chemistry?", mention=True)
    thread_id = opening["id"]
    mine = await say(standin, thread_id, "what is a mole?")

    by_bob = await standin.message_command(COMMAND_NAME, mine, standin.bob)
    in_active = await standin.message_command(COMMAND_NAME, mine)
    await standin.settle(quiet=0.1)
    assert by_bob.callbacks[0]["type"] == 4 and private(by_bob.original)  # answered, no modal
    assert by_bob.original["content"] == NOT_YOURS
    assert in_active.callbacks[0]["type"] == 4 and private(in_active.original)
    assert in_active.original["content"] == STILL_GOING

    asked = await standin.slash("end", thread_id)
    await standin.settle(quiet=0.1)
    await standin.click(asked, buttons(asked)[0])
    await standin.settle(quiet=0.2)
    assert standin.thread(thread_id)["thread_metadata"]["locked"]
    calls = model.calls

    # the thread is reopened while the member is still typing in the form: the engine changes nothing
    opened = await standin.message_command(COMMAND_NAME, mine)
    await standin.settle(quiet=0.1)
    await standin.slash("threadguard", standin.general_id, standin.mod, subcommand="reopen",
                        options=[{"type": 4, "name": "number", "value": 1}], permissions=MANAGE_MESSAGES)
    await standin.settle(quiet=0.2)
    submitted = await standin.submit_modal(opened, {modal_input(opened)["custom_id"]: "what is a proton?"})
    await standin.settle(quiet=0.2)
    assert [m["content"] for m in submitted.followups] == [STILL_GOING]
    assert private(submitted.followups[0])
    assert [t["id"] for t in standin.threads()] == [thread_id]  # no branch opened
    assert model.calls == calls
