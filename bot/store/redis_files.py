"""``AttachmentStore`` on Redis: a thread's prepared files in one hash (by id) and their order in a list,
both in the thread's slot, bounded by count and size (the oldest go first), expiring with the thread's
idle lifetime and read back with it renewed."""

from __future__ import annotations

from bot.store import keys
from bot.store.connection import RedisConnection
from bot.types import ThreadRef
from config.settings import AttachmentSettings, StoreSettings

# KEYS: files hash, order list. ARGV: max files, max bytes, ttl ms, then id, payload pairs.
# Replies with the ids that went to keep the bound (possibly some just put).
PUT = """
local files, order = KEYS[1], KEYS[2]
local max_files, max_bytes, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
for i = 4, #ARGV, 2 do
  if redis.call('HSETNX', files, ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('RPUSH', order, ARGV[i])
  end
end
local ids = redis.call('LRANGE', order, 0, -1)
local total = 0
for _, id in ipairs(ids) do total = total + redis.call('HSTRLEN', files, id) end
local gone = {}
local n = #ids
while n > 0 and (n > max_files or total > max_bytes) do
  local id = redis.call('LPOP', order)
  total = total - redis.call('HSTRLEN', files, id)
  redis.call('HDEL', files, id)
  gone[#gone + 1] = id
  n = n - 1
end
if n > 0 then
  redis.call('PEXPIRE', files, ttl)
  redis.call('PEXPIRE', order, ttl)
end
return gone
"""


class RedisFiles:
    def __init__(self, connection: RedisConnection, settings: StoreSettings, limits: AttachmentSettings) -> None:
        self._redis = connection
        self._ttl_ms = settings.idle_ttl_ms
        self._limits = limits
        self._put = connection.script(PUT)

    async def put(self, thread: ThreadRef, files: list[tuple[str, str]]) -> list[str]:
        """Keep ``files`` (id, payload) for the thread; returns the ids that went to keep the bound."""
        args: list[str | int] = [self._limits.thread_max_files, self._limits.thread_max_bytes, self._ttl_ms]
        for file_id, payload in files:
            args += [file_id, payload]
        async with self._redis.trip("put_files"):
            gone = await self._redis.run(self._put, [keys.files(thread.key), keys.files_order(thread.key)], args)
        return [str(g) for g in gone or ()]

    async def get(self, thread: ThreadRef, ids: list[str]) -> dict[str, str]:
        """The payloads of ``ids`` still kept (one request, which renews the thread's files' lifetime)."""
        if not ids:
            return {}
        unique = list(dict.fromkeys(ids))
        async with self._redis.trip("get_files"):
            pipe = self._redis.client.pipeline(transaction=False)
            pipe.hmget(keys.files(thread.key), unique)
            pipe.pexpire(keys.files(thread.key), self._ttl_ms)
            pipe.pexpire(keys.files_order(thread.key), self._ttl_ms)
            values, *_ = await pipe.execute()
        return {i: v for i, v in zip(unique, values, strict=True) if v is not None}

    async def drop(self, thread: ThreadRef, ids: list[str]) -> None:
        """Forget files (the API refused them): later turns read a placeholder."""
        if not ids:
            return
        async with self._redis.trip("drop_files"):
            pipe = self._redis.client.pipeline(transaction=True)
            pipe.hdel(keys.files(thread.key), *ids)
            for file_id in ids:
                pipe.lrem(keys.files_order(thread.key), 0, file_id)
            await pipe.execute()

    async def delete_thread(self, thread: ThreadRef) -> None:
        """Every stored file of the thread, at once (an end under child sexual exploitation, forget-user)."""
        async with self._redis.trip("delete_files"):
            await self._redis.client.delete(keys.files(thread.key), keys.files_order(thread.key))
