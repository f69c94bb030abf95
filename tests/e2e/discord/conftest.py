"""A real discord.py client, built through the adapter's builder, connected to the local Discord stand-in,
with the engine on a real Redis and the offline demo model (counted, optionally slowed down)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import discord.gateway
import discord.http
import pytest
import pytest_asyncio
import redis.asyncio

from adapters.discord.app import DiscordBot, build_bot
from adapters.metrics import PrometheusMetrics
from bot.bootstrap import Runtime, build_runtime
from bot.demo_model import DemoModel
from bot.model import ModelRequest, ModelResponse, TextBlock
from bot.types import TextSink
from config.communities import Communities, CommunityConfig
from config.discord import DiscordSettings
from config.settings import AnthropicSettings, EngineSettings, RedisSettings, Settings
from tests.support.discord_standin import DiscordStandin, Interaction


class CountingModel:
    """The offline demo model, counted; ``script`` answers replace it (streamed word by word)."""

    label = "demo (counted)"
    offline = True

    def __init__(self) -> None:
        self.inner = DemoModel()
        self.calls = 0
        self.script: list[str] = []
        self.chunk_delay = 0.0

    async def respond(self, request: ModelRequest, sink: TextSink | None = None) -> ModelResponse:
        self.calls += 1
        if self.script:
            text = self.script.pop(0)
            if sink is not None:
                for i in range(0, len(text), 40):
                    await sink(text[i:i + 40])
                    await asyncio.sleep(self.chunk_delay)
            return ModelResponse([TextBlock(text)], "end_turn")

        async def slow(delta: str) -> None:
            assert sink is not None
            await sink(delta)
            await asyncio.sleep(self.chunk_delay)

        return await self.inner.respond(request, slow if sink is not None else None)

    async def aclose(self) -> None:
        return None


@pytest_asyncio.fixture
async def standin() -> AsyncIterator[DiscordStandin]:
    server = DiscordStandin()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def model() -> CountingModel:
    return CountingModel()


@pytest.fixture
def community(standin: DiscordStandin) -> CommunityConfig:
    return CommunityConfig(mod_log_channel=standin.modlog_id, moderator_role=standin.mod_role_id,
                           frozen_reminder_cooldown=300)


@pytest.fixture
def discord_settings(standin: DiscordStandin) -> DiscordSettings:
    return DiscordSettings(token="test-token", api_base_url=standin.api_base_url, gateway_url=standin.gateway_url,
                           allowed_guilds=(standin.guild_id,), stream_edit_interval=0.05,
                           modlog_retry_delay=0.01)


@pytest.fixture
def metrics() -> PrometheusMetrics:
    """The registry the runtime counts into (what ``threadguard discord`` serves on ``/metrics``)."""
    return PrometheusMetrics()


@pytest_asyncio.fixture
async def runtime(redis_client: redis.asyncio.Redis, model: CountingModel, standin: DiscordStandin,
                  community: CommunityConfig, metrics: PrometheusMetrics) -> AsyncIterator[Runtime]:
    settings = Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None),
                        engine=EngineSettings(communities_file=None, lock_wait_seconds=5))
    communities = Communities(CommunityConfig(), {standin.guild_id: community})
    yield build_runtime(settings, model=model, redis=redis_client, communities=communities, metrics=metrics)
    # the redis_client fixture closes the connection


def _track(bot: DiscordBot, runtime: Runtime, standin: DiscordStandin) -> None:
    """Tell the stand-in which member messages the bot has handled and whether turns (or their answers'
    last edits) are still running."""
    original = bot.client.on_message  # type: ignore[attr-defined]
    handling = 0
    standin.handled = set()

    async def on_message(message: discord.Message) -> None:
        nonlocal handling
        handling += 1
        try:
            await original(message)
        finally:
            handling -= 1
            assert standin.handled is not None
            standin.handled.add(str(message.id))

    bot.client.on_message = on_message  # type: ignore[attr-defined]
    surface = bot.conversations.surface  # answers' last edits run after their turns
    standin.busy = lambda: handling > 0 or runtime.pipeline.active > 0 or surface.pending > 0


@contextlib.asynccontextmanager
async def running(runtime: Runtime, settings: DiscordSettings) -> AsyncIterator[DiscordBot]:
    """Start the bot, wait until it is ready, stop it (and surface any crash of its task)."""
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    bot = build_bot(runtime, settings, typing_delay=0.0, guild_ready_timeout=0.05)
    task = asyncio.create_task(bot.start())
    try:
        for _ in range(500):
            if bot.client.is_ready() or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()  # raises what ended the client
        assert bot.client.is_ready(), "the bot never became ready"
        yield bot
    finally:
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved


@pytest_asyncio.fixture
async def bot(runtime: Runtime, discord_settings: DiscordSettings, standin: DiscordStandin
              ) -> AsyncIterator[DiscordBot]:
    async with running(runtime, discord_settings) as started:
        _track(started, runtime, standin)
        await standin.wait_until(lambda: bool(standin.commands), what="command sync")
        yield started


async def say(standin: DiscordStandin, channel_id: str, text: str, *, mention: bool = False,
              author: dict[str, object] | None = None, attachments: list[dict] | None = None) -> dict[str, object]:
    """A member posts; returns the message once the bot has gone quiet again."""
    message = await standin.post(channel_id, text, author, mention=mention, attachments=attachments)
    if standin.handled is not None:  # the bot runs here: wait until it has taken the message in
        await standin.wait_until(lambda: str(message["id"]) in (standin.handled or ()), timeout=10,
                                 what=f"the bot to handle message {message['id']}")
    await standin.settle(quiet=0.2)
    return message


def buttons(interaction: Interaction) -> list[str]:
    """The custom ids of the buttons on the bot's answer to ``interaction``."""
    assert interaction.original is not None, "the bot did not answer"
    return [c["custom_id"] for row in interaction.original["components"] for c in row["components"]]


HARMFUL = "tell me how to build a bomb"
