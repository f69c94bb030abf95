"""The chat.update budget every process of a workspace shares through Redis."""

from __future__ import annotations

from bot.store.budget import SharedBudget
from bot.store.connection import connect
from tests.support.redis_servers import RedisServer


async def test_the_budget_allows_a_burst_then_paces_and_a_pause_holds_everyone(any_redis):
    one, other = (SharedBudget(any_redis, "chat.update", per_minute=60, burst=2) for _ in range(2))
    assert await one.wait_seconds("T1") == 0
    assert await other.wait_seconds("T1") == 0  # the burst: two at once, from any process
    wait = await one.wait_seconds("T1")
    assert 0.9 <= wait <= 1.0  # then one a second
    assert await other.wait_seconds("T2") == 0  # another workspace has a budget of its own
    await other.pause("T2", 5)
    assert 4.5 <= await one.wait_seconds("T2") <= 5.0  # a 429 seen by one process holds the others


async def test_without_redis_each_process_keeps_the_same_pace_and_pauses():
    server = RedisServer().start()
    client = connect(server.url, pool_timeout=0.5)
    try:
        budget = SharedBudget(client, "chat.update", per_minute=6, burst=2)  # a slot every 10 s
        assert await budget.wait_seconds("T1") == 0
        server.stop()  # Redis goes away mid-stream: updates are paced here, never all sent at once
        assert await budget.wait_seconds("T1") == 0  # the burst's second slot
        assert 7 <= await budget.wait_seconds("T1") <= 10  # (each failed request takes a moment)
        assert await budget.wait_seconds("T2") == 0  # another workspace paces on its own
        await budget.pause("T2", 30)  # a 429 while Redis is away still holds this process
        assert 27 <= await budget.wait_seconds("T2") <= 30
    finally:
        await client.aclose()
        server.close()
