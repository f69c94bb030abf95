"""The model API's back-off in Redis, shared by every worker: one key holding when it ends (epoch ms),
expiring then. Written when a worker gets a 429, read by every worker's recovery loop (never by a turn).

    tg:backoff:model   string  epoch ms the back-off lasts until (PX: the same moment)
"""

from __future__ import annotations

import time

from bot.store import keys
from bot.store.connection import RedisConnection

KEY = f"{keys.PREFIX}:backoff:model"

# Never shortens a longer back-off another worker holds; returns the end that holds.
SHARE = """
local held = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted, now = tonumber(ARGV[1]), tonumber(ARGV[2])
if wanted > held and wanted > now then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', string.format('%d', wanted - now))
  return ARGV[1]
end
return tostring(held)
"""


class RedisBackoff:
    def __init__(self, connection: RedisConnection) -> None:
        self._redis = connection
        self._share = connection.script(SHARE)

    async def share(self, until_ms: int) -> int:
        async with self._redis.trip("backoff_share"):
            return int(await self._redis.run(self._share, [KEY], [until_ms, int(time.time() * 1000)]))

    async def read(self) -> int:
        async with self._redis.trip("backoff_read"):
            return int(await self._redis.client.get(KEY) or 0)
