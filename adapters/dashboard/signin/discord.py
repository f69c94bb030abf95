"""Sign in with Discord: OAuth2 authorization code with PKCE, scopes ``identify guilds``.

Rights, read with the bot's token (no further user scope): Manage Server, Administrator or owning the
guild -> admin; Manage Messages, the community's moderator role or its listed moderators -> moderator.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

import aiohttp

from adapters.dashboard.signin import ADMIN, MODERATOR, SignedIn, SignInFailed
from config.communities import Communities, CommunityConfig

log = logging.getLogger(__name__)

ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
MANAGE_MESSAGES = 1 << 13
SCOPES = "identify guilds"


def discord_role(guild: dict[str, Any], member: dict[str, Any], user_id: str, config: CommunityConfig) -> str | None:
    """The person's right in the guild from its roles' permissions and the community's settings."""
    held = set(member.get("roles") or [])
    permissions = 0
    for role in guild.get("roles") or []:
        if role.get("id") == guild.get("id") or role.get("id") in held:  # @everyone has the guild's id
            permissions |= int(role.get("permissions") or 0)
    if str(guild.get("owner_id")) == user_id or permissions & (ADMINISTRATOR | MANAGE_GUILD):
        return ADMIN
    if (permissions & MANAGE_MESSAGES or (config.moderator_role is not None and config.moderator_role in held)
            or user_id in config.moderators):
        return MODERATOR
    return None


class DiscordSignIn:
    name = "discord"
    label = "Sign in with Discord"

    def __init__(self, *, client_id: str, client_secret: str, bot_token: str, api_base_url: str,
                 authorize_url: str, communities: Communities, timeout: float = 10.0) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._bot = bot_token
        self._api = api_base_url.rstrip("/")
        self._authorize = authorize_url
        self.communities = communities
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()

    def authorize_url(self, *, state: str, challenge: str, redirect_uri: str) -> str:
        query = {"response_type": "code", "client_id": self._client_id, "scope": SCOPES, "state": state,
                 "redirect_uri": redirect_uri, "code_challenge": challenge, "code_challenge_method": "S256",
                 "prompt": "none"}
        return f"{self._authorize}?{urlencode(query)}"

    async def _call(self, method: str, path: str, *, auth: str, data: dict[str, str] | None = None) -> Any:
        """The JSON of a 2xx answer; None for 403/404 (not there, or not allowed); SignInFailed otherwise."""
        try:
            async with self.http.request(method, f"{self._api}{path}", data=data,
                                         headers={"Authorization": auth} if auth else {}) as response:
                if response.status in (403, 404):
                    return None
                if response.status >= 300:
                    log.warning("discord sign-in: %s %s answered %s", method, path.split("?")[0], response.status)
                    raise SignInFailed(f"discord answered {response.status}")
                return await response.json(content_type=None) if response.status != 204 else {}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SignInFailed(f"discord unreachable ({type(exc).__name__})") from exc

    async def sign_in(self, *, code: str, verifier: str, redirect_uri: str) -> SignedIn:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": verifier, "client_id": self._client_id, "client_secret": self._client_secret}
        token = await self._call("POST", "/oauth2/token", auth="", data=form)
        if not token or not token.get("access_token"):
            raise SignInFailed("discord refused the code")
        bearer = f"Bearer {token['access_token']}"
        try:
            me = await self._call("GET", "/users/@me", auth=bearer)
            guilds = await self._call("GET", "/users/@me/guilds", auth=bearer)
        finally:
            await self._revoke(token["access_token"])
        if not me or guilds is None:
            raise SignInFailed("discord did not say who signed in")
        name = str(me.get("global_name") or me.get("username") or me["id"])
        return SignedIn(str(me["id"]), name, tuple(str(g["id"]) for g in guilds))

    async def _revoke(self, access_token: str) -> None:
        try:
            await self._call("POST", "/oauth2/token/revoke", auth="", data={
                "token": access_token, "token_type_hint": "access_token", "client_id": self._client_id,
                "client_secret": self._client_secret})
        except SignInFailed:
            log.warning("discord sign-in: revoking the person's token failed (it expires on its own)")

    async def rights(self, user_id: str, candidates: Iterable[str]) -> dict[str, str]:
        bot = f"Bot {self._bot}"
        out: dict[str, str] = {}
        for guild_id in candidates:
            guild = await self._call("GET", f"/guilds/{guild_id}", auth=bot)
            if guild is None:
                continue  # the bot is not in that guild
            member = await self._call("GET", f"/guilds/{guild_id}/members/{user_id}", auth=bot)
            if member is None:
                continue  # the person left
            role = discord_role(guild, member, user_id, self.communities.get(guild_id))
            if role is not None:
                out[guild_id] = role
        return out

    async def channels(self, community: str) -> list[tuple[str, str]] | None:
        if not community.isdigit():
            return None
        try:
            found = await self._call("GET", f"/guilds/{community}/channels", auth=f"Bot {self._bot}")
        except SignInFailed:
            return None
        if found is None:
            return None
        return [(str(c["id"]), str(c.get("name") or c["id"])) for c in found if c.get("type") in (0, 5, 15)]
