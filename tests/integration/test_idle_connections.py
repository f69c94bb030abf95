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
        first = await runtime.member_actions.handle_message(IncomingMessage(thread, Author("u", "u"), "hello", "m1"))
        assert first.replies[0].kind is ReplyKind.ANSWER
        pings = await _calls(redis_client, "ping")
        killed = await redis_client.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        trips = runtime.store.health.round_trips + runtime.usage.round_trips
        second = await runtime.member_actions.handle_message(
            IncomingMessage(thread, Author("u", "u"), "still there?", "m2"))
        assert second.replies[0].kind is ReplyKind.ANSWER
        assert runtime.store.health.round_trips + runtime.usage.round_trips - trips == 2  # begin; commit with usage
        assert await _calls(redis_client, "ping") == pings
    finally:
        await runtime.aclose()


async def test_a_command_goes_out_without_a_task_of_its_own_and_a_large_one_whole(redis_server, redis_client):
    """The product's client writes a command that fits the socket's buffer at once (redis-py would send
    each through a task of its own, for its timeout); one far larger than the buffer still arrives whole."""
    import asyncio

    from bot.store.connection import connect

    client = connect(redis_server.url)
    loop = asyncio.get_running_loop()
    created: list[object] = []
    factory = loop.get_task_factory()
    try:
        await client.set("tg:test:small", "x")  # the connection is open
        loop.set_task_factory(lambda lp, coro, **kw: created.append(coro) or asyncio.Task(coro, loop=lp, **kw))
        assert await client.get("tg:test:small") == "x"
        assert created == []
        loop.set_task_factory(factory)
        big = "y" * (16 * 1024 * 1024)
        await client.set("tg:test:big", big)
        await client.set("tg:test:after", "z")
        assert await redis_client.strlen("tg:test:big") == len(big)
        assert await client.get("tg:test:after") == "z"
    finally:
        loop.set_task_factory(factory)
        await redis_client.delete("tg:test:small", "tg:test:big", "tg:test:after")
        await client.aclose()
