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
from dataclasses import dataclass, field

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
    """A message over a limit: which one, until when (epoch ms on the limits' clock), whether this thread's
    member is told now (once per limit window per thread), and whether the message is kept to be answered
    when the limit resets (the community's ``over_limit``) instead of refused."""

    kind: LimitKind
    until_ms: int
    notify: bool
    now_ms: int
    kept: bool = False


def _prices(prices: Prices) -> str:
    return f"{prices.input!r} {prices.output!r} {prices.cache_write!r} {prices.cache_read!r}"


@dataclass(slots=True)
class LimitCheck:
    """One message's limits, as the accepting script checks them (``args``). Built for every message of a
    community with limits, so a plain class (a frozen one costs three times as much to build)."""

    community: str
    member: str
    #: The UTC day the member's tokens and the community's spend are counted in.
    day: str
    #: The script's arguments: the member, now (ms on the limits' clock), the ceiling (millionths of a US
    #: dollar), tokens per day, the message rate as one message per so many microseconds and how far ahead
    #: of now the bucket may run (``burst - 1`` such intervals), and the 4 prices (per million tokens).
    args: tuple[str, ...]
    #: '' when a message over a limit is refused; when it is kept to be answered at the reset, how far the
    #: limits' clock is ahead of the system clock (ms), so the thread is due when the reset comes.
    hold: str = ""


@dataclass(slots=True)
class SpendCount:
    """What the commit adds besides the thread's usage: the member's tokens of the day and the community's
    spend with its alerts (``args``); ``day`` is the UTC day the community's sums go to."""

    day: str
    #: The member, the ceiling (millionths of a US dollar), the 4 prices.
    args: tuple[str, str, str]


@dataclass(slots=True)
class _Terms:
    """A community's limits as the scripts read them, and who is exempt: built once per settings object."""

    #: The check's arguments after the member and now (``LimitCheck.args``).
    check: tuple[str, ...]
    #: The count's arguments after the member (``SpendCount.args``).
    spend: tuple[str, str]
    users: frozenset[str]
    roles: frozenset[str]
    #: A message over a limit is kept and answered when it resets.
    keep: bool
    #: Each member's count of the day ``counted`` (the same for all their turns that day).
    counts: dict[str, SpendCount] = field(default_factory=dict)
    counted: str = ""


class Limiter:
    """Builds each message's checks and the words members and moderators see.

    A check is built for every message of a community with limits: what stays the same between messages
    (a community's limits as script arguments and who is exempt, the UTC day) is kept, not worked out
    again."""

    def __init__(self, clock: Clock | None = None, prices: Prices | None = None) -> None:
        self.clock = clock or SystemClock()
        self.prices = prices or Prices()
        self._prices_text = _prices(self.prices)
        #: id of a community's settings -> (those settings, their terms or ``None``: no limits); the settings
        #: are kept so the id stays theirs.
        self._terms: dict[int, tuple[CommunityConfig, _Terms | None]] = {}
        #: The UTC day of the last check: its start and end (epoch s) and its name.
        self._day: tuple[float, float, str] = (0.0, 0.0, "")

    def check(self, author: Author, config: CommunityConfig, community: str) -> LimitCheck | None:
        """The limits that apply to this member's next message (``None``: none, or the member is exempt)."""
        terms = self._terms_of(config)
        if terms is None or author.id in terms.users or not terms.roles.isdisjoint(author.roles):
            return None
        now = self.clock.now()
        start, end, day = self._day
        if not start <= now < end:
            day = self._today(now)
        member, now_ms = _member(author.id), int(now * 1000)
        return LimitCheck(community, member, day, (member, str(now_ms)) + terms.check,  # noqa: RUF005 - faster
                          f"{now_ms - int(time.time() * 1000)}" if terms.keep else "")

    def spend(self, member_id: str | None, config: CommunityConfig) -> SpendCount | None:
        """What a turn counts for the limits besides its usage (``None``: the community has none)."""
        terms = self._terms_of(config)
        if terms is None:
            return None
        now = self.clock.now()
        start, end, day = self._day
        if not start <= now < end:
            day = self._today(now)
        if terms.counted != day or len(terms.counts) >= 4096:
            terms.counts.clear()
            terms.counted = day
        key = member_id or "-"
        count = terms.counts.get(key)
        if count is None:
            count = terms.counts[key] = SpendCount(day, (_member(key), *terms.spend))
        return count

    def _today(self, now: float) -> str:
        end = day_end(now)
        day = day_of(now)
        self._day = (end - DAY_S, end, day)
        return day

    def _terms_of(self, config: CommunityConfig) -> _Terms | None:
        found = self._terms.get(id(config))
        if found is not None and found[0] is config:
            return found[1]
        limits, terms = config.limits, None
        if limits.any:
            ceiling = str(ceiling_micro(limits.daily_spend_usd))
            interval = round(60_000_000 / limits.messages_per_minute) if limits.messages_per_minute else 0
            terms = _Terms((ceiling, str(limits.tokens_per_day), str(interval), str(interval * (limits.bucket - 1)),
                            self._prices_text),
                           (ceiling, self._prices_text), *exempt_ids(config), limits.over_limit == "answer_at_reset")
        if len(self._terms) >= 1024:  # settings reloaded many times: start afresh
            self._terms.clear()
        self._terms[id(config)] = (config, terms)
        return terms

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
    users, roles = exempt_ids(config)
    return author.id in users or not roles.isdisjoint(author.roles)


def exempt_ids(config: CommunityConfig) -> tuple[frozenset[str], frozenset[str]]:
    """The user ids and role ids whose members the community's limits never apply to."""
    limits = config.limits
    users, roles = set(limits.exempt_users), set(limits.exempt_roles)
    if limits.exempt_moderators:
        users.update(config.moderators)
        if config.moderator_role is not None:
            roles.add(config.moderator_role)
    return frozenset(users), frozenset(roles)


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
    """The one line a limited member sees: which limit, when they can go on, and that the message was not
    answered (send it again then) or is kept (answered then); a pointer to the community's crisis resources
    when it has them."""
    at = time.strftime("%H:%M", time.gmtime(hit.until_ms / 1000))
    wait = wait_words((hit.until_ms - hit.now_ms) / 1000)
    then = ("Your message is kept: I'll answer it after that, no need to send it again." if hit.kept
            else "I didn't answer your message: please send it again then.")
    text = f"{_WHAT[hit.kind]}; you can continue after {at} UTC, in {wait}. {then}"
    pointer = " ".join(crisis_resources.split())
    if pointer:
        text += f"\nIf you need support right now: {pointer}"
    return text
