"""Checks of the stand-ins' sign-in side (not of threadguard): Discord's OAuth2 with PKCE and the guild reads
with the bot token, over aiohttp; Sign in with Slack through slack_sdk's real Web API client."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import pytest_asyncio
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.support import discord_oauth, slack_oidc
from tests.support.discord_standin import DiscordStandin
from tests.support.slack_standin import SlackStandin

pytestmark = [pytest.mark.standin, pytest.mark.timeout(30)]

VERIFIER = "v" * 50
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
REDIRECT = "http://127.0.0.1:1/login/x/callback"


@pytest_asyncio.fixture
async def discord() -> AsyncIterator[DiscordStandin]:
    standin = DiscordStandin()
    await standin.start()
    try:
        yield standin
    finally:
        await standin.stop()


async def _code(http: aiohttp.ClientSession, url: str, params: dict[str, str]) -> str:
    async with http.get(url, params=params, allow_redirects=False) as response:
        assert response.status == 302
        return parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]


async def test_discord_oauth_code_pkce_once_and_revoke(discord: DiscordStandin) -> None:
    discord.oauth.signed_in = discord.mod
    params = {"client_id": discord_oauth.CLIENT_ID, "response_type": "code", "scope": "identify guilds",
              "state": "s", "redirect_uri": REDIRECT, "code_challenge": CHALLENGE, "code_challenge_method": "S256"}
    token_url = f"{discord.api_base_url}/oauth2/token"
    form = {"grant_type": "authorization_code", "redirect_uri": REDIRECT, "client_id": discord_oauth.CLIENT_ID,
            "client_secret": discord_oauth.CLIENT_SECRET}
    async with aiohttp.ClientSession() as http:
        async with http.get(discord.oauth.authorize_url, params={**params, "code_challenge_method": "plain"},
                            allow_redirects=False) as bad:
            assert bad.status == 400
        code = await _code(http, discord.oauth.authorize_url, params)
        async with http.post(token_url, data={**form, "code": code, "code_verifier": "w" * 50}) as wrong:
            assert wrong.status == 400  # wrong verifier; the code is spent too
        code = await _code(http, discord.oauth.authorize_url, params)
        async with http.post(token_url, data={**form, "code": code, "code_verifier": VERIFIER}) as ok:
            access = (await ok.json())["access_token"]
        async with http.post(token_url, data={**form, "code": code, "code_verifier": VERIFIER}) as again:
            assert again.status == 400
        bearer = {"Authorization": f"Bearer {access}"}
        async with http.get(f"{discord.api_base_url}/users/@me", headers=bearer) as me:
            assert (await me.json())["id"] == discord.mod["id"]
        async with http.get(f"{discord.api_base_url}/users/@me/guilds", headers=bearer) as guilds:
            assert [g["id"] for g in await guilds.json()] == [discord.guild_id]
        bot = {"Authorization": "Bot test-token"}
        member_url = f"{discord.api_base_url}/guilds/{discord.guild_id}/members"
        async with http.get(f"{member_url}/{discord.mod['id']}", headers=bot) as member:
            assert (await member.json())["roles"] == [discord.mod_role_id]
        async with http.get(f"{member_url}/{discord.mod['id']}", headers=bearer) as member:
            assert member.status == 401  # guild reads need the bot's token
        discord.oauth.leave(discord.guild_id, discord.mod)
        async with http.get(f"{member_url}/{discord.mod['id']}", headers=bot) as gone:
            assert gone.status == 404 and (await gone.json())["code"] == 10007
        async with http.post(f"{token_url}/revoke", data={"token": access}) as revoked:
            assert revoked.status == 200
        async with http.get(f"{discord.api_base_url}/users/@me", headers=bearer) as me:
            assert me.status == 401


async def test_sign_in_with_slack_through_slack_sdk() -> None:
    standin = SlackStandin()
    await standin.start()
    oidc = slack_oidc.install(standin)
    oidc.signed_in = slack_oidc.MOD
    client = AsyncWebClient(base_url=standin.base_url)
    params = {"client_id": slack_oidc.CLIENT_ID, "response_type": "code", "scope": "openid profile",
              "state": "s", "redirect_uri": REDIRECT, "code_challenge": CHALLENGE}
    try:
        async with aiohttp.ClientSession() as http:
            code = await _code(http, slack_oidc.authorize_url(standin), params)
            with pytest.raises(SlackApiError):
                await client.openid_connect_token(client_id=slack_oidc.CLIENT_ID, client_secret="wrong", code=code,
                                                  redirect_uri=REDIRECT, code_verifier=VERIFIER)
            code = await _code(http, slack_oidc.authorize_url(standin), params)
        token = await client.openid_connect_token(client_id=slack_oidc.CLIENT_ID,
                                                  client_secret=slack_oidc.CLIENT_SECRET, code=code,
                                                  redirect_uri=REDIRECT, code_verifier=VERIFIER)
        info = await client.openid_connect_userInfo(token=token["access_token"])
        assert info["https://slack.com/team_id"] == slack_oidc.TEAM and info["sub"] == slack_oidc.MOD
        user = await client.users_info(token=slack_oidc.BOT_TOKEN, user=slack_oidc.ADMIN)
        assert user["user"]["is_admin"] is True
        group = await client.usergroups_users_list(token=slack_oidc.BOT_TOKEN, usergroup=slack_oidc.MOD_GROUP)
        assert group["users"] == [slack_oidc.MOD]
        await client.auth_revoke(token=token["access_token"])
        with pytest.raises(SlackApiError):
            await client.openid_connect_userInfo(token=token["access_token"])
    finally:
        await standin.stop()
