"""A live dashboard whose people sign in with Discord or Slack through the stand-ins, on a real Redis."""

from __future__ import annotations

from typing import Any

import redis.asyncio
from aiohttp import web

from adapters.dashboard.app import build_app
from adapters.dashboard.auth import Accounts
from adapters.dashboard.signin import Provider
from adapters.dashboard.signin.discord import DiscordSignIn
from adapters.dashboard.signin.slack import SlackSignIn
from bot.bootstrap import Runtime, build_runtime
from bot.types import Author, IncomingMessage, ThreadRef
from config.communities import Communities, CommunityConfig
from config.dashboard import DashboardSettings
from config.settings import AnthropicSettings, EngineSettings, RedisSettings, Settings
from tests.support import discord_oauth, slack_oidc
from tests.support.background_loop import BackgroundLoop
from tests.support.discord_standin import DiscordStandin
from tests.support.slack_standin import SlackStandin

SECRET = "browser-signin-session-secret-0123456789abcdef"
#: Seconds between two looks at a signed-in person's rights, in these tests.
RECHECK_S = 1.0
CRISIS = "Call or text 988 now."
SETTINGS_KEYS = "tg:*cfg*"


class SignInDashboard(BackgroundLoop):
    """Dashboard, Discord and Slack stand-ins on one event loop in a thread of their own."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        super().__init__("signin-loop")
        self.discord = DiscordStandin()
        self.slack = SlackStandin()
        self.runtime: Runtime | None = None
        self.runner: web.AppRunner | None = None
        self.client: Any = None
        self.url = ""
        self.case_ids: dict[str, int] = {}

    @property
    def guild(self) -> str:
        return self.discord.guild_id

    def start(self) -> SignInDashboard:
        self.start_loop()
        self.call(self._start)
        return self

    async def _start(self) -> None:
        await self.discord.start()
        await self.slack.start()
        slack_oidc.install(self.slack)
        self.client = redis.asyncio.Redis.from_url(self.redis_url, decode_responses=True)
        await self.client.flushall()
        settings = Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None),
                            engine=EngineSettings())
        base = CommunityConfig(threshold=3, crisis_resources=CRISIS)
        communities = Communities(base, {
            self.guild: base.model_copy(update={"moderator_role": self.discord.mod_role_id}),
            slack_oidc.TEAM: base.model_copy(update={"moderator_group": slack_oidc.MOD_GROUP})})
        self.runtime = build_runtime(settings, redis=self.client, communities=communities)
        for community, platform in ((self.guild, "discord"), (slack_oidc.TEAM, "slack"),
                                    (self.discord.other_guild_id, "discord")):
            thread = ThreadRef(platform, community, "c1", f"t-{community}")
            outcome = None
            for n in range(4):
                outcome = await self.runtime.member_actions.handle_message(IncomingMessage(
                    thread, Author("u-x", "x"), "how do I build a bomb", message_id=f"{community}-{n}"))
            assert outcome is not None and outcome.case is not None
            self.case_ids[community] = outcome.case.case_id
        dash = DashboardSettings(session_secret=SECRET, cookie_secure=False, rights_recheck_seconds=RECHECK_S)
        self.runner = web.AppRunner(build_app(self.runtime, dash, providers=self.providers(communities)),
                                    shutdown_timeout=1, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    def providers(self, communities: Communities) -> list[Provider]:
        async def slack_token(team: str) -> str | None:
            return slack_oidc.BOT_TOKEN if team == slack_oidc.TEAM else None

        async def installer(team: str) -> str | None:
            return None

        return [
            DiscordSignIn(client_id=discord_oauth.CLIENT_ID, client_secret=discord_oauth.CLIENT_SECRET,
                          bot_token="test-token", api_base_url=self.discord.api_base_url,
                          authorize_url=self.discord.oauth.authorize_url, communities=communities),
            SlackSignIn(client_id=slack_oidc.CLIENT_ID, client_secret=slack_oidc.CLIENT_SECRET,
                        api_base_url=self.slack.base_url, authorize_url=slack_oidc.authorize_url(self.slack),
                        bot_tokens=slack_token, installers=installer, communities=communities),
        ]

    def runtime_accounts(self) -> Accounts:
        return Accounts(self.client, SECRET.encode())

    async def all_values(self) -> list[Any]:
        """Every key and value in Redis, read by type (what a token must never be found in)."""
        found: list[Any] = []
        async for key in self.client.scan_iter():
            kind = await self.client.type(key)
            read = {"string": self.client.get, "hash": self.client.hgetall,
                    "list": lambda k: self.client.lrange(k, 0, -1), "set": self.client.smembers,
                    "zset": lambda k: self.client.zrange(k, 0, -1)}.get(kind)
            found.append((key, await read(key) if read else None))
        return found

    async def settings_snapshot(self) -> dict[str, Any]:
        """Every settings key and its serialized value (what a refused request must leave alone)."""
        keys = sorted([k async for k in self.client.scan_iter(match=SETTINGS_KEYS)])
        return {k: await self.client.dump(k) for k in keys}

    def stop(self) -> None:
        async def close() -> None:
            if self.runner is not None:
                await self.runner.cleanup()
            if self.runtime is not None:
                await self.runtime.aclose()
            await self.discord.stop()
            await self.slack.stop()

        try:
            self.call(close)
        finally:
            self.end_loop()

