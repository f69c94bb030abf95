"""A Discord thread whose owner died is taken over by the running bot, which answers through its delivery
sink: the answer reaches the thread from a process that never saw the member's message."""

from __future__ import annotations

import redis.asyncio

from adapters.discord.app import DiscordBot
from bot.store.inbox_entry import InboxEntry, ReplyTarget, UnknownThread
from bot.store.redis_store import build_store
from bot.types import Author, IncomingMessage, ThreadRef
from config.settings import StoreSettings
from tests.e2e.discord.conftest import CountingModel, say
from tests.support.discord_standin import DiscordStandin


async def test_a_dead_owners_message_is_answered_by_the_running_bot(
        bot: DiscordBot, standin: DiscordStandin, model: CountingModel, redis_client: redis.asyncio.Redis) -> None:
    thread_id = str((await say(standin, standin.general_id, "hello there", mention=True))["id"])
    answered = len(standin.bot_texts(thread_id))
    ref = ThreadRef("discord", standin.guild_id, standin.general_id, thread_id)
    # Another process accepted a message and took the thread, then died before answering (its lease is
    # short here so the test need not wait six seconds).
    dead = build_store(redis_client, StoreSettings(lock_ttl_seconds=0.3))
    msg = IncomingMessage(ref, Author("42", "member"), "are you still there?", message_id="9001")
    taken = await dead.inbox.ingest(InboxEntry("9001", msg, ReplyTarget("42")), reminder_cooldown=0,
                                    unknown=UnknownThread.ACCEPT, take_lease=True, max_inbox=30, max_turns=100)
    assert taken.start is not None and model.calls == 1
    await standin.wait_until(lambda: len(standin.bot_texts(thread_id)) > answered
                             and "are you still there?" in standin.bot_texts(thread_id)[-1], timeout=10,
                             what="the answer from the recovering bot")  # streamed: edited until complete
    assert model.calls == 2
