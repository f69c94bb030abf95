"""The /end confirmation buttons carry everything in their custom_id: they work after a restart, only
for the member who asked, and only within DISCORD_CONFIRM_TIMEOUT."""

from __future__ import annotations

from adapters.discord.app import DiscordBot
from adapters.discord.confirm import EndRequest
from bot.bootstrap import Runtime
from config.discord import DiscordSettings
from tests.e2e.discord.conftest import buttons, running, say
from tests.support.discord_standin import DiscordStandin


async def test_the_confirmation_survives_a_restart_and_only_the_asker_may_confirm(
        runtime: Runtime, discord_settings: DiscordSettings, standin: DiscordStandin) -> None:
    async with running(runtime, discord_settings):
        await standin.wait_until(lambda: bool(standin.commands), what="command sync")
        thread_id = (await say(standin, standin.general_id, "hello there", mention=True))["id"]
        asked = await standin.slash("end", thread_id)
        await standin.settle(quiet=0.1)
    yes, _ = buttons(asked)

    async with running(runtime, discord_settings) as restarted:  # a fresh client: nothing in memory
        assert len(standin.identifies) == 2
        by_bob = await standin.click(asked, yes, standin.bob)
        await standin.settle(quiet=0.1)
        assert by_bob.original is not None and by_bob.original["content"].startswith("Only the member who asked")
        assert standin.find("PATCH", rf"/channels/{thread_id}") == []

        clicked = await standin.click(asked, yes)
        await standin.settle(quiet=0.3)
        assert clicked.callbacks[0]["type"] == 7 and clicked.original is not None
        assert clicked.original["components"] == []  # the buttons are gone
        assert standin.bot_texts(thread_id)[-1].startswith("This conversation has been ended at your request")
        assert standin.thread(thread_id)["thread_metadata"]["locked"]
        case = await restarted.commands.cases.get(standin.guild_id, 1)
        assert case.reason == "user_requested" and case.ended_by == f"user:{standin.alice['id']}"


async def test_an_old_confirmation_has_expired(bot: DiscordBot, standin: DiscordStandin) -> None:
    thread_id = (await say(standin, standin.general_id, "hello there", mention=True))["id"]
    asked = await standin.slash("end", thread_id)
    await standin.settle(quiet=0.1)
    assert asked.original is not None
    old = EndRequest("yes", thread_id, int(standin.alice["id"]), asked_at=1_000_000_000).custom_id
    asked.original["components"][0]["components"][0]["custom_id"] = old  # a prompt from long ago
    clicked = await standin.click(asked, old)
    await standin.settle(quiet=0.1)
    assert clicked.original is not None and clicked.original["content"].startswith("This confirmation has expired")
    assert standin.find("PATCH", rf"/channels/{thread_id}") == []
    assert await bot.commands.cases.list(standin.guild_id) == []


def test_a_custom_id_round_trips_and_fits_discords_limit() -> None:
    longest = EndRequest("yes", f"{2**63}~{2**31}", 2**63, 4_102_444_800)
    assert EndRequest.parse(longest.custom_id) == longest
    assert len(longest.custom_id) <= 100
    assert EndRequest.parse("tg:end:yes") is None and EndRequest.parse("tg:end:maybe:1:2:3") is None
