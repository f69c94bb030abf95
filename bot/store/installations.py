"""Platform installations (a Slack workspace or an Enterprise Grid org that added the app) and the
one-use states of the install flow, on Redis. The records are opaque strings: the adapter encrypts the
tokens in them before they get here, so this module knows neither the platform nor the tokens.

One key family per installed workspace (``W`` = ``<enterprise or ->:<team or ->``), in one slot, so a
workspace's keys change together in one MULTI on Redis Cluster too:

    tg:{inst:W}:workspace   hash    bot (the latest bot record), installer (the latest installation
                                    record), installer_id (the installing user, in clear: the workspace's
                                    first admin), installed_at (epoch s)
    tg:{inst:W}:user:<U>    string  the latest installation record of user U
    tg:{inst:W}:users       set     users with a record (for deleting them all)
    tg:{inst:W}:refresh     string  the lease of the process renewing the workspace's tokens (PX)
    tg:{team:T}:installation string the workspace key whose installation serves team T (Enterprise Grid:
                                    its org's for an org-wide installation)
    tg:{oauth:S}            string  an install flow's state S, valid once, until it expires (EX)
    tg:installations        channel the workspace key of every installation saved or deleted, so other
                                    processes drop what they cached at once
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from bot.errors import StoreUnavailable
from bot.store import keys
from bot.store.errors import STORE_FAILURES

log = logging.getLogger(__name__)

CHANGES_CHANNEL = f"{keys.PREFIX}:installations"

# KEYS: the refresh lease.  ARGV: the holder's token.  Releases it only when still held by that token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def workspace_key(enterprise_id: str | None, team_id: str | None) -> str:
    return f"{enterprise_id or '-'}:{team_id or '-'}"


def _tag(workspace: str) -> str:
    return f"{keys.PREFIX}:{{inst:{workspace}}}"


class InstallationRecords:
    """Saves, finds and deletes installation records; ``client`` is the store's Redis client."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._release = client.register_script(_RELEASE)

    @contextlib.asynccontextmanager
    async def _trip(self, what: str) -> AsyncIterator[None]:
        try:
            yield
        except STORE_FAILURES as exc:
            raise StoreUnavailable(f"installations: {what} failed ({type(exc).__name__})") from exc

    async def save(self, workspace: str, *, user_id: str | None, installation: str | None,
                   bot: str | None) -> None:
        """The latest installation of the workspace (and of its installing user), with its bot record."""
        tag = _tag(workspace)
        async with self._trip("save"), self.client.pipeline(transaction=True) as pipe:
            fields: dict[str, str] = {}
            if bot is not None:
                fields["bot"] = bot
            if installation is not None:
                fields["installer"] = installation
                fields["installed_at"] = f"{time.time():.3f}"
                if user_id:
                    fields["installer_id"] = user_id
                    pipe.set(f"{tag}:user:{user_id}", installation)
                    pipe.sadd(f"{tag}:users", user_id)
            if fields:
                pipe.hset(f"{tag}:workspace", mapping=fields)
            await pipe.execute()
        await self._announce(workspace)

    async def find(self, workspace: str, user_id: str | None = None) -> tuple[str | None, str | None]:
        """(installation record, bot record) of the workspace, or of one of its users."""
        tag = _tag(workspace)
        async with self._trip("find"):
            if user_id is None:
                installation, bot = await self.client.hmget(f"{tag}:workspace", ["installer", "bot"])
                return installation, bot
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.get(f"{tag}:user:{user_id}")
                pipe.hget(f"{tag}:workspace", "bot")
                installation, bot = await pipe.execute()
            return installation, bot

    async def installer(self, workspace: str) -> str | None:
        """The user who installed the app in the workspace last (its first admin)."""
        async with self._trip("installer"):
            value = await self.client.hget(f"{_tag(workspace)}:workspace", "installer_id")
            return str(value) if value else None

    async def delete_bot(self, workspace: str) -> None:
        async with self._trip("delete bot"):
            await self.client.hdel(f"{_tag(workspace)}:workspace", "bot")
        await self._announce(workspace)

    async def delete_installation(self, workspace: str, user_id: str | None = None) -> None:
        """One user's installation, or (no user) every user's and the workspace's latest."""
        tag = _tag(workspace)
        async with self._trip("delete installation"):
            if user_id is not None:
                async with self.client.pipeline(transaction=True) as pipe:
                    pipe.delete(f"{tag}:user:{user_id}")
                    pipe.srem(f"{tag}:users", user_id)
                    await pipe.execute()
            else:
                users = await self.client.smembers(f"{tag}:users")
                async with self.client.pipeline(transaction=True) as pipe:
                    for user in users:
                        pipe.delete(f"{tag}:user:{user}")
                    pipe.delete(f"{tag}:users")
                    pipe.hdel(f"{tag}:workspace", "installer", "installer_id", "installed_at")
                    await pipe.execute()
        await self._announce(workspace)

    async def delete_all(self, workspace: str) -> None:
        await self.delete_installation(workspace)
        async with self._trip("delete all"):
            await self.client.delete(f"{_tag(workspace)}:workspace")
        await self._announce(workspace)

    # --- Enterprise Grid -----------------------------------------------------------------------

    async def link_team(self, team_id: str, workspace: str) -> None:
        """Team ``team_id`` is served by the installation kept under ``workspace`` (its org's, for an
        org-wide installation, or its own with the enterprise id)."""
        async with self._trip("link team"):
            await self.client.set(f"{keys.PREFIX}:{{team:{team_id}}}:installation", workspace)

    async def workspace_of(self, team_id: str) -> str | None:
        async with self._trip("workspace of team"):
            value = await self.client.get(f"{keys.PREFIX}:{{team:{team_id}}}:installation")
            return str(value) if value else None

    # --- renewing tokens, one process at a time ------------------------------------------------

    async def hold_refresh(self, workspace: str, ttl_ms: int) -> str | None:
        """The workspace's refresh lease (a token to release it with), or None when another holds it."""
        token = secrets.token_hex(8)
        async with self._trip("refresh lease"):
            taken = await self.client.set(f"{_tag(workspace)}:refresh", token, nx=True, px=ttl_ms)
        return token if taken else None

    async def release_refresh(self, workspace: str, token: str) -> None:
        async with self._trip("refresh release"):
            await self._release(keys=[f"{_tag(workspace)}:refresh"], args=[token])

    # --- telling the other processes -----------------------------------------------------------

    async def _announce(self, workspace: str) -> None:
        """Other processes drop what they cached of this workspace; a lost message costs only the cache's
        short lifetime, so a failure here is logged, not raised."""
        try:
            await self.client.publish(CHANGES_CHANNEL, workspace)
        except STORE_FAILURES as exc:
            log.warning("installations: change of %s not announced (%s)", workspace, type(exc).__name__)

    async def follow_changes(self, changed: Callable[[str], Awaitable[None] | None],
                             ready: asyncio.Event | None = None) -> None:
        """Call ``changed(workspace)`` for every installation saved or deleted by any process, until
        cancelled; reconnects after a failure."""
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(CHANGES_CHANNEL)
                if ready is not None:
                    ready.set()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        result = changed(str(message["data"]))
                        if result is not None:
                            await result
            except STORE_FAILURES as exc:
                log.warning("installations: change feed interrupted (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(*STORE_FAILURES):
                    await pubsub.aclose()


class InstallStates:
    """The ``state`` of the install flow: issued with an expiry, consumed once (GETDEL is atomic)."""

    def __init__(self, client: Any, ttl_seconds: int) -> None:
        self.client = client
        self.ttl_seconds = ttl_seconds

    @staticmethod
    def _key(state: str) -> str:
        return f"{keys.PREFIX}:{{oauth:{state}}}"

    async def issue(self) -> str:
        state = secrets.token_urlsafe(24)
        try:
            await self.client.set(self._key(state), f"{time.time():.3f}", ex=self.ttl_seconds, nx=True)
        except STORE_FAILURES as exc:
            raise StoreUnavailable(f"install state not stored ({type(exc).__name__})") from exc
        return state

    async def consume(self, state: str) -> bool:
        """True once for a state this store issued that has not expired; False for anything else."""
        if not state or len(state) > 200:
            return False
        try:
            return await self.client.getdel(self._key(state)) is not None
        except STORE_FAILURES as exc:
            raise StoreUnavailable(f"install state not read ({type(exc).__name__})") from exc
