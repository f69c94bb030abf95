"""Notices queued by a process without a Discord connection (the dashboard's reopen) are carried out by
the running bot: the thread is unlocked and unarchived, the notice posted, once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio

from adapters.discord.app import DiscordBot
from adapters.discord.translate import dm_ref
from bot.bootstrap import Runtime
from bot.types import Author, Outcome, Reply, ReplyKind, ThreadRef, ThreadStatus
from config.discord import DiscordSettings
from tests.e2e.discord.conftest import HARMFUL, CountingModel, say
from tests.support.discord_standin import DiscordStandin
from tests.support.redis_servers import RedisServer

POLL = 0.05
DASHBOARD_MOD = Author("dashboard:mod", "Mod")
REOPENED = "A moderator has reopened this conversation. You can continue here."


@pytest.fixture
def discord_settings(discord_settings: DiscordSettings) -> DiscordSettings:
    return discord_settings.model_copy(update={"notice_poll_interval": POLL})


async def reopen_from_dashboard(bot: DiscordBot, runtime: Runtime, community: str, case_id: int) -> Outcome:
    """What the dashboard does: the moderation reopens, then the notice is queued for the bot process."""
    outcome = await bot.commands.moderation.reopen(community, case_id, DASHBOARD_MOD)
    assert outcome.action is not None
    await runtime.notices.queue_notice(outcome, "reopen", case_id)
    return outcome


async def ended_thread(standin: DiscordStandin) -> str:
    thread_id = (await say(standin, standin.general_id, HARMFUL, mention=True))["id"]
    for _ in range(3):
        await say(standin, thread_id, HARMFUL)
    assert standin.thread(thread_id)["thread_metadata"]["locked"]
    return thread_id


async def test_a_dashboard_reopen_unlocks_the_thread_and_posts_the_notice_once(
        bot: DiscordBot, runtime: Runtime, standin: DiscordStandin, model: CountingModel) -> None:
    thread_id = await ended_thread(standin)
    before = len(standin.calls)

    await reopen_from_dashboard(bot, runtime, standin.guild_id, 1)
    await standin.wait_for("POST", rf"/channels/{thread_id}/messages", count=5)
    await standin.settle(quiet=0.2)

    meta = standin.thread(thread_id)["thread_metadata"]
    assert not meta["locked"] and not meta["archived"]
    done = [(c.method, c.path, c.json) for c in standin.calls[before:]]
    assert done == [("PATCH", f"/channels/{thread_id}", {"archived": False, "locked": False}),
                    ("POST", f"/channels/{thread_id}/messages", done[1][2])]  # unlocked first, then posted
    assert done[1][2]["content"] == REOPENED and standin.bot_texts(thread_id)[-1] == REOPENED

    await asyncio.sleep(POLL * 6)  # several more polls
    assert await bot.notices.poll() == 0
    assert len(standin.calls) == before + 2  # nothing posted again

    calls = model.calls
    await say(standin, thread_id, "thanks, back to chemistry")
    assert model.calls > calls and standin.bot_texts(thread_id)[-1].startswith("(demo)")


async def test_a_numbered_dm_conversation_is_reopened_in_its_dm_channel(
        bot: DiscordBot, runtime: Runtime, standin: DiscordStandin) -> None:
    members = bot.conversations.members
    dm = standin.open_dm(standin.alice)
    await say(standin, dm, "please end this conversation")
    await say(standin, dm, "yes, end it")  # case 1: the DM's first conversation
    await standin.slash("chat", dm, options=[{"type": 3, "name": "message", "value": "a fresh start"}])
    await standin.settle(quiet=0.2)
    await say(standin, dm, "please end this conversation")
    await say(standin, dm, "yes, end it")  # case 2: its second conversation, thread "<dm>~1"
    second = await runtime.cases.get("dm", 2)
    assert second.thread == ThreadRef("discord", "dm", dm, f"{dm}~1").key
    before = len(standin.calls)

    await reopen_from_dashboard(bot, runtime, "dm", 2)
    await standin.wait_until(lambda: standin.bot_texts(dm)[-1] == REOPENED, what="the notice in the DM")
    await standin.settle(quiet=0.2)

    assert [(c.method, c.path) for c in standin.calls[before:]] == [("POST", f"/channels/{dm}/messages")]
    assert (await members.thread_state(ThreadRef.from_key(second.thread))).status is ThreadStatus.ACTIVE
    assert (await members.thread_state(dm_ref(int(dm)))).status is ThreadStatus.ENDED  # case 1 untouched


async def test_refusals_are_logged_with_the_thread_key_and_the_relay_goes_on(
        bot: DiscordBot, runtime: Runtime, standin: DiscordStandin, caplog: pytest.LogCaptureFixture) -> None:
    thread_id = await ended_thread(standin)
    key = (await runtime.cases.get(standin.guild_id, 1)).thread
    standin.fail("PATCH", rf"/channels/{thread_id}", 403, code=50013)
    standin.fail("POST", rf"/channels/{thread_id}/messages", 403, code=50013)

    with caplog.at_level(logging.WARNING):
        await reopen_from_dashboard(bot, runtime, standin.guild_id, 1)
        await standin.wait_for("POST", rf"/channels/{thread_id}/messages", where=lambda c: c.status == 403)
        await standin.settle(quiet=0.2)
    assert any(key in r.getMessage() and "reopen" in r.getMessage() for r in caplog.records)  # the unlock
    assert any(key in r.getMessage() and "not posted" in r.getMessage() for r in caplog.records)
    assert REOPENED not in standin.bot_texts(thread_id)

    # an action the bot has no special handling for: its replies are posted (ephemeral ones are not)
    replies = [Reply(ReplyKind.INFO, "A moderator left a note on this conversation."),
               Reply(ReplyKind.INFO, "only for one member", ephemeral=True)]
    await runtime.notices.queue_notice(Outcome(ThreadRef.from_key(key), replies=replies), "note", 1)
    await standin.wait_until(lambda: standin.bot_texts(thread_id)[-1].startswith("A moderator left a note"),
                             what="the next notice")
    assert "only for one member" not in standin.bot_texts(thread_id)


@pytest.fixture
def store_server(private_redis_server: RedisServer) -> RedisServer:
    return private_redis_server


@pytest_asyncio.fixture
async def redis_client(store_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """This module's store runs on a server of its own, so a test may stop it."""
    client = redis.asyncio.Redis.from_url(store_server.url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def test_the_relay_survives_the_store_going_away(
        bot: DiscordBot, runtime: Runtime, standin: DiscordStandin, store_server: RedisServer,
        caplog: pytest.LogCaptureFixture) -> None:
    thread_id = (await say(standin, standin.general_id, "hello there", mention=True))["id"]
    with caplog.at_level(logging.WARNING, logger="bot.worker"):
        store_server.stop()
        await asyncio.sleep(POLL * 4)
        store_server.start()  # empty again: this server keeps nothing on disk
    assert any("the notices loop could not reach the store (StoreUnavailable)" in r.getMessage()
               for r in caplog.records)
    assert bot.notices.running

    ref = ThreadRef("discord", standin.guild_id, standin.general_id, thread_id)
    await runtime.notices.queue_notice(Outcome(ref, replies=[Reply(ReplyKind.INFO, REOPENED)]), "reopen", 1)
    await standin.wait_until(lambda: standin.bot_texts(thread_id)[-1] == REOPENED, what="the notice")
    assert standin.find("PATCH", rf"/channels/{thread_id}")  # a reopen always unlocks first
