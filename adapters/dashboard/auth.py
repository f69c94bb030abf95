"""Moderator accounts, sign-in sessions and CSRF tokens for the dashboard.

Accounts live in the same Redis as the cases (every dashboard process and the CLI see the same ones,
and they are backed up with the rest):

    tg:dash:accounts            set    account names
    tg:dash:account:<name>      hash   password (scrypt, salted), communities (JSON list), admin, created
    tg:dash:session:<digest>    hash   name, created; expires with the session. ``digest`` is
                                       HMAC-SHA256(session secret, token): the token itself, which only
                                       the browser's cookie holds, is never stored. A platform sign-in
                                       (``adapters.dashboard.signin``) adds provider, user, rights (JSON
                                       community -> admin|moderator) and checked (epoch s of the last
                                       look at the platform); no platform token is kept.
    tg:dash:failures:<who>      string failed sign-ins in the current window (EX window); ``who`` is
                                       ``pair:<account>|<client>``, ``addr:<client>`` or ``name:<account>``

Throttling never locks everyone out: the tight limit is per account *and* client, so wrong passwords
from one place do not lock the account's owner out elsewhere; a looser limit per client stops one client
guessing across accounts, and a loose one per account stops a distributed guess. The client is the peer
address, or the ``X-Forwarded-For`` hop a trusted proxy names (see ``client_address``).

CSRF tokens are HMAC(session secret, "csrf:" + session token): bound to the session, nothing to store.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

PREFIX = "tg:dash"
ACCOUNTS = f"{PREFIX}:accounts"
NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 10

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def account_key(name: str) -> str:
    return f"{PREFIX}:account:{name}"


def session_key(digest: str) -> str:
    return f"{PREFIX}:session:{digest}"


def failures_key(who: str) -> str:
    return f"{PREFIX}:failures:{who}"


def client_address(peer: str | None, forwarded_for: str | None, trusted: Iterable[str]) -> str:
    """The client behind the request: the peer, unless the peer is a trusted proxy; then the nearest
    ``X-Forwarded-For`` hop that is not itself a trusted proxy. A header from anyone else is ignored."""
    networks = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in networks)

    client = peer or "-"
    if not forwarded_for or not is_trusted(client):
        return client
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return client  # a malformed chain: count the proxy itself
        if not is_trusted(hop):
            return hop
        client = hop
    return client


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    derived = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P,
                             maxmem=64 * 1024 * 1024, dklen=32)
    enc = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${enc(salt).decode()}${enc(derived).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, hash_b64 = encoded.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(hash_b64)
        derived = hashlib.scrypt(password.encode(), salt=salt, n=int(n), r=int(r), p=int(p),
                                 maxmem=64 * 1024 * 1024, dklen=len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(derived, expected)


#: Verified against when the account does not exist, so an unknown name costs the same time.
_DUMMY_HASH = hash_password("threadguard-dummy-password", salt=b"\0" * 16)


@dataclass(frozen=True)
class Moderator:
    """A signed-in dashboard user: which communities they moderate, or every one for an operator
    (``admin``, a password account). A platform sign-in carries its rights: ``admin_of`` are the
    communities whose settings they may change (a subset of ``communities``)."""

    name: str
    communities: frozenset[str]
    admin: bool = False
    admin_of: frozenset[str] = frozenset()
    #: ``discord`` or ``slack`` for a platform sign-in, with the person's id there; None for a password.
    provider: str | None = None
    user_id: str | None = None
    #: Epoch seconds of the last look at the platform's roles (platform sign-ins).
    checked: float = 0.0

    def may_see(self, community: str) -> bool:
        return self.admin or community in self.communities

    def may_configure(self, community: str) -> bool:
        return self.admin or community in self.admin_of

    def visible(self, known: Iterable[str]) -> list[str]:
        return sorted(c for c in known if self.may_see(c))


class AccountError(ValueError):
    """An account cannot be created as asked; the message is safe to show to the admin."""


class Accounts:
    """Moderator accounts and sessions on the store's Redis client (decoded responses)."""

    def __init__(self, client: Any, secret: bytes, *, session_ttl_s: int = 12 * 3600,
                 max_failures: int = 10, failure_window_s: int = 900) -> None:
        self.client = client
        self._secret = secret
        self.session_ttl_s = session_ttl_s
        self.max_failures = max_failures
        self.failure_window_s = failure_window_s

    # --- accounts --------------------------------------------------------------------------------

    async def add(self, name: str, password: str, communities: Iterable[str], *, admin: bool = False) -> None:
        if not NAME_RE.match(name):
            raise AccountError("account names use letters, digits and . _ @ - (at most 64)")
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"the password needs at least {MIN_PASSWORD} characters")
        chosen = sorted(set(communities))
        if not chosen and not admin:
            raise AccountError("give at least one --community, or --admin")
        encoded = await asyncio.to_thread(hash_password, password)
        await self.client.hset(account_key(name), mapping={
            "password": encoded, "communities": json.dumps(chosen), "admin": "1" if admin else "0",
            "created": f"{time.time():.0f}"})
        await self.client.sadd(ACCOUNTS, name)

    async def remove(self, name: str) -> bool:
        removed = int(await self.client.delete(account_key(name)))
        await self.client.srem(ACCOUNTS, name)
        return removed > 0

    async def names(self) -> list[str]:
        return sorted(await self.client.smembers(ACCOUNTS))

    async def get(self, name: str) -> Moderator | None:
        if not NAME_RE.match(name):
            return None
        data = await self.client.hgetall(account_key(name))
        if not data:
            return None
        return Moderator(name, frozenset(json.loads(data.get("communities", "[]"))), data.get("admin") == "1")

    # --- sign-in -------------------------------------------------------------------------------

    async def authenticate(self, name: str, password: str, client_addr: str) -> Moderator | None:
        """The moderator if the password matches; None otherwise (also when throttled)."""
        account = name[:64]
        limits = {failures_key(f"pair:{account}|{client_addr}"): self.max_failures,
                  failures_key(f"addr:{client_addr}"): self.max_failures * 5,
                  failures_key(f"name:{account}"): self.max_failures * 10}
        throttle = list(limits)
        counts = [int(await self.client.get(k) or 0) for k in throttle]  # one slot each on a cluster
        throttled = any(n >= limit for n, limit in zip(counts, limits.values(), strict=True))
        valid_name = bool(NAME_RE.match(name))
        data = await self.client.hgetall(account_key(name)) if valid_name else {}
        encoded = data.get("password") or _DUMMY_HASH
        ok = await asyncio.to_thread(verify_password, password, encoded)
        if throttled or not ok or not data:
            for k in throttle:
                await self.client.incr(k)
                await self.client.expire(k, self.failure_window_s)
            return None
        return await self.get(name)

    def _digest(self, token: str) -> str:
        return hmac.new(self._secret, f"session:{token}".encode(), hashlib.sha256).hexdigest()

    async def open_session(self, moderator: Moderator) -> str:
        token = secrets.token_urlsafe(32)
        key = session_key(self._digest(token))
        await self.client.hset(key, mapping={"name": moderator.name, "created": f"{time.time():.0f}"})
        await self.client.expire(key, self.session_ttl_s)
        return token

    async def session(self, token: str | None) -> Moderator | None:
        if not token or len(token) > 200:
            return None
        data = await self.client.hgetall(session_key(self._digest(token)))
        if data.get("provider"):
            return _platform_moderator(data)
        name = data.get("name")
        return await self.get(name) if name else None

    async def open_platform_session(self, provider: str, user_id: str, name: str,
                                    rights: dict[str, str]) -> str:
        """A session for a person signed in with a platform, holding their rights there."""
        token = secrets.token_urlsafe(32)
        key = session_key(self._digest(token))
        await self.client.hset(key, mapping={"name": name, "provider": provider, "user": user_id,
                                             "rights": json.dumps(rights), "checked": f"{time.time():.3f}",
                                             "created": f"{time.time():.0f}"})
        await self.client.expire(key, self.session_ttl_s)
        return token

    async def update_rights(self, token: str, rights: dict[str, str]) -> None:
        """The rights a re-check found (the session keeps its lifetime)."""
        key = session_key(self._digest(token))
        if await self.client.exists(key):
            await self.client.hset(key, mapping={"rights": json.dumps(rights), "checked": f"{time.time():.3f}"})

    async def close_session(self, token: str | None) -> None:
        if token:
            await self.client.delete(session_key(self._digest(token)))

    # --- CSRF ----------------------------------------------------------------------------------

    def csrf_token(self, token: str, purpose: str = "csrf") -> str:
        """The form token for a session token (or, with ``purpose="login"``, for the sign-in cookie)."""
        return hmac.new(self._secret, f"{purpose}:{token}".encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, token: str | None, submitted: str | None, purpose: str = "csrf") -> bool:
        if not token or not submitted:
            return False
        return hmac.compare_digest(self.csrf_token(token, purpose), submitted)


def _platform_moderator(data: dict[str, str]) -> Moderator:
    rights: dict[str, str] = json.loads(data.get("rights") or "{}")
    return Moderator(f"{data['provider']}:{data.get('name', '')}", frozenset(rights), False,
                     frozenset(c for c, role in rights.items() if role == "admin"),
                     provider=data["provider"], user_id=data.get("user"), checked=float(data.get("checked", 0)))
