"""Rate budgets shared by every process through Redis: a platform's per-method limits per workspace
(Slack's ``chat.update``, ``chat.startStream``…).

A generic cell rate per method: each call takes a slot ``interval`` after the previous one, with a burst
allowance; a 429 from the platform pauses every process of the workspace until its Retry-After has passed.
Several methods can be spent at once, all or none (a streamed answer takes its start and its stop
together). A spend may ask to leave ``headroom`` slots free: what can be dropped (an intermediate update)
never takes the slots that what cannot (an answer's final text) needs. The time is Redis's own, so
processes whose clocks differ, or a call that waited for a connection, see one schedule.

Nothing here waits: a spend answers at once with the seconds until it could go, and the caller decides
(drop, merge, or do without). While Redis fails (unreachable, or no connection free in time), each process
keeps the same pace on its own.

    tg:{w:<workspace>}:<method>   hash  tat (ms: when the next slot is free), paused (ms: until when)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.store import keys
from bot.store.errors import STORE_FAILURES

log = logging.getLogger(__name__)

# Spend one slot of each budget when every one has a free slot (all or none). ARGV: per key its interval,
# burst and headroom (ms). Returns ms to wait (0: the slots were spent).
SPEND_SLOTS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wait, tats = 0, {}
for i, budget in ipairs(KEYS) do
  local interval, burst, headroom = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local paused = tonumber(redis.call('HGET', budget, 'paused') or '0')
  local tat = tonumber(redis.call('HGET', budget, 'tat') or '0')
  if tat < now then tat = now end
  local w = math.max(paused - now, tat - burst + headroom - now)
  if w > wait then wait = w end
  tats[i] = tat + interval
end
if wait > 0 then return wait end
for i, budget in ipairs(KEYS) do
  redis.call('HSET', budget, 'tat', tats[i])
  redis.call('PEXPIRE', budget, 600000)
end
return 0
"""

# Take the next slot of each budget, however far ahead (a call that cannot be dropped: a post); each budget
# keeps its own schedule (a channel's queue of posts does not hold the workspace's other channels), and the
# call goes at the latest of its slots. ARGV: per key its interval and burst (ms). Returns ms until then.
RESERVE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slot = now
for i, budget in ipairs(KEYS) do
  local interval, burst = tonumber(ARGV[2*i-1]), tonumber(ARGV[2*i])
  local paused = tonumber(redis.call('HGET', budget, 'paused') or '0')
  local tat = tonumber(redis.call('HGET', budget, 'tat') or '0')
  if tat < now then tat = now end
  local mine = math.max(now, paused, tat - burst)
  redis.call('HSET', budget, 'tat', math.max(tat, mine) + interval)
  redis.call('PEXPIRE', budget, 600000)
  slot = math.max(slot, mine)
end
return slot - now
"""

# Nobody spends from the budget for ARGV[1] ms from now.
PAUSE = """
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local paused = tonumber(redis.call('HGET', KEYS[1], 'paused') or '0')
if until_ms > paused then redis.call('HSET', KEYS[1], 'paused', until_ms) end
redis.call('PEXPIRE', KEYS[1], 600000)
return until_ms
"""


def budget_key(workspace: str, method: str) -> str:
    return f"{keys.PREFIX}:{{w:{workspace}}}:{method}"


@dataclass(frozen=True)
class Rate:
    """``per_minute`` calls a minute, ``burst`` of them back to back."""

    per_minute: float
    burst: int = 3

    @property
    def interval_ms(self) -> int:
        return max(1, int(60_000 / self.per_minute))

    @property
    def burst_ms(self) -> int:
        return max(0, self.burst - 1) * self.interval_ms


class SharedBudget:
    """The budgets of a platform's methods, per workspace, shared by every process."""

    def __init__(self, client: Any, rates: Mapping[str, Rate]) -> None:
        self.rates = dict(rates)
        self._spend = client.register_script(SPEND_SLOTS)
        self._pause = client.register_script(PAUSE)
        self._reserve = client.register_script(RESERVE_SLOT)
        #: Without Redis: this process's own next free slot and pause per (workspace, method) (ms).
        self._local_tat: dict[tuple[str, str], int] = {}
        self._local_paused: dict[tuple[str, str], int] = {}

    async def spend(self, workspace: str, *methods: str, headroom: int = 0) -> float:
        """0 when a call of each method may go now (their slots are spent, all or none); otherwise the
        seconds until they could. ``headroom``: slots of each budget left for calls that cannot wait."""
        methods = tuple(m for m in methods if m in self.rates)  # a method without a rate is not limited
        if not methods:
            return 0.0
        args: list[int] = []
        for method in methods:
            rate = self.rates[method]
            args += [rate.interval_ms, rate.burst_ms, headroom * rate.interval_ms]
        try:
            ms = int(await self._spend(keys=[budget_key(workspace, m) for m in methods], args=args))
        except STORE_FAILURES as exc:
            log.debug("%s budget unavailable (%s): paced in this process", "+".join(methods), type(exc).__name__)
            return self._local_spend(workspace, methods, headroom) / 1000
        if ms == 0:  # this process's own pace goes on from the slots it spent, should Redis fail next
            now = _now_ms()
            for method in methods:
                key = (workspace, method)
                self._local_tat[key] = max(self._local_tat.get(key, 0), now) + self.rates[method].interval_ms
        return ms / 1000

    async def reserve(self, workspace: str, *budgets: tuple[str, str]) -> float:
        """Take the next slot of each ``(method, scope)`` budget however far ahead it is (``scope``: "" for the
        whole workspace, else a channel, say); returns the seconds until it (0: go now). For calls that cannot
        be dropped: the caller waits that long, once, and calls."""
        budgets = tuple(b for b in budgets if b[0] in self.rates)  # a budget without a rate does not limit
        if not budgets:
            return 0.0
        args: list[int] = []
        for method, _ in budgets:
            rate = self.rates[method]
            args += [rate.interval_ms, rate.burst_ms]
        keys_ = [budget_key(workspace, f"{method}:{scope}" if scope else method) for method, scope in budgets]
        try:
            return int(await self._reserve(keys=keys_, args=args)) / 1000
        except STORE_FAILURES as exc:  # the platform's own 429 (and the client's retries) still pace it
            log.debug("post budget unavailable (%s)", type(exc).__name__)
            return 0.0

    def _local_spend(self, workspace: str, methods: tuple[str, ...], headroom: int) -> int:
        """``SPEND_SLOTS`` kept in this process: ms to wait, 0 when the slots were spent."""
        now, wait = _now_ms(), 0
        for method in methods:
            rate, key = self.rates[method], (workspace, method)
            tat = max(self._local_tat.get(key, 0), now)
            wait = max(wait, self._local_paused.get(key, 0) - now,
                       tat - rate.burst_ms + headroom * rate.interval_ms - now)
        if wait > 0:
            return wait
        for method in methods:
            key = (workspace, method)
            self._local_tat[key] = max(self._local_tat.get(key, 0), now) + self.rates[method].interval_ms
        return 0

    async def pause(self, workspace: str, method: str, seconds: float) -> None:
        """The platform said 429: nobody in the workspace calls ``method`` for ``seconds`` (this process
        keeps to it even when Redis cannot tell the others)."""
        key = (workspace, method)
        self._local_paused[key] = max(self._local_paused.get(key, 0), _now_ms() + int(seconds * 1000))
        try:
            await self._pause(keys=[budget_key(workspace, method)], args=[int(seconds * 1000)])
        except STORE_FAILURES as exc:
            log.debug("%s budget unavailable (%s)", method, type(exc).__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)
