"""Token usage sums in Redis: per thread, per case and per community per UTC day.

    tg:{t:T}:usage              hash  FIELDS of bot.usage: the thread's totals
    tg:{c:C}:usage:<YYYY-MM-DD> hash  the community's totals for that day
    tg:{c:C}:case:<n>:usage     hash  the thread's totals when case n was filed
    tg:usage:communities        set   communities with recorded usage

A turn's record is two script calls (one per key: the thread's slot and the community's). It rides with
the turn's commit (``TurnRecord``): on one server in the commit's own pipeline, so it adds no request; on
Redis Cluster the two go to their nodes at the same time as the commit, so it adds a request but no
sequential round trip. A turn that filed a case adds one more request, which copies the thread's totals
to the case.
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


def thread_usage(thread_key: str) -> str:
    return f"{keys.thread_tag(thread_key)}:usage"


def community_day(community: str, day: str) -> str:
    return f"{keys.community_tag(community)}:usage:{day}"


def case_usage(community: str, case_id: int) -> str:
    return f"{keys.case(community, case_id)}:usage"


class UsageLedger:
    """Records and reads usage sums; ``client`` is any redis-py asyncio client (or fakeredis)."""

    def __init__(self, client: Any, *, thread_ttl_ms: int = 365 * 86_400_000) -> None:
        self.client = client
        self.thread_ttl_ms = thread_ttl_ms
        #: Requests sent to Redis (a pipeline counts once): for benchmarks.
        self.round_trips = 0
        self._add_sha = hashlib.sha1(ADD.encode()).hexdigest()  # noqa: S324 - the script's name in Redis
        self._registered: set[str] = set()  # communities this process already added to USAGE_COMMUNITIES
        self._loaded = False  # the script is known to be loaded on every cluster node

    async def record_turn(self, thread: ThreadRef, usage: Usage, *, at: float | None = None) -> TokenTotals:
        """Add one turn's usage to the thread's and the community's day sums; returns the thread's totals."""
        record = self.turn_record(thread, usage, at=at)
        await record.settle(None)
        if record.totals is None:
            raise StoreUnavailable(f"redis record_usage failed: {type(record.error).__name__}") from record.error
        return record.totals

    def turn_record(self, thread: ThreadRef, usage: Usage, *, at: float | None = None) -> TurnRecord:
        """One turn's usage record, to send with the turn's commit (or alone: ``settle(None)``)."""
        counts = TokenTotals.of_turn(usage).as_dict()
        day_key = community_day(thread.community, day_of(time.time() if at is None else at))
        every = [x for name in FIELDS for x in (name, counts[name])]
        spent = [x for name in FIELDS if counts[name] for x in (name, counts[name])]
        return TurnRecord(self, thread.community, thread_usage(thread.key), day_key, every, spent)

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

    async def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """``commands`` alone, in one request (on Cluster: one per slot, at once); loads the script first
        on a server that lost it."""
        try:
            return await self._send_once(commands)
        except NoScriptError:  # a restarted or new server: load the script once, then send again
            self.round_trips += 1
            await self.client.script_load(ADD)
            return await self._send_once(commands)

    async def _send_once(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        self.round_trips += 1
        if isinstance(self.client, RedisCluster):  # no scripts in cluster pipelines: one request per slot, at once
            if not self._loaded:  # load it first, so a NOSCRIPT cannot leave one of the two sums counted
                await self.client.script_load(ADD)
                self._loaded = True
            return list(await asyncio.gather(*(self.client.execute_command(*c) for c in commands)))
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute())

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


class TurnRecord:
    """One turn's usage record, sent with the turn's commit.

    On one server the store puts its commands in the commit's pipeline (``queue``) and hands back their
    replies (``settle(replies)``); on Redis Cluster, and anywhere it goes alone, ``settle(None)`` sends it.
    Afterwards ``totals`` holds the thread's new totals, or ``error`` what went wrong: a failure here costs
    the numbers, never the turn, and the record is never sent twice.
    """

    def __init__(self, ledger: UsageLedger, community: str, thread_key: str, day_key: str, every: list[Any],
                 spent: list[Any]) -> None:
        self._ledger = ledger
        self._community = community
        sha = ledger._add_sha
        self._commands: list[tuple[Any, ...]] = [("EVALSHA", sha, 1, thread_key, ledger.thread_ttl_ms, *every)]
        if spent:
            self._commands.append(("EVALSHA", sha, 1, day_key, DAY_TTL_S * 1000, *spent))
            if community not in ledger._registered:
                self._commands.append(("SADD", USAGE_COMMUNITIES, community))
        self.totals: TokenTotals | None = None
        self.error: BaseException | None = None

    def queue(self, pipe: Any) -> None:
        """Add the record's commands to a pipeline of the same server (the commit's)."""
        for command in self._commands:
            pipe.execute_command(*command)

    async def settle(self, replies: list[Any] | None) -> None:
        """Take the replies to the queued commands, or send the record now (``None``). A command the server
        did not run for want of the script (a restarted server) is sent again once it is loaded."""
        try:
            if replies is None:
                replies = await self._ledger._send(self._commands)
            missing = [c for c, r in zip(self._commands, replies, strict=True) if isinstance(r, NoScriptError)]
            if missing:
                again = iter(await self._ledger._send(missing))
                replies = [next(again) if isinstance(r, NoScriptError) else r for r in replies]
            failed = next((r for r in replies if isinstance(r, BaseException)), None)
            if failed is not None:
                raise failed
        except STORE_FAILURES as exc:
            self.failed(exc)
            return
        if len(self._commands) > 1:
            self._ledger._registered.add(self._community)
        self.totals = TokenTotals(*(int(v) for v in replies[0]))

    def failed(self, error: BaseException) -> None:
        """The request that carried the record failed: it is not sent again."""
        if self.totals is None:
            self.error = error
