"""Spend and rate limits: what a member may send and use, and what a community may spend per UTC day.

Pure decisions and words; the counting is done in Redis by the accepting script (the member's message
bucket, checked and counted at once) and the commit script (tokens and spend, added as the API billed
them), see ``bot.store.scripts.limits``. No limit ever applies in a thread flagged at risk (the accepting
script skips them there).
"""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass

from bot.clock import Clock, SystemClock
from bot.types import Author
from bot.usage import Prices, TokenTotals, day_of
from config.communities import CommunityConfig

DAY_S = 86_400


class LimitKind(enum.StrEnum):
    RATE = "rate"
    TOKENS = "tokens"
    SPEND = "spend"


@dataclass(frozen=True)
class LimitHit:
    """A message refused by a limit: which one, until when (epoch ms), and whether this thread's member
    is told now (once per limit window per thread)."""

    kind: LimitKind
    until_ms: int
    notify: bool
    now_ms: int


def _prices(prices: Prices) -> str:
    return f"{prices.input!r} {prices.output!r} {prices.cache_write!r} {prices.cache_read!r}"


@dataclass(frozen=True)
class LimitCheck:
    """One message's limits, as the accepting script checks them (``spec``)."""

    community: str
    member: str
    now_ms: int
    day: str
    day_end_ms: int
    per_minute: int
    bucket: int
    tokens_per_day: int
    #: The daily ceiling in millionths of a US dollar (prices are per million tokens).
    ceiling_micro: int
    prices: Prices

    def spec(self) -> str:
        return (f"{self.member} {self.now_ms} {self.per_minute} {self.bucket} {self.tokens_per_day} "
                f"{self.ceiling_micro} {self.day_end_ms} {_prices(self.prices)}")


@dataclass(frozen=True)
class SpendCount:
    """What the commit adds besides the thread's usage: the member's tokens of the day and the spend
    alerts (``spec``); ``day`` is the UTC day the community's sums go to."""

    member: str
    day: str
    ceiling_micro: int
    prices: Prices

    def spec(self) -> str:
        return f"{self.member} {self.ceiling_micro} {_prices(self.prices)}"


class Limiter:
    """Builds each message's checks and the words members and moderators see."""

    def __init__(self, clock: Clock | None = None, prices: Prices | None = None) -> None:
        self.clock = clock or SystemClock()
        self.prices = prices or Prices()

    def check(self, author: Author, config: CommunityConfig, community: str) -> LimitCheck | None:
        """The limits that apply to this member's next message (``None``: none, or the member is exempt)."""
        limits = config.limits
        if not limits.any or exempt(author, config):
            return None
        now = self.clock.now()
        return LimitCheck(community, _member(author.id), int(now * 1000), day_of(now), int(day_end(now) * 1000),
                          limits.messages_per_minute, limits.bucket, limits.tokens_per_day,
                          ceiling_micro(limits.daily_spend_usd), self.prices)

    def spend(self, member_id: str | None, config: CommunityConfig) -> SpendCount:
        return SpendCount(_member(member_id or "-"), day_of(self.clock.now()),
                          ceiling_micro(config.limits.daily_spend_usd), self.prices)

    def notice(self, hit: LimitHit, config: CommunityConfig) -> str:
        return limit_notice(hit, config.crisis_resources)

    def alert(self, community: str, level: int, config: CommunityConfig) -> str:
        ceiling = config.limits.daily_spend_usd
        when = "has reached" if level >= 100 else f"has passed {level}% of"
        after = (" Members' messages get no answer until 00:00 UTC (threads flagged at risk are still answered)."
                 if level >= 100 else "")
        return f"Spend alert: community {community} {when} its daily ceiling of US${ceiling:.2f} today.{after}"


@dataclass(frozen=True)
class LimitRow:
    """One limit beside what was used of it today (the usage page, ``threadguard usage``)."""

    name: str
    limit: str
    used: str


def limit_rows(config: CommunityConfig, today: TokenTotals, members: dict[str, int], prices: Prices) -> list[LimitRow]:
    """The community's limits, each beside today's use: the spend, the busiest member's tokens."""
    limits = config.limits
    rows = []
    if limits.daily_spend_usd:
        spent = prices.cost(today)
        rows.append(LimitRow("daily spend ceiling", f"US${limits.daily_spend_usd:.2f}",
                             f"US${spent:.4f} ({100 * spent / limits.daily_spend_usd:.0f}%)"))
    if limits.tokens_per_day:
        top = max(members.items(), key=lambda kv: kv[1], default=("-", 0))
        rows.append(LimitRow("tokens per member per day", f"{limits.tokens_per_day}",
                             f"most used: {top[1]} ({top[0]}); {len(members)} member(s) today"))
    if limits.messages_per_minute:
        rows.append(LimitRow("messages per member per minute", f"{limits.messages_per_minute} (burst {limits.bucket})",
                             "checked per message"))
    if rows:
        who = [*(["moderators"] if limits.exempt_moderators else []), *(f"role {r}" for r in limits.exempt_roles),
               *(f"user {u}" for u in limits.exempt_users)]
        rows.append(LimitRow("exempt", ", ".join(who) or "nobody", "threads flagged at risk are never limited"))
    return rows


def exempt(author: Author, config: CommunityConfig) -> bool:
    limits = config.limits
    if author.id in limits.exempt_users or any(role in limits.exempt_roles for role in author.roles):
        return True
    if not limits.exempt_moderators:
        return False
    return author.id in config.moderators or (config.moderator_role is not None
                                              and config.moderator_role in author.roles)


def ceiling_micro(usd: float) -> int:
    return round(usd * 1_000_000)


def day_end(now: float) -> float:
    """The next 00:00 UTC after ``now``."""
    return (math.floor(now / DAY_S) + 1) * DAY_S


def _member(member_id: str) -> str:
    """A member id as one word of a script argument."""
    return member_id.replace(" ", "_") or "-"


def wait_words(seconds: float) -> str:
    """``5 h 12 min``, ``3 min``, ``40 s``."""
    seconds = max(1, math.ceil(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = math.ceil(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


_WHAT = {
    LimitKind.RATE: "You're sending messages faster than this community allows",
    LimitKind.TOKENS: "You've reached your daily limit in this community",
    LimitKind.SPEND: "You've reached today's limit for this community",
}


def limit_notice(hit: LimitHit, crisis_resources: str) -> str:
    """The one line a limited member sees: which limit, when they can go on, that the message was not
    answered; a pointer to the community's crisis resources when it has them."""
    at = time.strftime("%H:%M", time.gmtime(hit.until_ms / 1000))
    wait = wait_words((hit.until_ms - hit.now_ms) / 1000)
    text = (f"{_WHAT[hit.kind]}; you can continue after {at} UTC, in {wait}. "
            "I didn't answer your message: please send it again then.")
    pointer = " ".join(crisis_resources.split())
    if pointer:
        text += f"\nIf you need support right now: {pointer}"
    return text
