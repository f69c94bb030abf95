"""Large bots shard: AutoShardedClient asks GET /gateway/bot and identifies once per shard.

(discord.py waits 5 s between two shard identifies, so this file takes about five seconds.)"""

from __future__ import annotations

import discord

from config.discord import DiscordSettings
from tests.e2e.discord.conftest import running
from tests.support.discord_standin import DiscordStandin


async def test_large_bots_shard(runtime, discord_settings: DiscordSettings, standin: DiscordStandin) -> None:
    settings = discord_settings.model_copy(update={"shard_count": 0, "allowed_guilds": ()})
    async with running(runtime, settings) as started:
        assert isinstance(started.client, discord.AutoShardedClient)
        assert standin.find("GET", r"/gateway/bot")
        assert sorted(tuple(i["shard"]) for i in standin.identifies) == [(0, 2), (1, 2)]
        assert {g.id for g in started.client.guilds} == {int(standin.guild_id), int(standin.other_guild_id)}
        assert all("token" in i for i in standin.identifies)
