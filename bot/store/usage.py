"""Token usage sums in Redis: per thread, per case and per community per UTC day.

    tg:{t:T}:usage              hash  FIELDS of bot.usage: the thread's totals
    tg:{c:C}:usage:<YYYY-MM-DD> hash  the community's totals for that day
    tg:{c:C}:case:<n>:usage     hash  the thread's totals when case n was filed
    tg:usage:communities        set   communities with recorded usage

A turn's tokens are added by its commit (``scripts.turns.COMMIT_TURN``): to the thread's sums in the thread's
slot and, on one server, to the community's day in the same script; on Redis Cluster the day's sums live
in another slot and the store sends them by a request at the same time as the commit, so they add no
sequential round trip. A turn that commits nothing (its model call failed) is recorded alone by
``UsageLedger.record_turn``: one pipelined request of two script calls. A turn that filed a case adds one
more request, which copies the thread's totals to the case.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from bot.errors import StoreUnavailable
from bot.model import Usage
from bot.store import keys
from bot.store.errors import STORE_FAILURES
from bot.types import ThreadRef
from bot.usage import FIELDS, DayUsage, TokenTotals, day_of

USAGE_COMMUNITIES = f"{keys.PREFIX}:usage:communities"

# KEYS: one usage hash. ARGV: ttl ms, then field, increment pairs. Returns the hash's new values of the
# fields named, in order. One command instead of an HINCRBY per field.
ADD = """
local out = {}
for i = 2, #ARGV, 2 do
  out[#out + 1] = redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return out
"""
#: Daily community totals are kept this long (they hold numbers only, no member data).
DAY_TTL_S = 400 * 86_400


def counts(usage: Usage, register: bool) -> str:
    """A turn's increments of ``FIELDS`` (one turn), then 1 when the community may still need registering
    in ``USAGE_COMMUNITIES`` (else 0), space-separated: what the commit script adds."""
    return " ".join([*map(str, TokenTotals.of_turn(usage).as_dict().values()), "1" if register else "0"])


def spent(usage: Usage) -> list[Any]:
    """``ADD``'s field and increment pairs of a turn, the fields it spent only (a community's day)."""
    turn = TokenTotals.of_turn(usage).as_dict()
    return [x for name in FIELDS if turn[name] for x in (name, turn[name])]


def thread_usage(thread_key: str) -> str:
    return f"{keys.thread_tag(thread_key)}:usage"


def community_day(community: str, day: str) -> str:
    return f"{keys.community_tag(community)}:usage:{day}"


def case_usage(community: str, case_id: int) -> str:
    return f"{keys.case(community, case_id)}:usage"


class UsageLedger:
    """Records and reads usage sums; ``client`` is any redis-py asyncio client (or fakeredis)."""

    def __init__(self, client: Any, *, thread_ttl_ms: int) -> None:
        self.client = client
        self.thread_ttl_ms = thread_ttl_ms
        #: Requests sent to Redis (a pipeline counts once): for benchmarks.
        self.round_trips = 0
        self._add_sha = hashlib.sha1(ADD.encode()).hexdigest()  # noqa: S324 - the script's name in Redis
        self._registered: set[str] = set()  # communities this process already added to USAGE_COMMUNITIES
        self._loaded = False  # the script is known to be loaded on every cluster node

    async def record_turn(self, thread: ThreadRef, usage: Usage, *, at: float | None = None) -> TokenTotals:
        """Add one turn's usage to the thread's and the community's day sums; returns the thread's totals."""
        turn = TokenTotals.of_turn(usage).as_dict()
        day_key = community_day(thread.community, day_of(time.time() if at is None else at))
        t_key = thread_usage(thread.key)
        every = [x for name in FIELDS for x in (name, turn[name])]
        day = spent(usage)
        try:
            try:
                results = await self._send(thread.community, t_key, day_key, every, day)
            except NoScriptError:  # a restarted or new server: load the script once, then send again
                self.round_trips += 1
                await self.client.script_load(ADD)
                results = await self._send(thread.community, t_key, day_key, every, day)
            if day:
                self._registered.add(thread.community)
            return TokenTotals(*(int(v) for v in results[0]))
        except STORE_FAILURES as exc:
            raise StoreUnavailable(f"redis record_usage failed: {type(exc).__name__}") from exc

    async def record_case(self, community: str, case_id: int, totals: TokenTotals) -> None:
        """Keep the thread's totals at the time it ended with its case."""
        self.round_trips += 1
        c_key = case_usage(community, case_id)
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(c_key, mapping=totals.as_dict())
            pipe.pexpire(c_key, self.thread_ttl_ms)
            await pipe.execute()
        except STORE_FAILURES as exc:
            raise StoreUnavailable(f"redis record_case_usage failed: {type(exc).__name__}") from exc

    async def _send(self, community: str, t_key: str, day_key: str, every: list[Any], spent: list[Any]) -> list[Any]:
        self.round_trips += 1
        if isinstance(self.client, RedisCluster):  # no scripts in cluster pipelines: one request per slot, at once
            if not self._loaded:  # load it first, so a NOSCRIPT cannot leave one of the two sums counted
                await self.client.script_load(ADD)
                self._loaded = True
            sends = [self.client.evalsha(self._add_sha, 1, t_key, self.thread_ttl_ms, *every)]
            if spent:
                sends.append(self.client.evalsha(self._add_sha, 1, day_key, DAY_TTL_S * 1000, *spent))
                if community not in self._registered:
                    sends.append(self.client.sadd(USAGE_COMMUNITIES, community))
            return list(await asyncio.gather(*sends))
        pipe = self.client.pipeline(transaction=False)
        pipe.evalsha(self._add_sha, 1, t_key, self.thread_ttl_ms, *every)
        if spent:
            pipe.evalsha(self._add_sha, 1, day_key, DAY_TTL_S * 1000, *spent)
            if community not in self._registered:
                pipe.sadd(USAGE_COMMUNITIES, community)
        return list(await pipe.execute())

    async def members_day(self, community: str, day: str) -> dict[str, int]:
        """Tokens each member used that UTC day (counted where the community has limits). The members' day
        also holds their message buckets and the day's spend, under names with a space, which no member id
        has (``bot.limits``)."""
        try:
            found = await self.client.hgetall(keys.members_day(community, day))
        except STORE_FAILURES as exc:
            raise StoreUnavailable(f"redis usage members failed: {type(exc).__name__}") from exc
        return {str(k): int(v) for k, v in found.items() if " " not in str(k)}

    async def thread(self, thread_key: str) -> TokenTotals:
        self.round_trips += 1
        return TokenTotals.from_hash(await self._hgetall(thread_usage(thread_key)))

    async def case(self, community: str, case_id: int) -> TokenTotals:
        return TokenTotals.from_hash(await self._hgetall(case_usage(community, case_id)))

    async def communities(self) -> list[str]:
        try:
            return sorted(await self.client.smembers(USAGE_COMMUNITIES))
        except STORE_FAILURES as exc:
            raise StoreUnavailable(f"redis usage communities failed: {type(exc).__name__}") from exc

    async def days(self, community: str, *, days: int = 30, until: float | None = None) -> list[DayUsage]:
        """The community's daily totals for the ``days`` UTC days up to ``until`` (default today), newest
        first; days without usage are left out. One request: the keys share the community's slot."""
        last = datetime.fromtimestamp(time.time() if until is None else until, tz=UTC).date()
        wanted = [(last - timedelta(days=i)).isoformat() for i in range(days)]
        try:
            pipe = self.client.pipeline(transaction=False)
            for day in wanted:
                pipe.hgetall(community_day(community, day))
            found = await pipe.execute()
        except STORE_FAILURES as exc:
            raise StoreUnavailable(f"redis usage days failed: {type(exc).__name__}") from exc
        rows = [DayUsage(community, day, TokenTotals.from_hash(data)) for day, data in zip(wanted, found, strict=True)]
        return [r for r in rows if not r.totals.empty]

    async def _hgetall(self, key: str) -> dict[str, str]:
        try:
            return dict(await self.client.hgetall(key))
        except STORE_FAILURES as exc:
            raise StoreUnavailable(f"redis usage read failed: {type(exc).__name__}") from exc
