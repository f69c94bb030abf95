"""Sign in with Slack (OpenID Connect) on the Slack stand-in: the authorization page, ``openid.connect.token``
(code used once, PKCE checked when a challenge was sent, client by Basic auth), ``openid.connect.userInfo``
with the person's token, ``auth.revoke``, and ``users.info`` with the bot's token (admins and owners)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from tests.support import slack_standin

if TYPE_CHECKING:
    from tests.support.slack_standin import SlackStandin

CLIENT_ID = slack_standin.CLIENT_ID
CLIENT_SECRET = slack_standin.CLIENT_SECRET
BOT_TOKEN = slack_standin.BOT_TOKEN
TEAM = "T0TEAM"
MOD_GROUP = "S0MODS"
ADMIN, MOD, MEMBER = "UADMIN", "UMOD", "UMEMBER"
METHODS = frozenset({"openid.connect.token", "openid.connect.userInfo", "auth.revoke", "users.info"})


def authorize_url(standin: SlackStandin) -> str:
    return f"http://127.0.0.1:{standin.port}/openid/connect/authorize"


@dataclass
class SlackOpenID:
    standin: SlackStandin
    #: The person signed in to Slack in the browser (who approves the authorization page).
    signed_in: str | None = None
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    revoked: list[str] = field(default_factory=list)
    #: Every access token handed out (and each code), for tests that look for them in logs.
    issued: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    METHODS = METHODS

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code" or "openid" not in q.get("scope", ""):
            self.refused.append("authorize")
            return web.Response(status=400, text="invalid authorization request")
        if self.signed_in is None:
            denied = urlencode({"error": "access_denied", "state": q.get("state", "")})
            raise web.HTTPFound(f"{q['redirect_uri']}?{denied}")
        code = secrets.token_urlsafe(16)
        self.issued.append(code)
        self.codes[code] = {"user": self.signed_in, "challenge": q.get("code_challenge"),
                            "redirect_uri": q["redirect_uri"]}
        raise web.HTTPFound(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}")

    def handle(self, method: str, args: dict[str, Any], token: str, basic: tuple[str, str] | None) -> dict[str, Any]:
        if method == "openid.connect.token":
            return self._token(args, basic)
        if method == "openid.connect.userInfo":
            user = self.tokens.get(token)
            if user is None:
                return {"ok": False, "error": "invalid_auth"}
            return {"ok": True, "sub": user, "https://slack.com/user_id": user, "https://slack.com/team_id": TEAM,
                    "name": self.users[user]["name"]}
        if method == "auth.revoke":
            if self.tokens.pop(token, None) is not None:
                self.revoked.append(token)
            return {"ok": True, "revoked": True}
        if token != BOT_TOKEN:  # users.info
            return {"ok": False, "error": "invalid_auth"}
        user = self.users.get(str(args.get("user")))
        return {"ok": True, "user": user} if user is not None else {"ok": False, "error": "user_not_found"}

    def _token(self, args: dict[str, Any], basic: tuple[str, str] | None) -> dict[str, Any]:
        grant = self.codes.pop(str(args.get("code", "")), None)  # good once
        client = basic or (str(args.get("client_id")), str(args.get("client_secret")))
        verifier = str(args.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if (grant is None or client != (CLIENT_ID, CLIENT_SECRET) or grant["redirect_uri"] != args.get("redirect_uri")
                or (grant["challenge"] and grant["challenge"] != challenge)):
            self.refused.append("token")
            return {"ok": False, "error": "invalid_code"}
        token = f"xoxp-{secrets.token_urlsafe(12)}"
        self.tokens[token] = grant["user"]
        self.issued.append(token)
        return {"ok": True, "access_token": token, "token_type": "Bearer", "id_token": "not.checked.here"}


def install(standin: SlackStandin) -> SlackOpenID:
    """Sign in with Slack on ``standin``: an admin, a moderator (in the moderator user group) and a member."""
    oidc = SlackOpenID(standin)
    for user, name, admin in ((ADMIN, "sam", True), (MOD, "max", False), (MEMBER, "mia", False)):
        oidc.users[user] = {"id": user, "team_id": TEAM, "name": name, "deleted": False, "is_admin": admin,
                            "is_owner": False, "is_bot": False}
    standin.usergroups[MOD_GROUP] = [MOD]
    standin.oidc = oidc
    return oidc
