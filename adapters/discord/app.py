"""``threadguard discord``: build the discord.py client around the engine and run it."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl
from discord import app_commands
from pydantic import ValidationError

from bot.bootstrap import Runtime, build_runtime
from bot.errors import ConfigurationError
from config.discord import DiscordSettings
from config.settings import Settings

from .appeal import appeal_button_type, appeal_view
from .commands import Commands
from .conversations import Conversations
from .freeze import ThreadLocker
from .modlog import ModLog
from .notices import NoticeRelay
from .shared import OwnConversations, own_button_type, own_view
from .tracing import http_trace

log = logging.getLogger(__name__)


def intents() -> discord.Intents:
    """Guilds, guild and DM messages, and Message Content (privileged: enable it in the portal)."""
    chosen = discord.Intents.none()
    chosen.guilds = True
    chosen.guild_messages = True
    chosen.dm_messages = True
    chosen.message_content = True
    return chosen


def point_at(settings: DiscordSettings) -> None:
    """Aim discord.py at the configured REST and gateway endpoints (Discord by default).

    discord.py keeps both as class attributes, so this applies to every client in the process.
    """
    discord.http.Route.BASE = settings.api_base_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)


@dataclass
class DiscordBot:
    """The client and the adapter parts wired to it."""

    client: discord.Client
    tree: app_commands.CommandTree[discord.Client]
    conversations: Conversations
    commands: Commands
    settings: DiscordSettings
    notices: NoticeRelay

    async def start(self) -> None:
        await self.client.start(self.settings.require_token())

    async def close(self) -> None:
        await self.notices.stop()
        await self.conversations.surface.answers_shown()  # the last edits still on their way
        await self.client.close()


def make_client(settings: DiscordSettings, guild_ready_timeout: float,
                trace: aiohttp.TraceConfig | None = None) -> discord.Client:
    """One connection; or, with ``DISCORD_SHARD_COUNT``, every shard; or, with ``DISCORD_SHARD_IDS`` too,
    only the shards this process runs (other processes run the rest, on the same Redis)."""
    settings.require_shards()
    options: dict[str, object] = {"intents": intents(), "guild_ready_timeout": guild_ready_timeout,
                                  "allowed_mentions": discord.AllowedMentions.none()}
    if trace is not None:
        options["http_trace"] = trace
    if settings.shard_ids:
        return discord.AutoShardedClient(shard_count=settings.shard_count, shard_ids=list(settings.shard_ids),
                                         **options)  # type: ignore[arg-type]
    if settings.shard_count is not None:
        return discord.AutoShardedClient(shard_count=settings.shard_count or None, **options)  # type: ignore[arg-type]
    return discord.Client(**options)  # type: ignore[arg-type]


def runs_first_shard(settings: DiscordSettings) -> bool:
    """Whether this process runs shard 0 (direct messages arrive there; it registers the commands)."""
    return not settings.shard_ids or 0 in settings.shard_ids


def build_bot(runtime: Runtime, settings: DiscordSettings, *, typing_delay: float = 0.3,
              guild_ready_timeout: float = 2.0) -> DiscordBot:
    """Build the client (sharded when ``DISCORD_SHARD_COUNT`` is set); nothing connects yet."""
    point_at(settings)
    client = make_client(settings, guild_ready_timeout, trace=http_trace(runtime.engine.metrics))
    tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)
    locker = ThreadLocker(client, enabled=settings.lock_ended_threads)
    modlog = ModLog(client, runtime.communities, attempts=settings.modlog_attempts,
                    retry_delay=settings.modlog_retry_delay)
    conversations = Conversations(client, runtime.member_actions, runtime.communities, settings, locker, modlog,
                                  typing_delay=typing_delay)
    commands = Commands(tree, conversations, runtime.moderation, runtime.cases,
                        confirm_timeout=settings.confirm_timeout)
    appeal_button = appeal_button_type(runtime.review, modlog.post_appeal)
    client.add_dynamic_items(appeal_button)  # clicks are routed by custom_id, even after a restart
    conversations.surface.appeal_view = lambda case: appeal_view(appeal_button, case.community, case.case_id)
    own_button = own_button_type(OwnConversations(client, runtime.member_actions).clicked)
    client.add_dynamic_items(own_button)
    conversations.surface.own_view = lambda ref: own_view(own_button, ref)
    notices = NoticeRelay(runtime, conversations, interval=settings.notice_poll_interval)
    bot = DiscordBot(client, tree, conversations, commands, settings, notices)

    async def setup_hook() -> None:
        await runtime.case_filing.reconcile()
        if settings.sync_commands and runs_first_shard(settings):
            synced = await tree.sync()
            log.info("registered %d slash command(s)", len(synced))
        notices.start()

    async def on_ready() -> None:
        user = client.user
        shards = f", shard(s) {sorted(client.shards)} of {client.shard_count}" \
            if isinstance(client, discord.AutoShardedClient) else ""
        log.info("connected to Discord as %s (%s) in %d guild(s)%s", user, user.id if user else "?",
                 len(client.guilds), shards)
        runtime.serving = True

    async def on_error(event: str, /, *args: object, **kwargs: object) -> None:
        """A handler that failed on what the gateway handed over: one line, no traceback above DEBUG."""
        error = sys.exc_info()[1]
        log.warning("discord %s event dropped: its handler failed (%s)", event, type(error).__name__)
        log.debug("handler failure", exc_info=error)

    client.setup_hook = setup_hook  # type: ignore[method-assign]
    client.event(on_ready)
    client.event(on_error)
    client.event(conversations.on_message)
    client.event(conversations.on_raw_message_edit)
    return bot


async def run_discord(settings: Settings, *, runtime: Runtime | None = None,
                      discord_settings: DiscordSettings | None = None) -> None:
    """Run until the process is stopped. ``DISCORD_TOKEN`` is required."""
    try:
        chosen = discord_settings or DiscordSettings()
        chosen.require_shards()
    except ValidationError as exc:
        for error in exc.errors(include_input=False):  # never the values: one of them is the token
            field = "".join(f"DISCORD_{str(part).upper()}: " for part in error["loc"][:1])
            log.error("Discord settings: %s%s", field, str(error["msg"]).removeprefix("Value error, "))
        raise ConfigurationError("invalid DISCORD_* settings") from None
    except ConfigurationError as exc:
        log.error("Discord settings: %s", exc)
        raise
    try:
        chosen.require_token()
    except ConfigurationError:
        log.error("DISCORD_TOKEN is not set: add a bot to your application in the Discord developer portal "
                  "and put its token in DISCORD_TOKEN")
        raise
    own = runtime is None
    rt = runtime or build_runtime(settings)
    bot = build_bot(rt, chosen)
    try:
        await bot.start()
    finally:
        await bot.close()
        if own:
            await rt.aclose()
