"""``TurnInbox`` on Redis: a member's message accepted by one script (dedupe, frozen check, append to the
thread's inbox, and the lease when the thread is free); leases renewed and handed back; the due sets the
recovery loop reads. On Redis Cluster the thread is also registered in its due set (another slot), and a
community's limits are checked in its slot, by requests sent at the same time as the accepting script.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable
from typing import Any

from bot.errors import StoreUnavailable
from bot.limits import LimitCheck, LimitHit
from bot.store import ClaimResult, ClaimStatus, DueThreads, IngestResult, IngestStatus, TurnStart, keys
from bot.store.connection import RedisConnection
from bot.store.inbox_entry import InboxEntry, UnknownThread
from bot.store.scripts import inbox as scripts
from bot.store.scripts import state_from_hash
from bot.store.scripts import turns as scripts_turns
from bot.store.scripts.limits import LIMIT_CHECK, limit_hit, limit_keys
from bot.store.window import HeldWindow, WindowCache
from bot.types import ThreadRef
from config.settings import StoreSettings

log = logging.getLogger(__name__)

#: How long a Slack reply waits for the opening mention it may have overtaken.
PARK_TTL_MS = 120_000


def now_ms() -> int:
    return int(time.time() * 1000)


class DueMarks:
    """``ADD_DUE`` on a connection: a thread due at ``at_ms`` in its due set, with the wake-up word when that
    makes it the set's first (what every write that makes a thread due sooner goes through)."""

    def __init__(self, connection: RedisConnection) -> None:
        self._redis = connection
        self._script = connection.script(scripts.ADD_DUE)

    def __call__(self, thread_key: str, at_ms: int) -> Awaitable[Any]:
        call = scripts.AddDue(thread_key, at_ms)
        return self._redis.run(self._script, call.keys(), call.to_args())


