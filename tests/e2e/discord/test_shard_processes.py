"""Shards spread over processes: DISCORD_SHARD_IDS with DISCORD_SHARD_COUNT. Each process identifies only
its shards, gets only its guilds' events and answers them; all of them share one Redis.

The first test runs two real discord.py clients in this process, the second two real
``threadguard discord`` processes, against the same gateway stand-in."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import discord
from pydantic import SecretStr

from bot.bootstrap import Runtime
from config.discord import DiscordSettings
from tests.e2e.discord.conftest import running
from tests.support.discord_standin import DiscordStandin
from tests.support.processes import stop

ROOT = Path(__file__).resolve().parents[3]


def shard_settings(base: DiscordSettings, token: str, ids: tuple[int, ...]) -> DiscordSettings:
    return base.model_copy(update={"token": SecretStr(token), "shard_count": 2, "shard_ids": ids, "allowed_guilds": ()})


def thread_openers(standin: DiscordStandin, channel_id: str) -> list[str | None]:
    """Which token opened each thread from a message in ``channel_id``."""
    return [c.token for c in standin.find("POST", rf"/channels/{channel_id}/messages/\d+/threads", status=200)]


async def test_two_clients_with_disjoint_shards_identify_and_answer_only_their_own(
        runtime: Runtime, discord_settings: DiscordSettings, standin: DiscordStandin) -> None:
    guild0, channel0 = standin.add_guild("On shard zero", shard=(0, 2))
    # the stand-in's two standard guilds are both on shard 1 of 2
    async with running(runtime, shard_settings(discord_settings, "token-a", (0,))) as first, \
            running(runtime, shard_settings(discord_settings, "token-b", (1,))) as second:
        assert isinstance(first.client, discord.AutoShardedClient)
        assert standin.identified_shards("token-a") == [(0, 2)]
        assert standin.identified_shards("token-b") == [(1, 2)]
        assert {g.id for g in first.client.guilds} == {int(guild0)}
        assert {g.id for g in second.client.guilds} == {int(standin.guild_id), int(standin.other_guild_id)}
        assert standin.find("PUT", r"/applications/\d+/commands")[0].token == "token-a"  # shard 0 registers
        assert len(standin.find("PUT", r"/applications/\d+/commands")) == 1

        on_zero = await standin.post(channel0, "hello from shard zero", mention=True)
        on_one = await standin.post(standin.general_id, "hello from shard one", mention=True)
        await standin.settle(quiet=0.3)

    assert thread_openers(standin, channel0) == ["token-a"]
    assert thread_openers(standin, standin.general_id) == ["token-b"]
    assert standin.bot_texts(on_zero["id"])[-1].startswith("(demo)")
    assert standin.bot_texts(on_one["id"])[-1].startswith("(demo)")


def worker_env(standin: DiscordStandin, redis_url: str, token: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("ANTHROPIC_", "REDIS_", "THREADGUARD_", "DISCORD_"))}
    return {**base, "DISCORD_TOKEN": token, "DISCORD_API_BASE_URL": standin.api_base_url,
            "DISCORD_GATEWAY_URL": standin.gateway_url, "DISCORD_STREAM_EDIT_INTERVAL": "0.1",
            "REDIS_URL": redis_url, "THREADGUARD_LOG_LEVEL": "INFO", **extra}


@contextlib.asynccontextmanager
async def worker(env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """``threadguard discord --demo`` (the offline model) in a process of its own; stopped with SIGINT (then
    SIGKILL) at the end."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "adapters", "discord", "--demo",
                                                cwd=ROOT, env=env,
                                                stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        yield proc
    finally:
        await stop(proc, signal.SIGINT)


async def test_two_worker_processes_split_the_shards(standin: DiscordStandin, redis_server, redis_client) -> None:
    _, channel0 = standin.add_guild("On shard zero", shard=(0, 2))
    env_a = worker_env(standin, redis_server.url, "token-a", DISCORD_SHARD_COUNT="2", DISCORD_SHARD_IDS="0")
    env_b = worker_env(standin, redis_server.url, "token-b", DISCORD_SHARD_COUNT="2", DISCORD_SHARD_IDS="1")
    async with worker(env_a) as first, worker(env_b) as second:
        await standin.wait_until(lambda: len(standin.sessions) == 2, timeout=30, what="both processes identified")
        await standin.wait_until(lambda: bool(standin.commands), timeout=10, what="command sync")
        assert standin.identified_shards("token-a") == [(0, 2)]
        assert standin.identified_shards("token-b") == [(1, 2)]

        on_zero = await standin.post(channel0, "hello from shard zero", mention=True)
        on_one = await standin.post(standin.general_id, "hello from shard one", mention=True)
        await standin.wait_until(lambda: bool(standin.bot_texts(on_zero["id"])) and bool(
            standin.bot_texts(on_one["id"])), timeout=15, what="both answers")
        assert first.returncode is None and second.returncode is None

    assert thread_openers(standin, channel0) == ["token-a"]
    assert thread_openers(standin, standin.general_id) == ["token-b"]
    assert standin.bot_texts(on_zero["id"])[-1].startswith("(demo)")
    assert len(standin.identifies) == 2


async def test_a_shard_outside_the_count_stops_the_process_with_a_clear_message(
        standin: DiscordStandin, redis_server) -> None:
    env = worker_env(standin, redis_server.url, "token-c", DISCORD_SHARD_COUNT="2", DISCORD_SHARD_IDS="1-2")
    async with worker(env) as proc:
        assert proc.stderr is not None
        err = (await asyncio.wait_for(proc.stderr.read(), 30)).decode()
        await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode not in (0, None)
    assert "DISCORD_SHARD_IDS names shard 2, but with DISCORD_SHARD_COUNT=2 the shards are numbered 0 to 1" in err
    assert "Traceback" not in err and "token-c" not in err
    assert standin.identifies == [] and standin.calls == []
