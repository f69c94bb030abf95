"""A rate budget shared by every process through Redis: Slack's ``chat.update`` calls per workspace.

A generic cell rate: each call takes a slot ``interval`` after the previous one, with a burst allowance;
a 429 from the platform pauses every process of the workspace until its Retry-After has passed. While
Redis fails (unreachable, or no connection free in time), each process keeps the same pace on its own.

    tg:{w:<workspace>}:<method>   hash  tat (ms: when the next slot is free), paused (ms: until when)
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bot.store import keys
from bot.store.errors import STORE_FAILURES

log = logging.getLogger(__name__)

# Spend one slot of the budget when one is free. Returns ms to wait (0: a slot was spent).
SPEND_SLOT = """
local budget = KEYS[1]
local now, interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local paused = tonumber(redis.call('HGET', budget, 'paused') or '0')
if paused > now then return paused - now end
local tat = tonumber(redis.call('HGET', budget, 'tat') or '0')
if tat < now then tat = now end
local wait = tat - burst - now
if wait > 0 then return wait end
redis.call('HSET', budget, 'tat', tat + interval)
redis.call('PEXPIRE', budget, 600000)
return 0
"""

# Nobody spends from the budget until ``until`` (ms).
PAUSE = """
local budget = KEYS[1]
local until_ms = ARGV[1]
local paused = tonumber(redis.call('HGET', budget, 'paused') or '0')
if tonumber(until_ms) > paused then redis.call('HSET', budget, 'paused', until_ms) end
redis.call('PEXPIRE', budget, 600000)
return 1
"""


def budget_key(workspace: str, method: str) -> str:
    return f"{keys.PREFIX}:{{w:{workspace}}}:{method}"


class SharedBudget:
    """``per_minute`` calls of one method per workspace, ``burst`` of them back to back."""

    def __init__(self, client: Any, method: str, *, per_minute: float = 50.0, burst: int = 3) -> None:
        self.method = method
        self.interval_ms = max(1, int(60_000 / per_minute))
        self.burst_ms = max(0, burst - 1) * self.interval_ms
        self._spend = client.register_script(SPEND_SLOT)
        self._pause = client.register_script(PAUSE)
        #: Without Redis: this process's own next free slot and pause per workspace (ms), the same cell rate.
        self._local_tat: dict[str, int] = {}
        self._local_paused: dict[str, int] = {}

    async def wait_seconds(self, workspace: str) -> float:
        """0 when a call may go now (its slot is spent); otherwise seconds to wait before asking again.
        Without Redis the budget paces this process's calls at the same rate (so a store failure never lets
        every streaming reply update at once); the platform's own 429 still pauses them."""
        now = int(time.time() * 1000)
        try:
            ms = int(await self._spend(keys=[budget_key(workspace, self.method)],
                                       args=[now, self.interval_ms, self.burst_ms]))
        except STORE_FAILURES as exc:
            log.debug("%s budget unavailable (%s): paced in this process", self.method, type(exc).__name__)
            return self._local_wait(workspace, int(time.time() * 1000)) / 1000
        if ms == 0:  # this process's own pace goes on from the slots it spent, should Redis fail next
            self._local_tat[workspace] = max(self._local_tat.get(workspace, 0), now) + self.interval_ms
        return ms / 1000

    def _local_wait(self, workspace: str, now: int) -> int:
        """``SPEND_SLOT`` kept in this process: ms to wait, 0 when a slot was spent."""
        paused = self._local_paused.get(workspace, 0)
        if paused > now:
            return paused - now
        tat = max(self._local_tat.get(workspace, 0), now)
        wait = tat - self.burst_ms - now
        if wait > 0:
            return wait
        self._local_tat[workspace] = tat + self.interval_ms
        return 0

    async def pause(self, workspace: str, seconds: float) -> None:
        """The platform said 429: nobody in the workspace calls ``method`` for ``seconds`` (this process
        keeps to it even when Redis cannot tell the others)."""
        until = int((time.time() + seconds) * 1000)
        self._local_paused[workspace] = max(self._local_paused.get(workspace, 0), until)
        try:
            await self._pause(keys=[budget_key(workspace, self.method)], args=[until])
        except STORE_FAILURES as exc:
            log.debug("%s budget unavailable (%s)", self.method, type(exc).__name__)
