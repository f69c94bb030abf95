"""``TurnLog`` on Redis. A turn is written by one script, fenced by the lease token; it also adds the
turn's token usage and hands over the next inbox entry (an ordinary turn costs two round trips with its
ingest). On Redis Cluster the turn's usage is added to its community's day, and an ended thread registered
in the pending-case index, by requests to other slots (the usage at the same time as the commit).

A turn start sends the history window; what this process already holds of it (``bot.store.window``) is
not sent again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bot.limits import SpendCount
from bot.model import Usage
from bot.store import CommitResult, CommitStatus, TurnCommit, keys, usage
from bot.store.connection import RedisConnection
from bot.store.errors import STORE_FAILURES
from bot.store.redis_cases import PendingIndex
from bot.store.scripts import state_from_hash
from bot.store.scripts import turns as scripts
from bot.store.scripts.limits import DAY_SPEND, DaySpend, alert_levels
from bot.store.usage import community_day
from bot.store.window import WindowCache
from bot.types import Entry, ThreadRef, ThreadState
from bot.usage import day_of
from config.settings import StoreSettings

log = logging.getLogger(__name__)


class RedisTurnLog:
    def __init__(self, connection: RedisConnection, settings: StoreSettings, windows: WindowCache,
                 pending: PendingIndex) -> None:
        self._redis = connection
        self._lease_ms = settings.lease_ms
        self._idle_ttl_ms = settings.idle_ttl_ms
        self._windows = windows
        self._pending = pending
        self._usage_communities: set[str] = set()  # communities this process registered as having usage
        #: The commit script's lifetimes, in one argument: active, ended, lease, usage sums (as long as an
        #: ended thread), day sums (ms).
        self._commit_ttls = (f"{settings.idle_ttl_ms} {settings.ended_ttl_ms} {settings.lease_ms} "
                             f"{settings.ended_ttl_ms} {usage.DAY_TTL_S * 1000}")
        self._commit = connection.script(scripts.COMMIT_TURN)
        self._drop = connection.script(scripts.DROP_HEAD)
        self._pass_on = connection.script(scripts.PASS_ON)
        self._seed = connection.script(scripts.SEED_BRANCH)
        self._reopen = connection.script(scripts.REOPEN)
        self._add_usage = connection.script(usage.ADD)
        self._day_spend = connection.script(DAY_SPEND)

    async def commit_turn(self, thread: ThreadRef, token: str, commit: TurnCommit, *,
                          go_on: bool = True, hold: bool = False) -> CommitResult:
        """``hold``: keep the lease even when the inbox is empty (the turn still has posts to make; then
        ``pass_on``), so no later answer in the thread can overtake them."""
        k = thread.key
        redis = self._redis
        held = self._windows.held(k)
        used = commit.usage if commit.usage is not None and not commit.usage.empty else None
        spend = commit.spend
        day = spend.day if spend is not None else day_of(time.time())
        day_key = community_day(thread.community, day) if used else ""
        register = bool(used) and thread.community not in self._usage_communities
        call = scripts.Commit(thread, token, f"{time.time():.3f}", self._commit_ttls, commit, go_on, held,
                              usage.counts(used, register) if used else "", spend, hold)
        # one server: the keys of other slots go in the same script
        thread_keys = call.keys(one_server=not redis.cluster, pending_index=keys.pending_index(k),
                                communities=usage.USAGE_COMMUNITIES, day=day_key)
        async with redis.trip("commit_turn"):
            if redis.cluster and used and not commit.usage_sent_elsewhere:
                # the community's day sums live in another slot: sent at the same time, once
                commit.usage_sent_elsewhere = True
                res, passed = await asyncio.gather(redis.run(self._commit, thread_keys, call.to_args()),
                                                   self._add_day(thread.community, day_key, used, spend))
                res = [*res[:4], " ".join(map(str, passed))]
            else:
                res = await redis.run(self._commit, thread_keys, call.to_args())
        if register and not redis.cluster:  # registered by the script (on Cluster by ``_add_day``)
            self._usage_communities.add(thread.community)
        reply = scripts.CommitReply.from_reply(res)
        if reply.status is CommitStatus.ENDED and redis.cluster:
            await self._pending.add(k)
        nxt = reply.next.turn_start(thread, token, self._windows, held) if reply.next else None
        return CommitResult(reply.status, reply.end_seq, next=nxt, totals=reply.totals,
                            spend_alerts=reply.spend_alerts)

    async def _add_day(self, community: str, day_key: str, used: Usage, spend: SpendCount | None) -> tuple[int, ...]:
        """Cluster: a turn's tokens to the community's day sums (another slot than the thread's), with the
        member's day and the spend alerts when limits count them, a request of its own; a failure costs
        those numbers, never the turn. Returns the spend alert levels passed now."""
        redis = self._redis
        redis.round_trips += 1
        passed: tuple[int, ...] = ()
        try:
            if spend is not None:
                call = DaySpend(day_key, community, spend, usage.DAY_TTL_S * 1000, usage.counts(used, False))
                passed = alert_levels(await self._day_spend(keys=call.keys(), args=call.to_args()))
            else:
                await self._add_usage(keys=[day_key], args=[usage.DAY_TTL_S * 1000, *usage.spent(used)])
            if community not in self._usage_communities:
                await redis.client.sadd(usage.USAGE_COMMUNITIES, community)
                self._usage_communities.add(community)
        except STORE_FAILURES as exc:
            log.warning("redis usage of community %s not recorded: %s", community, type(exc).__name__)
        return passed

    async def drop_head(self, thread: ThreadRef, token: str, entry_id: str, *, go_on: bool,
                        reminder_cooldown: int | None, forget: bool = False) -> CommitResult:
        """Remove the inbox entry the owner answered without a turn (ended thread, failed model call);
        ``forget``: the event may be delivered again and is then accepted anew."""
        held = self._windows.held(thread.key)
        call = scripts.Drop(thread.key, token, entry_id, self._lease_ms, go_on, reminder_cooldown, forget, held)
        async with self._redis.trip("drop_head"):
            reply = scripts.DropReply.from_reply(await self._drop(keys=call.keys(), args=call.to_args()))
        return CommitResult(reply.status, remind=reply.remind,
                            next=reply.next.turn_start(thread, token, self._windows, held) if reply.next else None)

    async def pass_on(self, thread: ThreadRef, token: str, *, go_on: bool = True) -> CommitResult:
        """After the posts of a turn committed with ``hold``: the next inbox entry's start (lease kept), or
        the lease handed back; ``LOST_LOCK`` when a newer owner holds the thread."""
        held = self._windows.held(thread.key)
        call = scripts.PassOn(thread.key, token, self._lease_ms, go_on, held)
        async with self._redis.trip("pass_on"):
            reply = scripts.DropReply.from_reply(await self._redis.run(self._pass_on, call.keys(), call.to_args()))
        return CommitResult(reply.status,
                            next=reply.next.turn_start(thread, token, self._windows, held) if reply.next else None)

    async def read_log(self, thread: ThreadRef) -> list[Entry]:
        """The whole log (a case transcript; never on an ordinary turn)."""
        async with self._redis.trip("read_log"):
            raw = await self._redis.client.lrange(keys.log(thread.key), 0, -1)
        return [Entry.from_json(r) for r in raw]

    async def load(self, thread: ThreadRef) -> tuple[ThreadState, list[Entry]]:
        k = thread.key
        async with self._redis.trip("load"):
            pipe = self._redis.client.pipeline(transaction=False)
            pipe.hgetall(keys.state(k))
            pipe.lrange(keys.log(k), 0, -1)
            data, raw = await pipe.execute()
        return state_from_hash(thread, data), [Entry.from_json(r) for r in raw]

    async def seed_branch(self, thread: ThreadRef, entries: list[Entry], state: ThreadState) -> bool:
        ladder = state.ladder
        fields: dict[str, Any] = {
            "status": "active", "redirects": ladder.redirects, "warned": "1" if ladder.warned else "0",
            "warned_turn": ladder.warned_turn, "at_risk": "1" if ladder.at_risk else "0",
            "crisis_posted": "1" if ladder.crisis_posted else "0", "turn": ladder.turn,
            "branch_of": state.branch_of or "", "platform": thread.platform,
            "community": thread.community, "channel": thread.channel, "created_at": f"{time.time():.3f}", "known": "1",
        }
        call = scripts.SeedBranch(thread.key, self._idle_ttl_ms, [e.to_json() for e in entries], fields)
        async with self._redis.trip("seed_branch"):
            return bool(await self._seed(keys=call.keys(), args=call.to_args()))

    async def reopen(self, thread: ThreadRef, entry: Entry) -> bool:
        call = scripts.Reopen(thread.key, entry.to_json(), f"{time.time():.3f}", self._idle_ttl_ms)
        async with self._redis.trip("reopen"):
            return bool(await self._reopen(keys=call.keys(), args=call.to_args()))
