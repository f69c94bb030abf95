"""Sign in with Slack (OpenID Connect), through slack_sdk's Web API client.

Rights, read with the workspace's bot token: workspace admins and owners, and the person who installed
the app, -> admin; the community's moderator user group or its listed moderators -> moderator.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlencode

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.dashboard.signin import ADMIN, MODERATOR, SignedIn, SignInFailed
from config.communities import Communities

log = logging.getLogger(__name__)

SCOPES = "openid profile"
TEAM_CLAIM = "https://slack.com/team_id"

#: The workspace's bot token (None: the app is not installed there).
BotTokens = Callable[[str], Awaitable[str | None]]
#: The user who installed the app in the workspace (its first admin), if known.
Installers = Callable[[str], Awaitable[str | None]]


def _quiet_logger() -> logging.Logger:
    """slack_sdk logs request and response bodies at DEBUG; these carry the client secret and tokens."""
    quiet = logging.getLogger("threadguard.dashboard.slack_calls")
    quiet.setLevel(logging.INFO)
    return quiet


class SlackSignIn:
    name = "slack"
    label = "Sign in with Slack"

    def __init__(self, *, client_id: str, client_secret: str, api_base_url: str, authorize_url: str,
                 bot_tokens: BotTokens, installers: Installers, communities: Communities,
                 timeout: int = 10) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._authorize = authorize_url
        self._bot_tokens = bot_tokens
        self._installers = installers
        self.communities = communities
        self._client = AsyncWebClient(base_url=api_base_url, timeout=timeout, logger=_quiet_logger())

    async def aclose(self) -> None:
        return None

    def authorize_url(self, *, state: str, challenge: str, redirect_uri: str) -> str:
        query = {"response_type": "code", "client_id": self._client_id, "scope": SCOPES, "state": state,
                 "redirect_uri": redirect_uri, "code_challenge": challenge, "code_challenge_method": "S256"}
        return f"{self._authorize}?{urlencode(query)}"

    async def sign_in(self, *, code: str, verifier: str, redirect_uri: str) -> SignedIn:
        try:
            token = await self._client.openid_connect_token(
                client_id=self._client_id, client_secret=self._client_secret, code=code, redirect_uri=redirect_uri,
                grant_type="authorization_code", code_verifier=verifier)
            access = str(token["access_token"])
            try:
                info = await self._client.openid_connect_userInfo(token=access)
            finally:
                await self._revoke(access)
        except (SlackApiError, SlackClientError, KeyError, TimeoutError) as exc:
            raise SignInFailed(f"slack refused the sign-in ({type(exc).__name__})") from exc
        team = info.get(TEAM_CLAIM)
        user = info.get("https://slack.com/user_id") or info.get("sub")
        if not team or not user:
            raise SignInFailed("slack did not say who signed in")
        return SignedIn(str(user), str(info.get("name") or user), (str(team),))

    async def _revoke(self, access_token: str) -> None:
        try:
            await self._client.auth_revoke(token=access_token)
        except (SlackApiError, SlackClientError, TimeoutError):
            log.warning("slack sign-in: revoking the person's token failed (it expires on its own)")

    async def rights(self, user_id: str, candidates: Iterable[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for team in candidates:
            role = await self._role(team, user_id)
            if role is not None:
                out[team] = role
        return out

    async def _role(self, team: str, user_id: str) -> str | None:
        token = await self._bot_tokens(team)
        if token is None:
            return None
        config = self.communities.get(team)
        try:
            user = (await self._client.users_info(token=token, user=user_id))["user"]
            if user.get("deleted") or user.get("team_id") not in (None, team):
                return None
            if user.get("is_admin") or user.get("is_owner") or await self._installers(team) == user_id:
                return ADMIN
            if user_id in config.moderators:
                return MODERATOR
            if config.moderator_group:
                members = await self._client.usergroups_users_list(token=token, usergroup=config.moderator_group)
                if user_id in (members.get("users") or []):
                    return MODERATOR
        except SlackApiError as exc:
            if exc.response.get("error") in ("user_not_found", "account_inactive", "no_such_subteam"):
                return None
            raise SignInFailed(f"slack answered {exc.response.get('error')}") from exc
        except (SlackClientError, TimeoutError) as exc:
            raise SignInFailed(f"slack unreachable ({type(exc).__name__})") from exc
        return None

    async def channels(self, community: str) -> list[tuple[str, str]] | None:
        token = await self._bot_tokens(community)
        if token is None:
            return None
        try:
            found = await self._client.conversations_list(token=token, types="public_channel,private_channel",
                                                          exclude_archived=True, limit=1000)
        except (SlackApiError, SlackClientError, TimeoutError):
            return None
        return [(str(c["id"]), str(c.get("name") or c["id"])) for c in found.get("channels") or []]
