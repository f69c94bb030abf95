"""Mentions open threads, threads continue, answers stream and split, DMs work, replays answer once."""

from __future__ import annotations

import discord

from tests.e2e.discord.conftest import CountingModel, say
from tests.support.discord_standin import DiscordStandin


async def test_a_mention_opens_a_thread_and_the_thread_continues(bot, standin: DiscordStandin,
                                                                 model: CountingModel) -> None:
    opening = await say(standin, standin.general_id, "hello there", mention=True)
    thread_id = opening["id"]

    created = standin.find("POST", rf"/channels/{standin.general_id}/messages/{thread_id}/threads")
    assert len(created) == 1 and created[0].json["name"] == "hello there"
    assert standin.find("POST", rf"/channels/{thread_id}/typing")
    first = standin.bot_texts(thread_id)
    assert first == ["(demo) Thanks for your message. You said: “hello there”"]
    assert standin.bot_texts(standin.general_id) == []  # nothing posted in the channel itself

    await say(standin, thread_id, "and a second thing")  # no mention needed inside the bot's thread
    assert len(standin.bot_texts(thread_id)) == 2
    assert "second thing" in standin.bot_texts(thread_id)[1]
    assert model.calls == 2
    assert standin.unknown == []


async def test_the_bot_ignores_itself_other_bots_and_other_places(bot, standin: DiscordStandin,
                                                                  model: CountingModel) -> None:
    before = len(standin.calls)
    await say(standin, standin.general_id, "hi", mention=True, author=standin.other_bot)
    await say(standin, standin.general_id, "hi everyone, no mention here")
    await say(standin, standin.elsewhere_id, "hi from a guild that is not allowed", mention=True)
    assert standin.calls[before:] == []
    assert model.calls == 0


async def test_a_long_answer_streams_by_edits_and_splits_under_2000_characters(
        bot, standin: DiscordStandin, model: CountingModel) -> None:
    paragraph = "This sentence is part of a long answer that keeps going. " * 9
    answer = "\n\n".join([paragraph.strip()] * 9)  # about 4,600 characters
    model.script = [answer]
    model.chunk_delay = 0.01
    opening = await say(standin, standin.general_id, "tell me a long story", mention=True)
    thread_id = opening["id"]

    texts = standin.bot_texts(thread_id)
    assert len(texts) == 3
    assert all(len(t) <= 2000 for t in texts)
    assert "\n\n".join(texts).split() == answer.split()
    assert all(t.endswith("going.") for t in texts)  # split at paragraph boundaries
    first_id = standin.channel_messages(thread_id)[0]["id"]
    edits = standin.find("PATCH", rf"/channels/{thread_id}/messages/{first_id}")
    assert 2 <= len(edits) <= 40  # streamed by edits, throttled
    assert standin.find("POST", rf"/channels/{thread_id}/typing")


async def test_direct_messages_work(bot, standin: DiscordStandin, model: CountingModel) -> None:
    dm = standin.open_dm(standin.alice)
    await say(standin, dm, "hello in private")
    assert standin.bot_texts(dm) == ["(demo) Thanks for your message. You said: “hello in private”"]
    assert standin.find("POST", r"/channels/\d+/messages/\d+/threads") == []


async def test_a_gateway_reconnect_that_replays_messages_does_not_answer_twice(
        bot, standin: DiscordStandin, model: CountingModel) -> None:
    opening = await say(standin, standin.general_id, "hello there", mention=True)
    thread_id = opening["id"]
    await say(standin, thread_id, "one more")
    posts = len(standin.find("POST", r"/channels/\d+/messages"))
    assert model.calls == 2

    await standin.request_reconnect(redeliver_last=20)  # op 7, RESUME, then everything again
    await standin.wait_until(lambda: standin.sessions[0].resumes == 1, what="RESUME")
    await standin.settle(quiet=0.4)

    assert len(standin.identifies) == 1  # resumed, not re-identified
    assert model.calls == 2
    assert len(standin.find("POST", r"/channels/\d+/messages")) == posts
    refused = standin.find("POST", rf"/channels/{standin.general_id}/messages/{thread_id}/threads", status=400)
    assert len(refused) == 1  # the replayed mention found its thread already there
    assert isinstance(bot.client.get_channel(int(thread_id)), discord.Thread)



async def test_a_handler_that_fails_logs_one_line_and_the_bot_goes_on(bot, standin: DiscordStandin,
                                                                      model: CountingModel, caplog) -> None:
    """Whatever a handler fails on (here the engine refuses a message with an error it does not expect),
    the event is dropped with one WARNING line and no traceback above DEBUG; the next message is answered."""
    import asyncio

    members = bot.conversations.members
    real = members.accept

    async def failing(*args: object, **kwargs: object) -> object:
        members.accept = real  # once
        raise RuntimeError("unexpected")

    members.accept = failing
    with caplog.at_level("DEBUG"):
        await standin.post(standin.general_id, "hello", None, mention=True)
        for _ in range(250):
            if any("event dropped" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.02)
    dropped = [r for r in caplog.records if "event dropped" in r.getMessage()]
    assert len(dropped) == 1 and dropped[0].levelname == "WARNING" and dropped[0].exc_info is None
    assert not [r for r in caplog.records if r.exc_info and r.levelno > 10]
    opening = await say(standin, standin.general_id, "hello there", mention=True)
    assert standin.bot_texts(opening["id"])
