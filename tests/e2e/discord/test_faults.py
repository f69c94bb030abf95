"""Discord failing: 429, 5xx, missing permissions, a deleted thread. Cases are never lost."""

from __future__ import annotations

import logging

from adapters.discord.app import DiscordBot
from adapters.discord.replies import MESSAGE_LIMIT
from adapters.text import split_text
from tests.e2e.discord.conftest import HARMFUL, CountingModel, buttons, say
from tests.support.discord_standin import DiscordStandin


async def test_a_429_is_waited_out_and_the_answer_still_arrives(bot: DiscordBot, standin: DiscordStandin) -> None:
    standin.fail("POST", r"/channels/\d+/messages", 429, retry_after=0.05)
    opening = await say(standin, standin.general_id, "hello there", mention=True)
    posts = standin.find("POST", rf"/channels/{opening['id']}/messages")
    assert [c.status for c in posts] == [429, 200]
    assert standin.bot_texts(opening["id"])[0].startswith("(demo)")


async def test_modlog_5xx_is_retried_and_a_lasting_failure_keeps_the_case(
        bot: DiscordBot, standin: DiscordStandin, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.discord")
    standin.fail("POST", rf"/channels/{standin.modlog_id}/messages", 503, times=2)
    opening = await say(standin, standin.general_id, HARMFUL, mention=True)
    for _ in range(3):
        await say(standin, opening["id"], HARMFUL)
    assert [c.status for c in standin.find("POST", rf"/channels/{standin.modlog_id}/messages")] == [503, 503, 200]

    standin.fail("POST", rf"/channels/{standin.modlog_id}/messages", 503, times=10)
    second = await say(standin, standin.general_id, "please end this conversation", mention=True)
    asked = await standin.slash("end", second["id"])
    await standin.settle()
    await standin.click(asked, buttons(asked)[0])
    await standin.settle(quiet=0.3)
    case = await bot.commands.cases.get(standin.guild_id, 2)
    assert case.reason == "user_requested"
    [given_up] = [r for r in caplog.records if "not posted" in r.getMessage()]
    line = given_up.getMessage()
    assert given_up.levelname == "ERROR" and "case 2 of community " + standin.guild_id in line
    assert "threadguard cases list" in line and "dashboard" in line
    assert (given_up.case_id, given_up.community) == (2, standin.guild_id)  # type: ignore[attr-defined]
    spoken = ["please end this conversation", HARMFUL, "(demo)", "ended at your request"]
    assert not any(text in r.getMessage() for r in caplog.records for text in spoken)  # no message text
    assert standin.thread(second["id"])["thread_metadata"]["locked"]


async def test_a_deleted_thread_still_files_and_posts_the_case(bot: DiscordBot, standin: DiscordStandin) -> None:
    opening = await say(standin, standin.general_id, HARMFUL, mention=True)
    thread_id = opening["id"]
    for _ in range(2):
        await say(standin, thread_id, HARMFUL)
    standin.delete_channel(thread_id)
    await say(standin, thread_id, HARMFUL)  # arrived just before the thread was deleted
    assert {c.status for c in standin.find("PATCH", rf"/channels/{thread_id}")} == {404}
    assert await bot.commands.cases.get(standin.guild_id, 1)
    assert len(standin.find("POST", rf"/channels/{standin.modlog_id}/messages", status=200)) == 1


async def test_missing_permission_to_create_threads_is_logged_not_crashed(
        bot: DiscordBot, standin: DiscordStandin, model: CountingModel, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.discord")
    standin.fail("POST", r"/channels/\d+/messages/\d+/threads", 403, code=50013)
    await say(standin, standin.general_id, "hello there", mention=True)
    assert model.calls == 0
    assert any("Create Public Threads" in r.getMessage() for r in caplog.records)
    await say(standin, standin.general_id, "hello again", mention=True)
    assert model.calls == 1  # the bot is still running


def test_split_text_prefers_boundaries() -> None:
    assert split_text("a" * 10, limit=4) == ["aaaa", "aaaa", "aa"]
    words = " ".join(["word"] * 600)
    pieces = split_text(words, MESSAGE_LIMIT)
    assert MESSAGE_LIMIT == 2000 and len(pieces) == 2
    assert all(len(p) <= MESSAGE_LIMIT for p in pieces) and " ".join(pieces) == words


async def test_discord_429s_and_errors_are_counted_in_the_metrics(runtime, discord_settings, metrics,
                                                                  standin: DiscordStandin) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from tests.e2e.discord.conftest import running

    async with running(runtime, discord_settings):
        await standin.wait_until(lambda: bool(standin.commands), what="command sync")
        standin.fail("POST", r"/channels/\d+/messages", 429, retry_after=0.05)
        opening = await say(standin, standin.general_id, "hello there", mention=True)
        assert standin.bot_texts(opening["id"])[0].startswith("(demo)")
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for f in text_string_to_metric_families(metrics.exposition().decode()) for s in f.samples}
    assert found[("threadguard_platform_rate_limited_total", (("method", "channels"), ("platform", "discord")))] == 1
    assert found[("threadguard_platform_errors_total", (("code", "http_429"), ("platform", "discord")))] == 1
    assert found[("threadguard_turns_total", (("outcome", "answered"), ("platform", "discord")))] == 1
