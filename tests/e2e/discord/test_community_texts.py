"""A community's own words are the ones posted on Discord (real discord.py client against the stand-in):
the warning, the crisis resources, the freeze notice and the reopen notice."""

from __future__ import annotations

import pytest

from adapters.discord.app import DiscordBot
from bot.types import Author
from config.communities import CommunityConfig, CommunityTexts
from tests.e2e.discord.conftest import HARMFUL, say
from tests.support.discord_standin import DiscordStandin

TEXTS = CommunityTexts(
    warning="Achtung: {redirects} Mal ({category}). Noch einmal und ich beende dieses Gespräch.",
    freeze_notice="Dieses Gespräch ist beendet ({category}). Dieser {place} ist geschlossen.",
    reopened="Ein Moderator hat diesen {place} wieder geöffnet.")
CRISIS = "Telefonseelsorge: 0800 111 0 111 (kostenlos, rund um die Uhr)."


@pytest.fixture
def community(standin: DiscordStandin) -> CommunityConfig:
    return CommunityConfig(mod_log_channel=standin.modlog_id, moderator_role=standin.mod_role_id,
                           texts=TEXTS, crisis_resources=CRISIS)


async def test_the_communitys_texts_are_the_ones_posted(bot: DiscordBot, standin: DiscordStandin):
    opening = await say(standin, standin.general_id, HARMFUL, mention=True)
    thread_id = opening["id"]
    for _ in range(3):
        await say(standin, thread_id, HARMFUL)
    texts = standin.bot_texts(thread_id)
    assert "Achtung: 3 Mal (weapons of mass harm). Noch einmal und ich beende dieses Gespräch." in texts
    assert texts[-1] == "Dieses Gespräch ist beendet (weapons of mass harm). Dieser thread ist geschlossen."
    assert not any(t.startswith(("\u26a0\ufe0f Warning", "This conversation has been ended")) for t in texts)

    outcome = await bot.commands.moderation.reopen(standin.guild_id, 1, Author("1", "mod"))
    await bot.conversations.reopened(outcome.thread, outcome.replies)
    assert standin.bot_texts(thread_id)[-1] == "Ein Moderator hat diesen thread wieder geöffnet."

    risky = await say(standin, standin.general_id, "some days I want to hurt myself", mention=True)
    assert CRISIS in standin.bot_texts(risky["id"])
