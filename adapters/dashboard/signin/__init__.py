"""Sign in with the platform a community lives on (Discord OAuth2, Sign in with Slack) and the rights that
follow from it.

A sign-in starts at ``/login/<provider>``: a one-use state (random, stored hashed in Redis for ten minutes
with the PKCE verifier and the return address, bound to a cookie of the browser that started it) goes to
the platform; the callback consumes it (a second use, another browser's cookie or a tampered state finds
nothing), exchanges the code with the verifier, reads who the person is and which communities to look
at, revokes the person's platform token at once (nothing of it is kept) and asks the platform, with the
bot's own token, which rights they hold. Those rights are looked at again while the session lives
(``DASHBOARD_RIGHTS_RECHECK_SECONDS``), so a removed role or a member who left loses access within that
time.

    tg:dash:signin:<digest>   hash  provider, verifier, next, browser (digest of the browser's cookie); EX
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from config.errors import ThreadguardError

ADMIN = "admin"
MODERATOR = "moderator"
PENDING_TTL_S = 600


class SignInFailed(ThreadguardError):
    """The platform refused the sign-in or could not be asked; the person is told to try again."""

    user_message = "Signing in with the platform did not work. Please try again."


@dataclass(frozen=True)
class SignedIn:
    """Who signed in, and the communities whose rights to look at."""

    user_id: str
    name: str
    candidates: tuple[str, ...]


class Provider(Protocol):
    """A platform people sign in with."""

    name: str
    label: str

    def authorize_url(self, *, state: str, challenge: str, redirect_uri: str) -> str: ...

    async def sign_in(self, *, code: str, verifier: str, redirect_uri: str) -> SignedIn: ...

    async def rights(self, user_id: str, candidates: Iterable[str]) -> dict[str, str]:
        """``{community: "admin" | "moderator"}`` for the communities among ``candidates`` where the person
        holds a right now (read with the bot's token). Raises ``SignInFailed`` when the platform cannot be
        asked."""
        ...

    async def channels(self, community: str) -> list[tuple[str, str]] | None:
        """(id, name) of the community's text channels, read with the bot's token; None when this platform
        does not serve the community."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class Pending:
    provider: str
    verifier: str
    next: str


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge), RFC 7636."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def local_path(value: str | None) -> str:
    """The return address if it is a path on this dashboard; ``/cases`` for anything else (another host,
    a scheme, ``//host``, a backslash, control characters)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/cases"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return "/cases"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/cases"
    return value


class PendingSignIns:
    """One-use sign-in states on the dashboard's Redis client (decoded responses)."""

    def __init__(self, client: Any, secret: bytes) -> None:
        self.client = client
        self._secret = secret

    def _digest(self, purpose: str, value: str) -> str:
        return hmac.new(self._secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    async def start(self, provider: str, browser: str, next_path: str) -> tuple[str, str]:
        """(state, challenge) of a new sign-in by the browser holding the cookie ``browser``."""
        state = secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        key = f"tg:dash:signin:{self._digest('state', state)}"
        await self.client.hset(key, mapping={"provider": provider, "verifier": verifier, "next": next_path,
                                             "browser": self._digest("browser", browser)})
        await self.client.expire(key, PENDING_TTL_S)
        return state, challenge

    async def finish(self, provider: str, state: str, browser: str | None) -> Pending | None:
        """The sign-in ``state`` names, consumed (valid once), if this browser started it for ``provider``."""
        if not state or len(state) > 200 or not browser:
            return None
        key = f"tg:dash:signin:{self._digest('state', state)}"
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hgetall(key)
            pipe.delete(key)
            data, _ = await pipe.execute()
        if not data or data.get("provider") != provider:
            return None
        if not hmac.compare_digest(data.get("browser", ""), self._digest("browser", browser)):
            return None
        return Pending(provider, data["verifier"], local_path(data.get("next")))