class RedisTurnInbox:
    def __init__(self, connection: RedisConnection, settings: StoreSettings, windows: WindowCache) -> None:
        self._redis = connection
        self.lease_ms = settings.lease_ms
        self._settings = settings
        self._windows = windows
        #: Threads whose due-set write failed at ingest (a failover), registered again later.
        self._unindexed: dict[str, int] = {}
        self._limits: dict[tuple[int, int], str] = {}
        self._ingest = connection.script(scripts.INGEST)
        self._limit_check = connection.script(LIMIT_CHECK)
        self._refuse = connection.script(scripts_turns.REFUSE_HEAD)
        self._claim = connection.script(scripts.CLAIM)
        self._lease_for_end = connection.script(scripts.LEASE_FOR_END)
        self._renew = connection.script(scripts.RENEW)
        self._forget_due = connection.script(scripts.FORGET_DUE)
        self._mark_due = DueMarks(connection)

    async def ingest(self, entry: InboxEntry, *, reminder_cooldown: int, unknown: UnknownThread,
                     take_lease: bool, max_inbox: int, max_turns: int,
                     limits: LimitCheck | None = None) -> IngestResult:
        """Accept a member's message into the thread's inbox (see ``scripts.inbox.INGEST``), checking and
        counting the member's ``limits`` in the same step (on Cluster: by a request sent alongside it)."""
        thread = entry.thread
        k = thread.key
        # A message this process will answer now is due for recovery only once its lease could run out.
        due_at = now_ms() + (self.lease_ms if take_lease else 0)
        held = self._windows.held(k) if take_lease else None
        call = scripts.Ingest(k, entry.id, entry.stored(), self._ingest_limits(max_inbox, max_turns),
                              reminder_cooldown, unknown, take_lease, due_at, held, limits)
        if self._redis.cluster:
            return await self._ingest_on_cluster(call, entry, limits)
        async with self._redis.trip("ingest"):
            res = await self._redis.run(self._ingest, call.keys(one_server=True), call.to_args(one_server=True))
        return self._result(scripts.IngestReply.from_reply(res), thread, held)

    async def _ingest_on_cluster(self, call: scripts.Ingest, entry: InboxEntry,
                                 limits: LimitCheck | None) -> IngestResult:
        """The accepting script and the thread's due-set registration (another slot) at the same time; with
        limits, their check in the community's slot too, its verdict applied by the owner the script made
        of this process, or handed to the script sent again when it could not take the message without it."""
        if limits is None:
            res, _ = await self._send_ingest(call)
            return self._result(scripts.IngestReply.from_reply(res), entry.thread, call.held)
        call.verdict = "?"
        res, verdict = await self._send_ingest(call, limits)
        if res[0] == scripts.ASK:
            if isinstance(verdict, BaseException):
                raise StoreUnavailable(f"redis limit_check failed: {type(verdict).__name__}") from verdict
            call.verdict = str(verdict or "")
            res, _ = await self._send_ingest(call)
            result = self._result(scripts.IngestReply.from_reply(res), entry.thread, call.held)
            if result.status is IngestStatus.HELD and result.due_ms is not None:
                # kept in a free thread: due when it wakes (the requests alongside registered it sooner or later)
                await self.reschedule_due(entry.thread, min(result.due_ms, call.due_at), later=False)
            return result
        reply = scripts.IngestReply.from_reply(res)
        if reply.status is IngestStatus.OWNER and reply.start is not None and not reply.start.at_risk:
            if isinstance(verdict, BaseException):  # its slot is failing over: the message goes on unlimited
                log.warning("thread %s: limits not checked (%s)", entry.thread.key, type(verdict).__name__)
            elif verdict:
                kind, until, now = str(verdict).split()
                return await self._refuse_head(entry, reply.token, limit_hit(kind, until, now, 0), call.held,
                                               keep=bool(limits.hold))
        return self._result(reply, entry.thread, call.held)

    async def _send_ingest(self, call: scripts.Ingest, limits: LimitCheck | None = None) -> tuple[Any, Any]:
        """One round trip on Cluster: the accepting script, the due-set registration and (``limits``) their
        check, each to its slot, at once. Returns the script's reply and the check's verdict (or its failure;
        ``None`` without ``limits``)."""
        redis, k = self._redis, call.thread_key
        async with redis.trip("ingest"):
            sends = [redis.run(self._ingest, call.keys(one_server=False), call.to_args(one_server=False)),
                     self._mark_due(k, call.due_at)]
            if limits is not None:
                redis.round_trips += 1  # a request of its own, sent with the others
                sends.append(redis.run(self._limit_check, limit_keys(limits), limits.args))
            outcomes = await asyncio.gather(*sends, return_exceptions=True)
            res, indexed = outcomes[0], outcomes[1]
            if isinstance(res, BaseException):
                raise res
        if isinstance(indexed, BaseException):  # its slot is failing over: registered later
            self._unindexed[k] = call.due_at
        return res, (outcomes[2] if limits is not None else None)

    async def _refuse_head(self, entry: InboxEntry, token: str, hit: LimitHit, held: HeldWindow | None, *,
                           keep: bool) -> IngestResult:
        """Cluster: the message this process now owns is over a limit (the verdict came with the accepting
        script's reply). Before any model call it is removed, the owner going on with what waits behind it or
        handing the lease back; or (``keep``) it stays at the head, marked, the lease goes back and the
        thread is due when the limit resets. The member is told once per window."""
        thread = entry.thread
        wake = now_ms() + max(0, hit.until_ms - hit.now_ms) if keep else None
        call = scripts_turns.RefuseHead(thread.key, token, entry.id, hit, self._settings.idle_ttl_ms, self.lease_ms,
                                        held, wake)
        async with self._redis.trip("refuse_head"):
            reply = scripts_turns.RefuseReply.from_reply(
                await self._redis.run(self._refuse, call.keys(), call.to_args()))
        told = LimitHit(hit.kind, hit.until_ms, reply.notify, hit.now_ms, kept=keep)
        if wake is not None:
            await self.reschedule_due(thread, wake, later=False)
            return IngestResult(IngestStatus.HELD, limit=told, due_ms=wake)
        start = reply.next.turn_start(thread, token, self._windows, held) if reply.next else None
        return IngestResult(IngestStatus.LIMITED, start=start, limit=told)

    def _result(self, reply: scripts.IngestReply, thread: ThreadRef, held: HeldWindow | None) -> IngestResult:
        if reply.status is IngestStatus.OWNER:
            assert reply.start is not None
            return IngestResult(reply.status, start=reply.start.turn_start(thread, reply.token, self._windows, held))
        return IngestResult(reply.status, remind=reply.remind, queued=reply.queued,
                            pending_cases=reply.pending_cases, limit=reply.limit, due_ms=reply.due_ms)

    def _ingest_limits(self, max_inbox: int, max_turns: int) -> str:
        """The accepting script's settings, in one argument: lease, dedupe (s), inbox and thread length
        limits, idle lifetime, parking lifetime."""
        limits = self._limits.get((max_inbox, max_turns))
        if limits is None:
            s = self._settings
            limits = self._limits[max_inbox, max_turns] = (
                f"{self.lease_ms} {s.dedupe_ttl_seconds} {max_inbox} {max_turns} {s.idle_ttl_ms} {PARK_TTL_MS}")
        return limits

    async def claim(self, thread: ThreadRef) -> ClaimResult:
        """Take a thread with a waiting inbox whose lease is free (the recovery loop)."""
        held = self._windows.held(thread.key)
        call = scripts.Claim(thread.key, self.lease_ms, held)
        async with self._redis.trip("claim"):
            reply = scripts.ClaimReply.from_reply(await self._claim(keys=call.keys(), args=call.to_args()))
        if reply.start is not None:
            return ClaimResult(reply.status, start=reply.start.turn_start(thread, reply.token, self._windows, held))
        return ClaimResult(reply.status, lease_left_ms=reply.lease_left_ms)

    async def lease_for_end(self, thread: ThreadRef) -> ClaimResult:
        """The lease without an inbox entry (the member's end command); the start holds the whole log."""
        call = scripts.LeaseForEnd(thread.key, self.lease_ms)
        async with self._redis.trip("lease_for_end"):
            reply = scripts.LeaseForEndReply.from_reply(await self._lease_for_end(keys=call.keys(),
                                                                                  args=call.to_args()))
        if reply.status is not ClaimStatus.OWNER or reply.state is None or reply.log is None:
            return ClaimResult(reply.status)
        start = TurnStart(token=reply.token, state=state_from_hash(thread, reply.state), log=reply.log)
        return ClaimResult(reply.status, start=start)

    async def renew(self, thread: ThreadRef, token: str) -> bool:
        """Renew the owner's lease; False once a newer owner holds the thread."""
        call = scripts.Renew(thread.key, token, self.lease_ms)
        async with self._redis.trip("renew"):
            return bool(await self._renew(keys=call.keys(), args=call.to_args()))

    async def release(self, thread: ThreadRef, token: str) -> None:
        """Hand the lease back (shutdown); the thread is due at once for another worker."""
        k = thread.key
        call = scripts.Renew(k, token, None)
        async with self._redis.trip("release"):
            await self._renew(keys=call.keys(), args=call.to_args())
            await self._mark_due(k, now_ms())

    async def due_threads(self, platform: str, now_ms: int, limit: int,
                          shards: Iterable[int] | None = None) -> DueThreads:
        """Threads of ``platform`` whose inbox is due for a look, with their scores, from every due set (or
        those numbered ``shards``; up to ``limit`` a set), and when to look at each again (on Cluster, the
        sets of a failing node are skipped this time)."""
        await self._index_late()
        numbers = list(range(keys.DUE_SHARDS) if shards is None else shards)
        names = [keys.due_shard(platform, shard) for shard in numbers]
        redis = self._redis
        async with redis.trip("due_threads"):  # each set's first ``limit``: the due ones, then the next
            if redis.cluster:
                found = await asyncio.gather(*(redis.client.zrange(name, 0, limit - 1, withscores=True)
                                               for name in names), return_exceptions=True)
                if found and all(isinstance(rows, BaseException) for rows in found):
                    raise next(rows for rows in found if isinstance(rows, BaseException))
            else:
                pipe = redis.client.pipeline(transaction=False)
                for name in names:
                    pipe.zrange(name, 0, limit - 1, withscores=True)
                found = await pipe.execute()
        due = DueThreads()
        for shard, rows in zip(numbers, found, strict=True):
            if isinstance(rows, BaseException):
                due.later[shard] = now_ms
                continue
            scored = [(str(member), int(score)) for member, score in rows]
            now = [row for row in scored if row[1] <= now_ms]
            due.extend(now)
            if now:  # they may still be there after this pass (answered here, held by a live owner)
                due.later[shard] = now_ms
            elif scored:
                due.later[shard] = scored[0][1]
        return due

    async def _index_late(self) -> None:
        """Register threads whose due-set write failed at ingest (a failover); best effort."""
        for k, due_at in list(self._unindexed.items()):
            try:
                async with self._redis.trip("index_late"):
                    await self._mark_due(k, due_at)
            except StoreUnavailable:
                return
            del self._unindexed[k]

    async def reschedule_due(self, thread: ThreadRef, at_ms: int, *, later: bool = True) -> None:
        """Look at this inbox again at ``at_ms`` (``later``: never earlier than already planned)."""
        async with self._redis.trip("reschedule_due"):
            if later:  # never sooner: the processes waiting for the set's first due time need no word
                await self._redis.client.zadd(keys.due(thread.key), {thread.key: at_ms}, xx=True, gt=True)
            else:
                await self._mark_due(thread.key, at_ms)

    async def charge_limits(self, check: LimitCheck) -> LimitHit | None:
        """Check a member's limits and count the message when it is within them (a message a limit kept,
        taken up again); the limit it is still over, or ``None``."""
        async with self._redis.trip("charge_limits"):
            verdict = await self._redis.run(self._limit_check, limit_keys(check), check.args)
        if not verdict:
            return None
        kind, until, now = str(verdict).split()
        return limit_hit(kind, until, now, 0)

    async def forget_due(self, thread: ThreadRef, score: int) -> None:
        """The inbox was found empty: unregister it, unless a message arrived since (a newer score)."""
        call = scripts.ForgetDue(thread.key, score)
        async with self._redis.trip("forget_due"):
            await self._forget_due(keys=call.keys(), args=call.to_args())
