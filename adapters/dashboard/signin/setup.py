"""The sign-in providers the environment configures (``run_dashboard``)."""

from __future__ import annotations

from adapters.dashboard.signin import Provider
from adapters.dashboard.signin.discord import DiscordSignIn
from adapters.dashboard.signin.slack import BotTokens, SlackSignIn
from adapters.slack.installations import RedisInstallationStore, TokenCipher
from bot.bootstrap import Runtime
from bot.store.installations import InstallationRecords, workspace_key
from config.dashboard import DashboardSettings
from config.discord import DiscordSettings
from config.slack import SlackSettings


def sign_in_providers(dash: DashboardSettings, runtime: Runtime) -> list[Provider]:
    providers: list[Provider] = []
    discord = DiscordSettings()
    if discord.client_id and discord.client_secret and discord.token:
        providers.append(DiscordSignIn(
            client_id=discord.client_id, client_secret=discord.client_secret.get_secret_value(),
            bot_token=discord.require_token(), api_base_url=discord.api_base_url,
            authorize_url=dash.discord_authorize_url, communities=runtime.communities))
    slack = SlackSettings()
    if slack.client_id and slack.client_secret:
        records = InstallationRecords(runtime.redis)
        providers.append(SlackSignIn(
            client_id=slack.client_id, client_secret=slack.require_client_secret(),
            api_base_url=slack.api_base_url, authorize_url=dash.slack_authorize_url,
            bot_tokens=_slack_bot_tokens(slack, records),
            installers=lambda team: records.installer(workspace_key(None, team)),
            communities=runtime.communities))
    return providers


def _slack_bot_tokens(slack: SlackSettings, records: InstallationRecords) -> BotTokens:
    if slack.bot_token is not None and not slack.token_encryption_key:
        single = slack.require_bot_token()

        async def one(team: str) -> str | None:
            return single

        return one
    store = RedisInstallationStore(records, TokenCipher(slack.require_token_key()))

    async def of_team(team: str) -> str | None:
        bot = await store.async_find_bot(enterprise_id=None, team_id=team)
        return bot.bot_token if bot is not None else None

    return of_team
