"""A rate budget shared by every process through Redis: Slack's ``chat.update`` calls per workspace.

A generic cell rate: each call takes a slot ``interval`` after the previous one, with a burst allowance;
a 429 from the platform pauses every process of the workspace until its Retry-After has passed.

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

    async def wait_seconds(self, workspace: str) -> float:
        """0 when a call may go now (its slot is spent); otherwise seconds to wait before asking again.
        Without Redis the budget lets the call go: the platform's own 429 still paces it."""
        try:
            ms = int(await self._spend(keys=[budget_key(workspace, self.method)],
                                       args=[int(time.time() * 1000), self.interval_ms, self.burst_ms]))
        except STORE_FAILURES as exc:
            log.debug("%s budget unavailable (%s)", self.method, type(exc).__name__)
            return 0.0
        return ms / 1000

    async def pause(self, workspace: str, seconds: float) -> None:
        """The platform said 429: nobody in the workspace calls ``method`` for ``seconds``."""
        try:
            await self._pause(keys=[budget_key(workspace, self.method)],
                              args=[int((time.time() + seconds) * 1000)])
        except STORE_FAILURES as exc:
            log.debug("%s budget unavailable (%s)", self.method, type(exc).__name__)
