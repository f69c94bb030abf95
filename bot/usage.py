"""Token accounting: what the model calls of a turn, a thread, a case and a community's day cost.

Pure types and arithmetic; ``bot.store.usage.UsageLedger`` keeps the sums in Redis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from bot.model import Usage
from bot.types import ThreadRef

#: The counters every usage hash holds, in display order.
FIELDS: tuple[str, ...] = ("input", "output", "cache_write", "cache_read", "calls", "turns")


@dataclass
class TokenTotals:
    """Summed usage: tokens by kind, model calls and turns."""

    input: int = 0
    output: int = 0
    cache_write: int = 0
    cache_read: int = 0
    calls: int = 0
    turns: int = 0

    @classmethod
    def of_turn(cls, usage: Usage) -> TokenTotals:
        return cls(usage.input_tokens, usage.output_tokens, usage.cache_creation_input_tokens,
                   usage.cache_read_input_tokens, usage.calls, 1)

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> TokenTotals:
        def num(name: str) -> int:
            try:
                return int(data.get(name, 0))
            except ValueError:
                return 0

        return cls(*(num(f) for f in FIELDS))

    def as_dict(self) -> dict[str, int]:
        return {f: int(getattr(self, f)) for f in FIELDS}

    def add(self, other: TokenTotals) -> None:
        for f in FIELDS:
            setattr(self, f, getattr(self, f) + getattr(other, f))

    @property
    def empty(self) -> bool:
        return not any(self.as_dict().values())

    @property
    def prompt_tokens(self) -> int:
        """Every input token, however billed (uncached, written to or read from the cache)."""
        return self.input + self.cache_write + self.cache_read


@dataclass(frozen=True)
class Prices:
    """US dollars per million tokens, by kind."""

    input: float = 3.0
    output: float = 15.0
    cache_write: float = 3.75
    cache_read: float = 0.30

    def cost(self, totals: TokenTotals) -> float:
        return (totals.input * self.input + totals.output * self.output + totals.cache_write * self.cache_write
                + totals.cache_read * self.cache_read) / 1_000_000

    def uncached_cost(self, totals: TokenTotals) -> float:
        """What the same calls would cost with no prompt cache at all."""
        return (totals.prompt_tokens * self.input + totals.output * self.output) / 1_000_000


@dataclass
class DayUsage:
    community: str
    day: str
    totals: TokenTotals


def day_of(ts: float) -> str:
    """The UTC day (``YYYY-MM-DD``) usage at ``ts`` is counted in."""
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


class UsageRecorder(Protocol):
    """Where the engine records what each turn spent (``bot.store.usage.UsageLedger``)."""

    async def record_turn(self, thread: ThreadRef, usage: Usage, *, at: float | None = None) -> TokenTotals: ...

    async def record_case(self, community: str, case_id: int, totals: TokenTotals) -> None: ...

    async def thread(self, thread_key: str) -> TokenTotals: ...
