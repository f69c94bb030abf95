"""Appeals on Discord, through the real discord.py client and the stand-in: the button under the freeze
notice opens a form; the appeal reaches the case, the mod-log and the queue once, however often the member
clicks; the moderator's decision reaches the member in the thread."""

from __future__ import annotations

import pytest

from adapters.discord.app import DiscordBot
from bot.moderation import Decision
from bot.types import Author, ThreadRef, ThreadStatus
from tests.e2e.discord.conftest import HARMFUL, say
from tests.support.discord_standin import DiscordStandin, Interaction

MOD = Author("dashboard:mod", "mod")


@pytest.fixture
def discord_settings(discord_settings):
    return discord_settings.model_copy(update={"notice_poll_interval": 0.05})


async def end_thread(standin: DiscordStandin) -> str:
    opening = await say(standin, standin.general_id, HARMFUL, mention=True)
    for _ in range(3):
        await say(standin, opening["id"], HARMFUL)
    return str(opening["id"])


def notice_with_button(standin: DiscordStandin, thread_id: str) -> tuple[dict, str]:
    for message in reversed(standin.channel_messages(thread_id)):
        for row in message.get("components") or []:
            for component in row["components"]:
                if component.get("custom_id", "").startswith("tg:appeal:"):
                    return message, component["custom_id"]
    raise AssertionError("no appeal button under the freeze notice")


async def click(standin: DiscordStandin, message: dict, custom_id: str, user: dict) -> Interaction:
    holder = Interaction("-", "-", {}, original=message)
    clicked = await standin.click(holder, custom_id, user)
    await standin.wait_until(lambda: bool(clicked.callbacks), what="the click's answer")
    return clicked


def appeal_posts(standin: DiscordStandin) -> list[dict]:
    return [c.json["embeds"][0] for c in standin.find("POST", rf"/channels/{standin.modlog_id}/messages")
            if c.json and c.json.get("embeds") and c.json["embeds"][0]["title"].startswith("Appeal")]


async def test_the_appeal_button_files_one_appeal_to_case_modlog_and_queue(bot: DiscordBot, standin: DiscordStandin,
                                                                            runtime):
    thread_id = await end_thread(standin)
    message, custom_id = notice_with_button(standin, thread_id)
    assert message["content"].startswith("This conversation has been ended")
    assert custom_id == f"tg:appeal:{standin.guild_id}:1" and len(custom_id) <= 100

    # a double click: two forms open before either is sent; only one appeal is filed
    first = await click(standin, message, custom_id, standin.alice)
    second = await click(standin, message, custom_id, standin.alice)
    assert [c["type"] for c in first.callbacks + second.callbacks] == [9, 9]  # the form, at once
    form = first.callbacks[0]["data"]
    text_input = form["components"][0]["component"]
    assert text_input["max_length"] == 500 and text_input["required"] is False
    filed = await standin.submit_modal(first, {"text": "I was asking about my chemistry class"})
    again = await standin.submit_modal(second, {"text": "me again"})
    await standin.settle(quiet=0.2)
    answers = sorted(i.texts()[0][:20] for i in (filed, again))
    assert answers == ["Thank you. Your appe", "You already appealed"], answers
    assert all(i.original["flags"] & 64 for i in (filed, again))  # only the member sees them

    review = runtime.review
    appeals = await review.appeals_of(standin.guild_id, 1)
    assert len(appeals) == 1 and appeals[0].member_id == standin.alice["id"]
    assert appeals[0].text in ("I was asking about my chemistry class", "me again")
    queue = await review.open_appeals([standin.guild_id])
    assert len(queue) == 1
    [post] = appeal_posts(standin)
    assert post["title"] == "Appeal on case #1"
    assert post["description"] == f"\u2068{appeals[0].text}\u2069"  # isolated
    assert "\u2068alice\u2069" in post["fields"][0]["value"]

    # a third click answers at once that it is filed; someone who was not in the thread cannot appeal
    third = await click(standin, message, custom_id, standin.alice)
    assert third.callbacks[0]["type"] == 4 and "already appealed" in third.texts()[0]
    stranger = await click(standin, message, custom_id, standin.bob)
    assert "Only someone who took part" in stranger.texts()[0]
    assert len(appeal_posts(standin)) == 1


async def test_the_decision_reaches_the_member_in_the_thread(bot: DiscordBot, standin: DiscordStandin, runtime):
    members = bot.conversations.members
    review, moderation = runtime.review, runtime.moderation
    upheld_thread = await end_thread(standin)
    reopened_thread = await end_thread(standin)
    alice = Author(standin.alice["id"], "alice")
    for n in (1, 2):
        await review.file_appeal(standin.guild_id, n, alice, "")

    assert await moderation.decide_appeal(standin.guild_id, 1, alice.id, "uphold", MOD) is Decision.DECIDED
    await standin.wait_until(lambda: any("upheld the ending" in t for t in standin.bot_texts(upheld_thread)),
                             what="the upheld decision")
    [decision] = [c for c in standin.find("POST", rf"/channels/{upheld_thread}/messages")
                  if "upheld" in (c.json or {}).get("content", "")]
    assert decision.json["content"].startswith(f"<@{alice.id}> ")
    assert [str(u) for u in decision.json["allowed_mentions"]["users"]] == [alice.id]  # pings only them
    await standin.settle(quiet=0.2)
    assert standin.thread(upheld_thread)["thread_metadata"]["archived"]  # archived again after posting

    assert await moderation.decide_appeal(standin.guild_id, 2, alice.id, "reopen", MOD) is Decision.DECIDED
    await standin.wait_until(lambda: any("open again" in t for t in standin.bot_texts(reopened_thread)),
                             what="the reopen decision")
    meta = standin.thread(reopened_thread)["thread_metadata"]
    assert not meta["locked"] and not meta["archived"]
    case = await bot.commands.cases.get(standin.guild_id, 2)
    assert (await members.thread_state(ThreadRef.from_key(case.thread))).status is ThreadStatus.ACTIVE
