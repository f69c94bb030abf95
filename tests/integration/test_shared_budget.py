"""The chat.update budget every process of a workspace shares through Redis."""

from __future__ import annotations

from bot.store.budget import SharedBudget


async def test_the_budget_allows_a_burst_then_paces_and_a_pause_holds_everyone(any_redis):
    one, other = (SharedBudget(any_redis, "chat.update", per_minute=60, burst=2) for _ in range(2))
    assert await one.wait_seconds("T1") == 0
    assert await other.wait_seconds("T1") == 0  # the burst: two at once, from any process
    wait = await one.wait_seconds("T1")
    assert 0.9 <= wait <= 1.0  # then one a second
    assert await other.wait_seconds("T2") == 0  # another workspace has a budget of its own
    await other.pause("T2", 5)
    assert 4.5 <= await one.wait_seconds("T2") <= 5.0  # a 429 seen by one process holds the others
