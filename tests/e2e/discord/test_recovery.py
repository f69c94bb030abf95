"""A Discord thread whose owner died is taken over by the running bot, which answers through its delivery
sink: the answer reaches the thread from a process that never saw the member's message."""

from __future__ import annotations

import redis.asyncio

from adapters.discord.app import DiscordBot
from bot.pipeline import InboxEntry, ReplyTarget
from bot.store.redis_store import RedisConversationStore
from bot.types import Author, IncomingMessage, ThreadRef
from tests.e2e.discord.conftest import CountingModel, say
from tests.support.discord_standin import DiscordStandin


async def test_a_dead_owners_message_is_answered_by_the_running_bot(
        bot: DiscordBot, standin: DiscordStandin, model: CountingModel, redis_client: redis.asyncio.Redis) -> None:
    thread_id = str((await say(standin, standin.general_id, "hello there", mention=True))["id"])
    answered = len(standin.bot_texts(thread_id))
    ref = ThreadRef("discord", standin.guild_id, standin.general_id, thread_id)
    # Another process accepted a message and took the thread, then died before answering (its lease is
    # short here so the test need not wait six seconds).
    dead = RedisConversationStore(redis_client, lock_ttl_ms=300)
    msg = IncomingMessage(ref, Author("42", "member"), "are you still there?", message_id="9001")
    taken = await dead.ingest(ref, "9001", InboxEntry("9001", msg, ReplyTarget("42")).to_json(),
                              reminder_cooldown=0, require_known=False, take_lease=True, max_inbox=30,
                              max_turns=100)
    assert taken.start is not None and model.calls == 1
    await standin.wait_until(lambda: len(standin.bot_texts(thread_id)) > answered
                             and "are you still there?" in standin.bot_texts(thread_id)[-1], timeout=10,
                             what="the answer from the recovering bot")  # streamed: edited until complete
    assert model.calls == 2
