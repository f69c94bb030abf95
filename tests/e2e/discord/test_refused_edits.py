"""A streamed answer survives a refused edit: when a moderator deletes the bot's message mid-stream,
Discord answers the next edit 404 (10008 Unknown Message); the part is posted anew and the answer goes on."""

from __future__ import annotations

import discord
import pytest

from adapters.discord.app import DiscordBot
from tests.e2e.discord.conftest import CountingModel
from tests.support.discord_standin import DiscordStandin

PARAGRAPH = ("This sentence is part of a long answer that keeps going. " * 9).strip()
ANSWER = "\n\n".join([PARAGRAPH] * 9)  # about 4,600 characters: three messages
FAILED = "Something went wrong"


async def _stream_long_answer(standin: DiscordStandin, model: CountingModel) -> str:
    model.script = [ANSWER]
    model.chunk_delay = 0.02
    opening = await standin.post(standin.general_id, "tell me a long story", mention=True)
    thread_id = str(opening["id"])
    await standin.wait_for("POST", rf"/channels/{thread_id}/messages",
                           where=lambda c: c.status == 200 and (c.json or {}).get("content", "").startswith("This"))
    return thread_id


async def test_a_deleted_streaming_message_is_posted_anew_and_the_answer_completes(
        bot: DiscordBot, standin: DiscordStandin, model: CountingModel) -> None:
    thread_id = await _stream_long_answer(standin, model)
    [first] = standin.channel_messages(thread_id)
    await standin.moderator_delete(first["id"])
    await standin.settle(quiet=0.4, timeout=15)

    refused = standin.find("PATCH", rf"/channels/{thread_id}/messages/{first['id']}", status=404)
    assert len(refused) == 1  # one refused edit, then the bot stopped editing the deleted message
    texts = standin.bot_texts(thread_id)
    assert len(texts) == 3 and all(len(t) <= 2000 for t in texts)
    assert "\n\n".join(texts) == ANSWER  # the deleted part posted again in full, nothing lost or doubled
    assert not any(FAILED in t for t in texts)
    assert model.calls == 1
    assert standin.unknown == []


async def test_the_standin_answers_an_edit_of_a_deleted_message_as_discord_does(
        bot: DiscordBot, standin: DiscordStandin) -> None:
    message = await standin.post(standin.general_id, "a message to delete")
    await standin.moderator_delete(message["id"])
    channel = bot.client.get_partial_messageable(int(standin.general_id))
    with pytest.raises(discord.NotFound) as gone:
        await channel.get_partial_message(int(message["id"])).edit(content="x")
    assert (gone.value.status, gone.value.code, gone.value.text) == (404, 10008, "Unknown Message")
    with pytest.raises(discord.HTTPException) as too_long:
        await channel.send("y" * 2001)
    assert (too_long.value.status, too_long.value.code) == (400, 50035)
    assert standin.find("POST", rf"/channels/{standin.general_id}/messages", status=400)


async def test_a_forbidden_edit_posts_the_part_anew(bot: DiscordBot, standin: DiscordStandin,
                                                   model: CountingModel) -> None:
    thread_id = await _stream_long_answer(standin, model)
    standin.fail("PATCH", rf"/channels/{thread_id}/messages/\d+", 403, code=50001)
    await standin.settle(quiet=0.4, timeout=15)

    assert len(standin.find("PATCH", rf"/channels/{thread_id}/messages/\d+", status=403)) == 1
    texts = standin.bot_texts(thread_id)
    # The message that could not be edited keeps what it showed; the answer continues after it in full.
    assert "\n\n".join(texts[1:]) == ANSWER
    assert all(len(t) <= 2000 for t in texts) and not any(FAILED in t for t in texts)
    assert model.calls == 1
