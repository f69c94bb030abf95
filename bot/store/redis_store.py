"""The store on Redis: one server, a Redis Cluster, or the in-process Redis (fakeredis), in parts that share
one connection (``bot.store.connection``), built together by ``build_store``.

Every transition is one Lua script on the keys of one hash tag (``bot.store.scripts``). A member's message
is accepted by one script and its turn written by one more: an ordinary turn costs two round trips, a
message to a frozen thread one. The parts: the inbox and its leases (``redis_inbox``), the turn log
(``redis_turns``), cases (``redis_cases``), and below, event dedupe, the numbering of conversations in a
place without threads, and the notice outbox; and the wake-up channel the background loops wait on
(``wakeups``).
"""

from __future__ import annotations

from typing import Any

from bot.metrics import Metrics
from bot.store import Store, keys
from bot.store.backoff import RedisBackoff
from bot.store.case_index import RedisCaseIndex
from bot.store.connection import RedisConnection
from bot.store.redis_cases import PendingIndex, RedisCases
from bot.store.redis_files import RedisFiles
from bot.store.redis_inbox import RedisTurnInbox
from bot.store.redis_turns import RedisTurnLog
from bot.store.wakeups import RedisWakeUps
from bot.store.window import WindowCache
from bot.types import ThreadRef
from config.settings import AttachmentSettings, StoreSettings


class RedisEventDedupe:
    def __init__(self, connection: RedisConnection, settings: StoreSettings) -> None:
        self._redis = connection
        self._ttl_s = settings.dedupe_ttl_seconds

    async def first_sight(self, thread: ThreadRef, event_id: str) -> bool:
        """Mark an event handled; False if it already was (a redelivery)."""
        async with self._redis.trip("first_sight"):
            return bool(await self._redis.client.set(keys.seen(thread.key, event_id), "1", nx=True, ex=self._ttl_s))


class RedisConversationNumbers:
    def __init__(self, connection: RedisConnection, settings: StoreSettings) -> None:
        self._redis = connection
        self._ttl_ms = settings.ended_ttl_ms

    async def current_conversation(self, channel: ThreadRef) -> int:
        async with self._redis.trip("current_conversation"):
            value = await self._redis.client.get(keys.current(channel.key))
        return int(value or 0)

    async def next_conversation(self, channel: ThreadRef) -> int:
        async with self._redis.trip("next_conversation"):
            pipe = self._redis.client.pipeline(transaction=True)
            pipe.incr(keys.current(channel.key))
            pipe.pexpire(keys.current(channel.key), self._ttl_ms)
            number, _ = await pipe.execute()
        return int(number)


# A notice queued for a platform's processes (the newest ``keep``), which are told at once on the wake-up
# channel. KEYS: the outbox; ARGV: the notice, keep, the platform.
PUSH_NOTICE = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PUBLISH', '""" + keys.WAKE + """', 'notice ' .. ARGV[3])
return 1
"""


class RedisNoticeOutbox:
    def __init__(self, connection: RedisConnection) -> None:
        self._redis = connection
        self._push = connection.script(PUSH_NOTICE)

    async def push_notice(self, platform: str, payload: str, keep: int = 10_000) -> None:
        async with self._redis.trip("push_notice"):
            await self._redis.run(self._push, [keys.outbox(platform)], [payload, keep, platform])

    async def pop_notices(self, platform: str, limit: int) -> list[str]:
        """Up to ``limit`` notices, oldest first; each is handed out once."""
        async with self._redis.trip("pop_notices"):
            items = await self._redis.client.lpop(keys.outbox(platform), limit)
        return list(items or [])


def build_store(client: Any, settings: StoreSettings, *, metrics: Metrics | None = None,
                windows: WindowCache | None = None, attachments: AttachmentSettings | None = None) -> Store:
    """Every part of the store over one connection to ``client`` (a redis-py asyncio client or fakeredis).
    ``windows``: the history windows of the threads this process worked on last, which the inbox's and the
    commit's turn starts read on top of."""
    connection = RedisConnection(client, metrics=metrics or Metrics())
    if windows is None:
        windows = WindowCache(settings.window_cache_threads, settings.window_cache_bytes)
    pending = PendingIndex(connection)
    return Store(
        inbox=RedisTurnInbox(connection, settings, windows),
        turns=RedisTurnLog(connection, settings, windows, pending),
        cases=RedisCases(connection, pending),
        case_index=RedisCaseIndex(connection),
        dedupe=RedisEventDedupe(connection, settings),
        conversations=RedisConversationNumbers(connection, settings),
        notices=RedisNoticeOutbox(connection),
        health=connection,
        backoff=RedisBackoff(connection),
        files=RedisFiles(connection, settings, attachments or AttachmentSettings()),
        wakeups=RedisWakeUps(client),
    )
