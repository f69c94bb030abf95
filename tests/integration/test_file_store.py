"""The thread's file store (``AttachmentStore``) on one server, a Redis Cluster and the in-process Redis:
bounded by count and size (the oldest go first), read back as stored, renewed with the thread's idle
lifetime, dropped one by one or all at once."""

from __future__ import annotations

from bot.store import keys
from bot.store.redis_store import build_store
from bot.types import ThreadRef
from config.settings import AttachmentSettings, StoreSettings

T = ThreadRef("discord", "g", "c", "files-thread")


def files_store(client, **limits):
    return build_store(client, StoreSettings(), attachments=AttachmentSettings(**limits)).files


async def test_the_oldest_files_go_beyond_the_count_and_size_bounds(any_redis):
    store = files_store(any_redis, thread_max_files=3, thread_max_bytes=2048)
    assert await store.put(T, [("a", "x" * 100), ("b", "y" * 100)]) == []
    assert await store.put(T, [("c", "z" * 100), ("d", "w" * 100)]) == ["a"]
    assert await store.get(T, ["a", "b", "c", "d"]) == {"b": "y" * 100, "c": "z" * 100, "d": "w" * 100}
    assert await store.put(T, [("e", "v" * 2000)]) == ["b", "c", "d"]  # over 2048 bytes: the oldest go first
    assert await store.get(T, ["b", "e"]) == {"e": "v" * 2000}
    assert await store.put(T, [("e", "v" * 2000)]) == []  # the same file again: kept once


async def test_files_live_as_long_as_the_thread_and_can_be_dropped(any_redis):
    store = files_store(any_redis)
    await store.put(T, [("a", "1"), ("b", "2")])
    ttl = await any_redis.pttl(keys.files(T.key))
    assert 0 < ttl <= StoreSettings().idle_ttl_ms
    await store.drop(T, ["a"])
    assert await store.get(T, ["a", "b"]) == {"b": "2"}
    await store.delete_thread(T)
    assert await store.get(T, ["b"]) == {}
    assert not await any_redis.exists(keys.files(T.key), keys.files_order(T.key))
