"""The Discord stand-in's OAuth2 side: the authorization page, the token endpoint (code with PKCE, used
once), revocation, and the reads a sign-in makes (``/users/@me`` and ``/users/@me/guilds`` with the
person's token; the guild, its channels and a member with the bot's token)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

if TYPE_CHECKING:
    from tests.support.discord_standin import DiscordStandin

CLIENT_ID = "4242"
CLIENT_SECRET = "discord-client-secret-for-tests"
MANAGE_GUILD = 1 << 5


@dataclass
class DiscordOAuth:
    standin: DiscordStandin
    #: The person signed in at "Discord" in the browser (who approves the authorization page).
    signed_in: dict[str, Any] | None = None
    #: Guild id -> member user ids.
    members: dict[str, set[str]] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    revoked: list[str] = field(default_factory=list)
    #: Every access token handed out (and each code), for tests that look for them in logs.
    issued: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def routes(self, app: web.Application, api: str) -> None:
        app.router.add_get("/oauth2/authorize", self._authorize)
        app.router.add_post(api + "/oauth2/token", self._token)
        app.router.add_post(api + "/oauth2/token/revoke", self._revoke)

    @property
    def authorize_url(self) -> str:
        return f"http://127.0.0.1:{self.standin.port}/oauth2/authorize"

    def join(self, guild_id: str, *users: dict[str, Any]) -> None:
        self.members.setdefault(guild_id, set()).update(u["id"] for u in users)

    def leave(self, guild_id: str, user: dict[str, Any]) -> None:
        self.members.get(guild_id, set()).discard(user["id"])

    async def _authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code" or q.get("scope") != "identify guilds" \
                or q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            self.refused.append("authorize")
            return web.Response(status=400, text="invalid authorization request")
        target = q["redirect_uri"]
        if self.signed_in is None:
            raise web.HTTPFound(f"{target}?{urlencode({'error': 'access_denied', 'state': q.get('state', '')})}")
        code = secrets.token_urlsafe(16)
        self.issued.append(code)
        self.codes[code] = {"user": self.signed_in["id"], "challenge": q["code_challenge"], "redirect_uri": target}
        raise web.HTTPFound(f"{target}?{urlencode({'code': code, 'state': q.get('state', '')})}")

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant = self.codes.pop(str(form.get("code", "")), None)  # a code is good once
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if (grant is None or form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET
                or grant["challenge"] != challenge or grant["redirect_uri"] != form.get("redirect_uri")):
            self.refused.append("token")
            return _json({"error": "invalid_grant"}, 400)
        token = secrets.token_urlsafe(24)
        self.tokens[token] = grant["user"]
        self.issued.append(token)
        return _json({"access_token": token, "token_type": "Bearer", "expires_in": 604800,
                      "refresh_token": secrets.token_urlsafe(24), "scope": "identify guilds"})

    async def _revoke(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(form.get("token", ""))
        if self.tokens.pop(token, None) is not None:
            self.revoked.append(token)
        return _json({})

    def person(self, authorization: str | None) -> dict[str, Any] | None:
        """The person a ``Bearer`` token belongs to (None: not a live person's token)."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        user_id = self.tokens.get(authorization.removeprefix("Bearer "))
        users = [self.standin.alice, self.standin.bob, self.standin.mod, self.standin.ann]
        return next((u for u in users if u["id"] == user_id), None)

    def guilds_of(self, user: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"id": gid, "name": self.standin.guilds[gid]["name"], "icon": None, "owner": False,
                 "permissions": "0", "features": []}
                for gid, users in self.members.items() if user["id"] in users and gid in self.standin.guilds]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, content_type="application/json")
