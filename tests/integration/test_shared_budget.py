"""Slack's method budgets every process of a workspace shares through Redis."""

from __future__ import annotations

import time

import pytest

from bot.store.budget import Rate, SharedBudget
from bot.store.connection import connect
from tests.support.redis_servers import RedisServer

RATES = {"chat.update": Rate(60, 2), "chat.startStream": Rate(60, 2), "chat.stopStream": Rate(6, 1)}


async def test_the_budget_allows_a_burst_then_paces_and_a_pause_holds_everyone(any_redis):
    one, other = (SharedBudget(any_redis, RATES) for _ in range(2))
    assert await one.spend("T1", "chat.update") == 0
    assert await other.spend("T1", "chat.update") == 0  # the burst: two at once, from any process
    wait = await one.spend("T1", "chat.update")
    assert 0.9 <= wait <= 1.0  # then one a second
    assert await other.spend("T2", "chat.update") == 0  # another workspace has a budget of its own
    await other.pause("T2", "chat.update", 5)
    assert 4.5 <= await one.spend("T2", "chat.update") <= 5.0  # a 429 seen by one process holds the others


async def test_headroom_keeps_slots_for_what_cannot_wait(any_redis):
    budget = SharedBudget(any_redis, {"chat.update": Rate(60, 3)})
    assert await budget.spend("T1", "chat.update", headroom=1) == 0  # 3 free: an intermediate step may go
    assert await budget.spend("T1", "chat.update", headroom=1) == 0  # 2 free: one left after it
    assert await budget.spend("T1", "chat.update", headroom=1) > 0  # 1 free: kept for a last update
    assert await budget.spend("T1", "chat.update") == 0  # which takes it


async def test_several_methods_are_spent_all_or_none(any_redis):
    budget = SharedBudget(any_redis, RATES)
    assert await budget.spend("T1", "chat.startStream", "chat.stopStream") == 0
    wait = await budget.spend("T1", "chat.startStream", "chat.stopStream")  # stop's one slot is gone
    assert 9 <= wait <= 10
    assert await budget.spend("T1", "chat.startStream") == 0  # and start's slot was not taken by the refusal
    assert await budget.spend("T1", "chat.startStream") > 0


async def test_redis_keeps_the_time_not_each_process(any_redis, monkeypatch, request):
    """A process whose clock runs ahead (or a request that waited for a connection) does not move the
    schedule for the others: the slots are counted on Redis's clock."""
    if request.node.callspec.params["any_redis"] == "inprocess":
        pytest.skip("the embedded store runs in the process: its clock is the process's")
    ahead, behind = (SharedBudget(any_redis, RATES) for _ in range(2))
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 30)
    assert await ahead.spend("T1", "chat.update") == 0
    monkeypatch.setattr(time, "time", real)
    assert await behind.spend("T1", "chat.update") == 0  # the burst's second slot, as for anyone


async def test_without_redis_each_process_keeps_the_same_pace_and_pauses():
    server = RedisServer().start()
    client = connect(server.url, pool_timeout=0.5)
    try:
        budget = SharedBudget(client, {"chat.update": Rate(6, 2)})  # a slot every 10 s
        assert await budget.spend("T1", "chat.update") == 0
        server.stop()  # Redis goes away mid-stream: updates are paced here, never all sent at once
        assert await budget.spend("T1", "chat.update") == 0  # the burst's second slot
        assert 7 <= await budget.spend("T1", "chat.update") <= 10  # (each failed request takes a moment)
        assert await budget.spend("T2", "chat.update") == 0  # another workspace paces on its own
        await budget.pause("T2", "chat.update", 30)  # a 429 while Redis is away still holds this process
        assert 27 <= await budget.spend("T2", "chat.update") <= 30
    finally:
        await client.aclose()
        server.close()


async def test_a_reserved_slot_is_waited_for_never_refused(any_redis):
    """Posts: each takes the next slot of its channel's budget and of its workspace's, however far ahead."""
    budget = SharedBudget(any_redis, {"posts": Rate(120, 4), "channel": Rate(60, 1)})
    waits = [await budget.reserve("T1", ("posts", ""), ("channel", "C1")) for _ in range(3)]
    assert waits[0] == 0 and 0.9 <= waits[1] <= 1.0 and 1.9 <= waits[2] <= 2.0  # a second apart in C1
    other = await budget.reserve("T1", ("posts", ""), ("channel", "C2"))
    assert other == 0  # another channel goes now: the workspace's burst had room
    assert 0.4 <= await budget.reserve("T1", ("posts", ""), ("channel", "C3")) <= 0.5  # the workspace's pace
