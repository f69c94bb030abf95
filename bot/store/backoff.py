"""The model API's back-off in Redis, shared by every worker: one key holding when it ends (epoch ms),
expiring then. Written when a worker gets a 429 (and told to every worker on the wake-up channel), read by
every worker's recovery loop (never by a turn).

    tg:backoff:model   string  epoch ms the back-off lasts until (PX: the same moment)
    tg:{t:T}:busy      string  the thread's member was told their message waits (PX: the wait)
"""

from __future__ import annotations

import asyncio
import time

from bot.store import keys
from bot.store.connection import RedisConnection
from bot.store.redis_inbox import DueMarks
from bot.store.scripts import DUE
from bot.types import ThreadRef

KEY = f"{keys.PREFIX}:backoff:model"

# Never shortens a longer back-off another worker holds; returns the end that holds.
SHARE = """
local held = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted, now = tonumber(ARGV[1]), tonumber(ARGV[2])
if wanted > held and wanted > now then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', string.format('%d', wanted - now))
  redis.call('PUBLISH', '""" + keys.WAKE + """', 'backoff ' .. ARGV[1])
  return ARGV[1]
end
return tostring(held)
"""


# A turn that waits (the back-off, or a limit a kept message is still over): the owner's lease handed back,
# the thread due when the wait ends, its state's ``wake`` (``due`` only on one server: on Cluster it is in
# another slot), and whether its member is told now (once per back-off and thread, across workers: ``busy``
# lives as long as the wait).
WAIT_OUT = DUE + """
local state, lease, busy, due = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token, until_ms, now, tell_after, thread_key = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
if redis.call('HGET', state, 'fence') == token then
  redis.call('HSET', state, 'wake', ARGV[2])
  if token == redis.call('GET', lease) then redis.call('DEL', lease) end
end
if due then due_add(due, until_ms, thread_key) end
if tell_after == '' or until_ms - now <= tonumber(tell_after) then return 0 end
if redis.call('SET', busy, '1', 'NX', 'PX', string.format('%d', until_ms - now)) then return 1 end
return 0
"""


class RedisBackoff:
    def __init__(self, connection: RedisConnection) -> None:
        self._redis = connection
        self._share = connection.script(SHARE)
        self._wait_out = connection.script(WAIT_OUT)
        self._mark_due = DueMarks(connection)

    async def wait_out(self, thread: ThreadRef, token: str, until_ms: int, tell_after_ms: int | None) -> bool:
        """Hand the thread's lease back until ``until_ms``; True when its member is to be told now that the
        message is queued (the wait is longer than ``tell_after_ms``, first time in this back-off)."""
        k = thread.key
        thread_keys = [keys.state(k), keys.lock(k), keys.busy(k)]
        args = [token, until_ms, int(time.time() * 1000), "" if tell_after_ms is None else tell_after_ms, k]
        redis = self._redis
        async with redis.trip("wait_out"):
            if redis.cluster:  # the due set is in another slot: sent at the same time
                told, _ = await asyncio.gather(redis.run(self._wait_out, thread_keys, args),
                                               self._mark_due(k, until_ms))
            else:
                told = await redis.run(self._wait_out, [*thread_keys, keys.due(k)], args)
        return bool(told)

    async def share(self, until_ms: int) -> int:
        async with self._redis.trip("backoff_share"):
            return int(await self._redis.run(self._share, [KEY], [until_ms, int(time.time() * 1000)]))

    async def read(self) -> int:
        async with self._redis.trip("backoff_read"):
            return int(await self._redis.client.get(KEY) or 0)
