"""The product's Redis client sends no health-check PING before a command; a connection that died while
idle is replaced and the command retried, so the turn after it costs no extra round trip and fails nothing."""

from __future__ import annotations

import redis.asyncio

from bot.bootstrap import build_runtime
from bot.types import Author, IncomingMessage, ReplyKind, ThreadRef
from config.settings import AnthropicSettings, EngineSettings, RedisSettings, Settings


async def _calls(admin: redis.asyncio.Redis, command: str) -> int:
    stats = await admin.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_a_turn_on_a_connection_killed_while_idle_is_answered_without_a_ping(redis_server, redis_client):
    settings = Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=redis_server.url),
                        engine=EngineSettings())
    runtime = build_runtime(settings)  # the client exactly as the product builds it
    thread = ThreadRef("discord", "g1", "c1", "idle-thread")
    try:
        first = await runtime.engine.handle_message(IncomingMessage(thread, Author("u", "u"), "hello", "m1"))
        assert first.replies[0].kind is ReplyKind.ANSWER
        pings = await _calls(redis_client, "ping")
        killed = await redis_client.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        trips = runtime.store.round_trips + runtime.usage.round_trips
        second = await runtime.engine.handle_message(IncomingMessage(thread, Author("u", "u"), "still there?", "m2"))
        assert second.replies[0].kind is ReplyKind.ANSWER
        assert runtime.store.round_trips + runtime.usage.round_trips - trips == 2  # begin; commit with usage
        assert await _calls(redis_client, "ping") == pings
    finally:
        await runtime.aclose()
