"""Communities' settings as saved on the dashboard, versioned, on Redis.

The records are opaque JSON to this module: ``bot.community_settings`` decides what a version holds and
checks it. One key family per community (``C``), in one slot, so a save is one script on Redis Cluster too:

    tg:{cfg:C}:current     hash    version (n), settings (JSON of the whole community's settings)
    tg:{cfg:C}:versions    list    version records (JSON: version, who, at, changes, settings), oldest first
    tg:cfg:communities     set     communities with saved settings
    tg:cfg:revision        string  moves on with every save anywhere: workers read it (one GET) when a save
                                   tells them (``settings`` on ``keys.WAKE``) and reload only when it moved,
                                   so an ordinary turn never reads settings from Redis
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from bot.errors import StoreUnavailable
from bot.store import keys
from bot.store.errors import STORE_FAILURES

COMMUNITIES_KEY = f"{keys.PREFIX}:cfg:communities"
REVISION_KEY = f"{keys.PREFIX}:cfg:revision"

# KEYS: current, versions.  ARGV: expected version (or -1 for any), the version record without its number
# (a non-empty JSON object, which the script prefixes with the number), the settings JSON.
# Returns the new version number, or 0 when another save came first.
_SAVE = """
local now = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
local expected = tonumber(ARGV[1])
if expected >= 0 and expected ~= now then return 0 end
local n = now + 1
redis.call('RPUSH', KEYS[2], '{"version":' .. n .. ',' .. string.sub(ARGV[2], 2))
redis.call('HSET', KEYS[1], 'version', n, 'settings', ARGV[3])
return n
"""


@dataclass(frozen=True)
class StoredSettings:
    """A community's saved settings and their version number."""

    version: int
    settings: dict[str, Any]


class CommunitySettingsStore(Protocol):
    """Saved, versioned community settings."""

    async def revision(self) -> int: ...

    async def communities(self) -> list[str]: ...

    async def current(self, community: str) -> StoredSettings | None: ...

    async def save(self, community: str, settings: dict[str, Any], record: dict[str, Any], *,
                   expected_version: int) -> int: ...

    async def history(self, community: str) -> list[dict[str, Any]]: ...

    async def version(self, community: str, number: int) -> dict[str, Any] | None: ...


def _tag(community: str) -> str:
    return f"{keys.PREFIX}:{{cfg:{community}}}"


class RedisCommunitySettings:
    """``CommunitySettingsStore`` on the store's Redis client (decoded responses)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._save = client.register_script(_SAVE)

    @contextlib.asynccontextmanager
    async def _trip(self, what: str) -> AsyncIterator[None]:
        try:
            yield
        except STORE_FAILURES as exc:
            raise StoreUnavailable(f"community settings: {what} failed ({type(exc).__name__})") from exc

    async def revision(self) -> int:
        async with self._trip("revision"):
            return int(await self.client.get(REVISION_KEY) or 0)

    async def communities(self) -> list[str]:
        async with self._trip("communities"):
            return sorted(await self.client.smembers(COMMUNITIES_KEY))

    async def current(self, community: str) -> StoredSettings | None:
        async with self._trip("current"):
            data = await self.client.hgetall(f"{_tag(community)}:current")
        if not data:
            return None
        return StoredSettings(int(data["version"]), json.loads(data["settings"]))

    async def save(self, community: str, settings: dict[str, Any], record: dict[str, Any], *,
                   expected_version: int) -> int:
        """The new version's number, or 0 when the community's version is no longer ``expected_version``
        (``-1``: any). The revision moves on after the save, so a worker that saw it reads the new one."""
        tag = _tag(community)
        async with self._trip("save"):
            number = int(await self._save(keys=[f"{tag}:current", f"{tag}:versions"],
                                          args=[expected_version, json.dumps(record), json.dumps(settings)]))
            if number:
                await self.client.sadd(COMMUNITIES_KEY, community)
                await self.client.incr(REVISION_KEY)
                await self.client.publish(keys.WAKE, "settings")  # every worker looks at the revision now
        return number

    async def history(self, community: str) -> list[dict[str, Any]]:
        """Every version record, newest first."""
        async with self._trip("history"):
            raw = await self.client.lrange(f"{_tag(community)}:versions", 0, -1)
        return [json.loads(r) for r in reversed(raw)]

    async def version(self, community: str, number: int) -> dict[str, Any] | None:
        if number < 1:
            return None
        async with self._trip("version"):
            raw = await self.client.lindex(f"{_tag(community)}:versions", number - 1)
        return json.loads(raw) if raw else None
