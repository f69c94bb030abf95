"""``ConversationStore`` on Redis: one server, a Redis Cluster, or the in-process Redis (fakeredis).

Every transition is one Lua script on the keys of one hash tag. A member's message is accepted by one
script (dedupe, frozen check, append to the thread's inbox, and the lease when the thread is free), and
its turn is written by one more (fenced by the lease token; it also adds the turn's token usage and hands
over the next inbox entry): an ordinary turn costs two round trips, a message to a frozen thread one. On
Redis Cluster the thread is also registered in its due set, and the turn's usage added to its
community's day, by requests to other slots sent at the same time as those scripts.

A turn start sends the history window; what this process already holds of it (``bot.store.window``) is
not sent again.

An end is written in the commit (the freeze and the case body together, in the thread's slot) and then
numbered in the community's slot by an idempotent script; a crash or a failover in between leaves the
case in the thread's ``pending`` hash, from which the loop every process runs (``bot.worker``) files it.
No case is lost and none is filed twice.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.errors import StoreRefusingWrites, StoreUnavailable
from bot.metrics import Metrics
from bot.model import Usage
from bot.store import (
    ClaimResult,
    ClaimStatus,
    CommitResult,
    CommitStatus,
    IngestResult,
    IngestStatus,
    TurnCommit,
    TurnStart,
    keys,
    scripts,
    usage,
)
from bot.store.errors import STORE_FAILURES, WRITE_REFUSALS
from bot.store.scripts import STATE_FIELDS
from bot.store.usage import community_day, thread_usage
from bot.store.window import HeldWindow, WindowCache
from bot.types import Case, Entry, LadderState, ThreadRef, ThreadState, ThreadStatus
from bot.usage import TokenTotals, day_of

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
#: Requests this store has in flight at once: below the client's pool of 100 connections (per node on
#: Cluster), which raises instead of waiting when it runs out.
MAX_IN_FLIGHT = 80
#: How long a Slack reply waits for the opening mention it may have overtaken.
PARK_TTL_MS = 120_000


try:  # hiredis's C command packer, which redis-py's synchronous client uses and its asyncio client does not
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency; without it, redis-py's own packer
    _hiredis_pack = None  # type: ignore[assignment]

#: Argument types hiredis packs exactly as redis-py's encoder does (floats and the rest go redis-py's way).
_PLAIN_ARGS = frozenset((str, bytes, int))


class _Connection(aioredis.Connection):
    """redis-py's connection, packing a command in C and sending it straight away when it fits the buffer.

    With a socket timeout set, redis-py wraps every send in ``asyncio.wait_for``, which on Python 3.11 runs
    it as a task of its own: three event-loop passes per command, though such a send never waits. Only a
    send that could wait (a connection to open, data still buffered) goes the timed way. A script call
    carries 20 to 30 arguments, which redis-py's asyncio packer encodes one by one in Python.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        if _hiredis_pack is None or not args or type(args[0]) is not str \
                or not all(type(a) in _PLAIN_ARGS for a in args):
            return super().pack_command(*args)
        return [_hiredis_pack((*args[0].encode().split(), *args[1:]))]

    async def send_packed_command(self, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
        writer = getattr(self, "_writer", None)  # redis-py's own attributes: any other shape goes its way
        if (writer is None or getattr(self, "_reader", None) is None or self.health_check_interval
                or writer.transport.is_closing() or writer.transport.get_write_buffer_size()):
            await super().send_packed_command(command, check_health)
            return
        if isinstance(command, str):
            command = command.encode()
        writer.writelines([command] if isinstance(command, bytes) else command)


def connect(url: str | None, *, cluster: bool = False) -> Any:
    """A Redis client for ``url``; without a URL, the in-process Redis that speaks the same protocol."""
    if url is None:
        return _in_process_redis()
    # No health-check PING before a command on a connection that sat idle (it would add a round trip to
    # the first turn after every quiet spell): a connection found dead is replaced and the command
    # retried. A script call that fails on a dead connection was never run, so retrying it is safe.
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 2)
    if cluster:
        client = RedisCluster.from_url(url, decode_responses=True, retry=retry, socket_timeout=5,
                                       socket_connect_timeout=2)
        # The cluster client takes no connection class of its own: its nodes are built from one shared
        # kwargs dict (the start-up nodes already exist, with no connection open yet).
        shared = getattr(client, "connection_kwargs", None)
        if isinstance(shared, dict) and shared.get("connection_class") is aioredis.Connection:
            shared["connection_class"] = _Connection
            for node in getattr(client, "startup_nodes", ()):
                if getattr(node, "connection_class", None) is aioredis.Connection:
                    node.connection_class = _Connection
        return client
    return aioredis.Redis.from_url(url, decode_responses=True, retry=retry, socket_timeout=5,
                                   socket_connect_timeout=2, health_check_interval=0,
                                   retry_on_error=[RedisConnectionError, RedisTimeoutError],
                                   connection_class=_Connection)


def _in_process_redis() -> Any:
    """fakeredis, imported only when used, and without numpy: fakeredis loads it when it is installed,
    for vector sets threadguard never uses, and it would cost the console a tenth of a second to start."""
    blocked = "numpy" not in sys.modules
    if blocked:
        sys.modules["numpy"] = None  # type: ignore[assignment]  # makes "import numpy" fail fast
    try:
        import fakeredis
    finally:
        if blocked:
            del sys.modules["numpy"]
    return fakeredis.aioredis.FakeRedis(decode_responses=True)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _age(ended_at: str) -> float:
    """Seconds since an ISO timestamp (a large age when it cannot be read)."""
    try:
        return time.time() - datetime.fromisoformat(ended_at).timestamp()
    except ValueError:
        return float("inf")


def _pairs(flat: Iterable[Any]) -> dict[str, str]:
    items = list(flat)
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items) - 1, 2)}


def state_from_hash(thread: ThreadRef, data: dict[str, str]) -> ThreadState:
    def num(name: str, default: int = 0) -> int:
        try:
            return int(data.get(name, default))
        except ValueError:
            return default

    case_id = data.get("case_id")
    return ThreadState(
        thread=thread,
        status=ThreadStatus(data.get("status", "active")),
        ladder=LadderState(
            redirects=num("redirects"),
            warned=data.get("warned") == "1",
            warned_turn=num("warned_turn", -1),
            at_risk=data.get("at_risk") == "1",
            crisis_posted=data.get("crisis_posted") == "1",
            turn=num("turn"),
        ),
        branch_of=data.get("branch_of") or None,
        ended_reason=data.get("ended_reason") or None,
        ended_category=data.get("ended_category") or None,
        case_id=int(case_id) if case_id and case_id.isdigit() else None,
        jump_url=data.get("jump_url") or None,
    )


class _Trip:
    """One request: counted, waiting for a place when too many are in flight (a burst waits for a connection
    instead of failing for want of one), and a failure of the store raised as ``StoreUnavailable``."""

    __slots__ = ("store", "what")

    def __init__(self, store: RedisConversationStore, what: str) -> None:
        self.store = store
        self.what = what

    async def __aenter__(self) -> None:
        self.store.round_trips += 1
        await self.store._in_flight.acquire()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self.store._in_flight.release()
        if isinstance(exc, STORE_FAILURES):
            log.warning("redis %s failed: %s", self.what, type(exc).__name__)
            self.store.metrics.store_error(self.what)
            if isinstance(exc, WRITE_REFUSALS):
                raise StoreRefusingWrites(f"redis {self.what} refused a write") from exc
            raise StoreUnavailable(f"redis {self.what} failed") from exc


class RedisConversationStore:
    """The one store implementation; ``client`` is any redis-py asyncio client (or fakeredis)."""

    def __init__(self, client: Any, *, lock_ttl_ms: int = 6_000, dedupe_ttl_s: int = 86_400,
                 idle_ttl_ms: int = 30 * DAY_MS, ended_ttl_ms: int = 365 * DAY_MS,
                 max_in_flight: int = MAX_IN_FLIGHT, window_cache_threads: int = 128,
                 usage_ttl_ms: int | None = None) -> None:
        self.client = client
        self._in_flight = asyncio.Semaphore(max_in_flight)
        #: The lease: how long a thread's owner keeps it without renewing.
        self.lock_ttl_ms = lock_ttl_ms
        #: On Redis Cluster a due set lives in another slot than the thread, so it cannot be written by
        #: the same script.
        self.cluster = isinstance(client, RedisCluster)
        self._unindexed: dict[str, int] = {}
        self._unindexed_pending: set[str] = set()
        self.dedupe_ttl_s = dedupe_ttl_s
        self.idle_ttl_ms = idle_ttl_ms
        self.ended_ttl_ms = ended_ttl_ms
        #: How long a thread's usage sums are kept (by default as long as an ended thread).
        self.usage_ttl_ms = ended_ttl_ms if usage_ttl_ms is None else usage_ttl_ms
        self._usage_communities: set[str] = set()  # communities this process registered as having usage
        #: The commit script's lifetimes, in one argument: active, ended, lease, usage sums, day sums (ms).
        self._commit_ttls = (f"{idle_ttl_ms} {ended_ttl_ms} {lock_ttl_ms} {self.usage_ttl_ms} "
                             f"{usage.DAY_TTL_S * 1000}")
        self._limits: dict[tuple[int, int], str] = {}
        #: Requests sent to Redis (a script call or a pipeline counts once): for benchmarks.
        self.round_trips = 0
        #: Told about every failed request (the metrics of a long-running process).
        self.metrics = Metrics()
        #: The history windows of the threads this process worked on last (see ``bot.store.window``).
        self.windows = WindowCache(window_cache_threads)
        self._ingest = client.register_script(scripts.INGEST)
        self._claim = client.register_script(scripts.CLAIM)
        self._take = client.register_script(scripts.TAKE)
        self._commit = client.register_script(scripts.COMMIT_TURN)
        self._drop = client.register_script(scripts.DROP_HEAD)
        self._renew = client.register_script(scripts.RENEW)
        self._pass_on = client.register_script(scripts.PASS_ON)
        self._forget_due = client.register_script(scripts.FORGET_DUE)
        self._file = client.register_script(scripts.FILE_CASE)
        self._finish = client.register_script(scripts.FINISH_FILING)
        self._seed = client.register_script(scripts.SEED_BRANCH)
        self._reopen = client.register_script(scripts.REOPEN)
        self._add_usage = client.register_script(usage.ADD)

    def _trip(self, what: str) -> _Trip:
        return _Trip(self, what)

    async def _eval(self, script: Any, thread_keys: list[str], args: list[Any]) -> Any:
        """A registered script by its SHA (loaded first on a server that lacks it)."""
        try:
            return await self.client.execute_command("EVALSHA", script.sha, len(thread_keys), *thread_keys, *args)
        except NoScriptError:
            return await script(keys=thread_keys, args=args)

    # --- turns ---------------------------------------------------------------------------------

    def _start(self, thread: ThreadRef, token: str, start: list[Any], held: HeldWindow | None) -> TurnStart:
        """A ``TurnStart`` from a script's turn start (``scripts._START``: state, window, head, win, last,
        base, length), read on top of what the caller said it held (``held``)."""
        fields, tail, head, win, last, base, length = start
        state = {name: value for name, value in zip(STATE_FIELDS, fields, strict=True) if value is not None}
        log = self.windows.window(thread.key, held, tail, last, int(win), int(base), int(length),
                                  state.get("log_gen", "0"))
        return TurnStart(token=token, state=state_from_hash(thread, state), log=log, window_start=int(win),
                         head=str(head) if head else None)

    async def ingest(self, thread: ThreadRef, entry_id: str, entry: str, *, reminder_cooldown: int,
                     require_known: bool | str, take_lease: bool, max_inbox: int,
                     max_turns: int) -> IngestResult:
        """Accept a member's message into the thread's inbox (see ``scripts.INGEST``).

        ``require_known``: only in a thread the bot takes part in; ``"park"`` also keeps the message a
        short while for the thread's opening mention, which it may have overtaken.
        """
        k = thread.key
        # A message this process will answer now is due for recovery only once its lease could run out.
        due_at = _now_ms() + (self.lock_ttl_ms if take_lease else 0)
        thread_keys = [keys.state(k), keys.log(k), keys.lock(k), keys.seen(k, entry_id), keys.remind(k),
                       keys.inbox(k), keys.pending(k), keys.parked(k)]
        known = require_known if isinstance(require_known, str) else ("1" if require_known else "")
        held = self.windows.held(k) if take_lease else None
        args = [f"{entry_id}\t{entry}", self._ingest_limits(max_inbox, max_turns), reminder_cooldown, known,
                "1" if take_lease else "", k, due_at, *self.windows.args(held)]
        async with self._trip("ingest"):
            if self.cluster:  # one round trip: two requests to two slots, in parallel
                outcomes: tuple[Any, Any] = await asyncio.gather(self._eval(self._ingest, thread_keys, args),
                                                           self.client.zadd(keys.due(k), {k: due_at}),
                                                           return_exceptions=True)
                res, indexed = outcomes
                if isinstance(res, BaseException):
                    raise res
                if isinstance(indexed, BaseException):  # its slot is failing over: registered later
                    self._unindexed[k] = due_at
            else:
                res = await self._eval(self._ingest, [*thread_keys, keys.due(k)], args)
        status = IngestStatus(res[0])
        if status is IngestStatus.OWNER:
            return IngestResult(status, start=self._start(thread, str(res[1]), res[2], held))
        if status is IngestStatus.FROZEN:
            return IngestResult(status, remind=bool(int(res[1])), pending_cases=int(res[2]))
        if status in (IngestStatus.QUEUED, IngestStatus.FULL):
            return IngestResult(status, queued=int(res[1]))
        return IngestResult(status)

    def _ingest_limits(self, max_inbox: int, max_turns: int) -> str:
        """The accepting script's settings, in one argument: lease, dedupe (s), inbox and thread length
        limits, idle lifetime, parking lifetime."""
        limits = self._limits.get((max_inbox, max_turns))
        if limits is None:
            limits = self._limits[max_inbox, max_turns] = (
                f"{self.lock_ttl_ms} {self.dedupe_ttl_s} {max_inbox} {max_turns} {self.idle_ttl_ms} {PARK_TTL_MS}")
        return limits

    async def claim(self, thread: ThreadRef) -> ClaimResult:
        """Take a thread with a waiting inbox whose lease is free (the recovery loop)."""
        k = thread.key
        held = self.windows.held(k)
        async with self._trip("claim"):
            res = await self._claim(keys=[keys.state(k), keys.log(k), keys.lock(k), keys.inbox(k)],
                                    args=[self.lock_ttl_ms, *self.windows.args(held)])
        status = ClaimStatus(res[0])
        if status is ClaimStatus.OWNER:
            return ClaimResult(status, start=self._start(thread, str(res[1]), res[2], held))
        if status is ClaimStatus.HELD:
            return ClaimResult(status, lease_left_ms=max(0, int(res[1])))
        return ClaimResult(status)

    async def take(self, thread: ThreadRef) -> ClaimResult:
        """The lease without an inbox entry (the member's end command); the start holds the whole log."""
        k = thread.key
        async with self._trip("take"):
            res = await self._take(keys=[keys.state(k), keys.log(k), keys.lock(k)], args=[self.lock_ttl_ms])
        status = ClaimStatus(res[0])
        if status is not ClaimStatus.OWNER:
            return ClaimResult(status)
        start = TurnStart(token=str(res[1]), state=state_from_hash(thread, _pairs(res[2])),
                          log=Entry.many_from_json(res[3]))
        return ClaimResult(status, start=start)

    async def commit_turn(self, thread: ThreadRef, token: str, commit: TurnCommit, *,
                          go_on: bool = True, hold: bool = False) -> CommitResult:
        """``hold``: keep the lease even when the inbox is empty (the turn still has posts to make; then
        ``pass_on``), so no later answer in the thread can overtake them."""
        k = thread.key
        end = commit.end_case
        held = self.windows.held(k)
        args: list[Any] = [
            token, f"{time.time():.3f}", self._commit_ttls, commit.redirects,
            "" if commit.warned_turn is None else commit.warned_turn,
            "1" if commit.at_risk else "", "1" if commit.crisis_posted else "",
            thread.platform, thread.community, thread.channel, commit.jump_url or "",
            end.to_json() if end else "",
            (end.reason or "") if end else "",
            (end.category or "") if end else "",
            commit.entry_id, "" if commit.window_start is None else commit.window_start,
            ("hold" if hold else "1") if go_on else "", k, *self.windows.args(held),
        ]
        used = commit.usage if commit.usage is not None and not commit.usage.empty else None
        day_key = community_day(thread.community, day_of(time.time())) if used else ""
        register = bool(used) and thread.community not in self._usage_communities
        args += [usage.counts(used, register) if used else "", *(e.to_json() for e in commit.entries)]
        thread_keys = [keys.state(k), keys.log(k), keys.lock(k), keys.pending(k), keys.inbox(k), thread_usage(k)]
        if not self.cluster:  # one server: the keys of other slots go in the same script
            thread_keys += [keys.pending_index(k), usage.USAGE_COMMUNITIES, *([day_key] if used else [])]
        async with self._trip("commit_turn"):
            if self.cluster and used and not commit.usage_sent_elsewhere:
                # the community's day sums live in another slot: sent at the same time, once
                commit.usage_sent_elsewhere = True
                res, _ = await asyncio.gather(self._eval(self._commit, thread_keys, args),
                                              self._add_day(thread.community, day_key, used))
            else:
                res = await self._eval(self._commit, thread_keys, args)
        if register and not self.cluster:  # registered by the script (on Cluster by ``_add_day``)
            self._usage_communities.add(thread.community)
        status = CommitStatus(res[0])
        if status is CommitStatus.ENDED and self.cluster:
            await self._index_pending(k)
        return CommitResult(status, int(res[1]), next=self._start(thread, token, res[2], held) if res[2] else None,
                            totals=TokenTotals(*(int(v) for v in res[3])) if res[3] else None)

    async def _add_day(self, community: str, day_key: str, used: Usage) -> None:
        """Cluster: a turn's tokens to the community's day sums (another slot than the thread's), a request
        of its own; a failure costs those numbers, never the turn."""
        self.round_trips += 1
        try:
            await self._add_usage(keys=[day_key], args=[usage.DAY_TTL_S * 1000, *usage.spent(used)])
            if community not in self._usage_communities:
                await self.client.sadd(usage.USAGE_COMMUNITIES, community)
                self._usage_communities.add(community)
        except STORE_FAILURES as exc:
            log.warning("redis usage of community %s not recorded: %s", community, type(exc).__name__)

    async def _index_pending(self, k: str) -> None:
        """Cluster: register an ended thread whose case waits for its number (another slot)."""
        self._unindexed_pending.add(k)
        try:
            async with self._trip("index_pending"):
                await self.client.sadd(keys.pending_index(k), k)
        except StoreUnavailable:
            return  # registered by the next pass of the loop that files pending cases
        self._unindexed_pending.discard(k)

    async def drop_head(self, thread: ThreadRef, token: str, entry_id: str, *, go_on: bool,
                        reminder_cooldown: int | None, forget: bool = False) -> CommitResult:
        """Remove the inbox entry the owner answered without a turn (ended thread, failed model call);
        ``forget``: the event may be delivered again and is then accepted anew."""
        k = thread.key
        held = self.windows.held(k)
        async with self._trip("drop_head"):
            res = await self._drop(
                keys=[keys.state(k), keys.log(k), keys.lock(k), keys.inbox(k), keys.remind(k),
                      keys.seen(k, entry_id or "-")],
                args=[token, entry_id, self.lock_ttl_ms, "1" if go_on else "",
                      "" if reminder_cooldown is None else reminder_cooldown, "1" if forget else "",
                      *self.windows.args(held)])
        status = CommitStatus(res[0])
        return CommitResult(status, remind=status is CommitStatus.OK and bool(int(res[1])),
                            next=self._start(thread, token, res[2], held) if res[2] else None)

    async def renew(self, thread: ThreadRef, token: str) -> bool:
        """Renew the owner's lease; False once a newer owner holds the thread."""
        async with self._trip("renew"):
            return bool(await self._renew(keys=[keys.state(thread.key), keys.lock(thread.key)],
                                          args=[token, self.lock_ttl_ms]))

    async def pass_on(self, thread: ThreadRef, token: str, *, go_on: bool = True) -> CommitResult:
        """After the posts of a turn committed with ``hold``: the next inbox entry's start (lease kept), or
        the lease handed back; ``LOST_LOCK`` when a newer owner holds the thread."""
        k = thread.key
        held = self.windows.held(k)
        async with self._trip("pass_on"):
            res = await self._eval(self._pass_on, [keys.state(k), keys.log(k), keys.lock(k), keys.inbox(k)],
                                   [token, self.lock_ttl_ms, "1" if go_on else "", *self.windows.args(held)])
        return CommitResult(CommitStatus(res[0]), next=self._start(thread, token, res[2], held) if res[2] else None)

    async def release(self, thread: ThreadRef, token: str) -> None:
        """Hand the lease back (shutdown); the thread is due at once for another worker."""
        k = thread.key
        async with self._trip("release"):
            await self._renew(keys=[keys.state(k), keys.lock(k)], args=[token, ""])
            await self.client.zadd(keys.due(k), {k: _now_ms()})

    async def due_threads(self, platform: str, now_ms: int, limit: int) -> list[tuple[str, int]]:
        """Threads of ``platform`` whose inbox is due for a look, with their scores, from every shard
        (on Cluster, the shards of a failing node are skipped this time)."""
        await self._index_late()
        shards = [keys.due_shard(platform, shard) for shard in range(keys.DUE_SHARDS)]
        async with self._trip("due_threads"):
            if self.cluster:
                found = await asyncio.gather(*(self.client.zrangebyscore(
                    shard, "-inf", now_ms, start=0, num=limit, withscores=True) for shard in shards),
                    return_exceptions=True)
                if all(isinstance(rows, BaseException) for rows in found):
                    raise next(rows for rows in found if isinstance(rows, BaseException))
            else:
                pipe = self.client.pipeline(transaction=False)
                for shard in shards:
                    pipe.zrangebyscore(shard, "-inf", now_ms, start=0, num=limit, withscores=True)
                found = await pipe.execute()
        return [(str(member), int(score)) for rows in found if not isinstance(rows, BaseException)
                for member, score in rows]

    async def _index_late(self) -> None:
        """Register threads whose due-set write failed at ingest (a failover); best effort."""
        for k, due_at in list(self._unindexed.items()):
            try:
                async with self._trip("index_late"):
                    await self.client.zadd(keys.due(k), {k: due_at})
            except StoreUnavailable:
                return
            del self._unindexed[k]

    async def reschedule_due(self, thread: ThreadRef, at_ms: int) -> None:
        """Look at this inbox again at ``at_ms`` (never earlier than already planned)."""
        async with self._trip("reschedule_due"):
            await self.client.zadd(keys.due(thread.key), {thread.key: at_ms}, xx=True, gt=True)

    async def forget_due(self, thread: ThreadRef, score: int) -> None:
        """The inbox was found empty: unregister it, unless a message arrived since (a newer score)."""
        async with self._trip("forget_due"):
            await self._forget_due(keys=[keys.due(thread.key)], args=[thread.key, score])

    async def read_log(self, thread: ThreadRef) -> list[Entry]:
        """The whole log (a case transcript; never on an ordinary turn)."""
        async with self._trip("read_log"):
            raw = await self.client.lrange(keys.log(thread.key), 0, -1)
        return [Entry.from_json(r) for r in raw]

    # --- cases ---------------------------------------------------------------------------------

    async def file_end_case(self, thread: ThreadRef, end_seq: int, case: Case) -> Case:
        """Number the case a commit just wrote (the engine already holds its body)."""
        filed, _ = await self._number_end_case(thread, end_seq, case)
        return filed

    async def _number_end_case(self, thread: ThreadRef, end_seq: int, case: Case) -> tuple[Case, bool]:
        k = thread.key
        case.case_ref = f"{k}#{end_seq}"
        filed, new = await self._file_case(case)
        thread_keys = [keys.state(k), keys.pending(k)]
        async with self._trip("finish_filing"):
            left = await self._finish(keys=thread_keys if self.cluster else [*thread_keys, keys.pending_index(k)],
                                      args=[end_seq, filed.case_id, k])
        if self.cluster and int(left) == 0:
            await self._unindex_pending(k)
        return filed, new

    async def _unindex_pending(self, k: str) -> None:
        try:
            async with self._trip("unindex_pending"):
                await self.client.srem(keys.pending_index(k), k)
        except StoreUnavailable:
            return  # a stale member is dropped when the loop finds nothing pending there

    async def claim_event(self, thread: ThreadRef, event_id: str) -> bool:
        """Mark an event handled; False if it already was (a redelivery)."""
        async with self._trip("claim_event"):
            return bool(await self.client.set(keys.seen(thread.key, event_id), "1", nx=True,
                                              ex=self.dedupe_ttl_s))

    async def file_pending_cases(self, thread: ThreadRef, min_age: float = 0.0) -> list[Case]:
        """Number every case the thread's freezes wrote (older than ``min_age`` seconds, so the turn
        that wrote one numbers it itself); idempotent, safe to run from any process. Returns the cases
        numbered by this call."""
        k = thread.key
        async with self._trip("read_pending"):
            pending = await self.client.hgetall(keys.pending(k))
        if not pending:
            await self._unindex_pending(k)
        numbered: list[Case] = []
        for seq, body in sorted(pending.items(), key=lambda kv: int(kv[0])):
            case = Case.from_json(body)
            if min_age and _age(case.ended_at) < min_age:
                continue
            filed, new = await self._number_end_case(thread, int(seq), case)
            if new:
                numbered.append(filed)
        return numbered

    async def _file_case(self, case: Case) -> tuple[Case, bool]:
        c = case.community
        created = time.time()
        async with self._trip("file_case"):
            number, new = await self._file(
                keys=[keys.case_seq(c), keys.case_refs(c), keys.case_index(c)],
                args=[case.case_ref, case.to_json(), f"{created:.3f}", keys.case(c, 0)[:-1]])
        async with self._trip("register_community"):
            await self.client.sadd(keys.COMMUNITIES, c)
        case.case_id = int(number)
        return case, bool(int(new))

    async def file_action(self, case: Case) -> Case:
        case.case_ref = case.case_ref or f"action:{secrets.token_hex(8)}"
        filed, _ = await self._file_case(case)
        if case.refers_to is not None:
            async with self._trip("link_action"):
                await self.client.rpush(keys.case_actions(case.community, case.refers_to), filed.case_id)
        return filed

    async def link_branch(self, community: str, case_id: int, branch_key: str) -> None:
        async with self._trip("link_branch"):
            await self.client.rpush(keys.case_links(community, case_id), branch_key)

    async def get_case(self, community: str, case_id: int) -> Case | None:
        async with self._trip("get_case"):
            [case] = await self._read_cases(community, [case_id])
        return case

    async def list_cases(self, community: str, offset: int, limit: int) -> list[Case]:
        async with self._trip("list_cases"):
            ids = await self.client.zrevrange(keys.case_index(community), offset, offset + limit - 1)
        if not ids:
            return []
        async with self._trip("get_cases"):  # one pipelined request for the page (one slot: {c:community})
            cases = await self._read_cases(community, [int(i) for i in ids])
        return [c for c in cases if c is not None]

    async def _read_cases(self, community: str, case_ids: list[int]) -> list[Case | None]:
        pipe = self.client.pipeline(transaction=False)
        for case_id in case_ids:
            pipe.hgetall(keys.case(community, case_id))
            pipe.lrange(keys.case_links(community, case_id), 0, -1)
            pipe.lrange(keys.case_actions(community, case_id), 0, -1)
        replies = await pipe.execute()
        found: list[Case | None] = []
        for n, case_id in enumerate(case_ids):
            data, links, actions = replies[3 * n:3 * n + 3]
            if not data or "body" not in data:
                found.append(None)
                continue
            case = Case.from_json(data["body"])
            case.case_id = case_id
            case.case_ref = data.get("ref", case.case_ref)
            case.branches = [*case.branches, *links]
            case.actions = [int(a) for a in actions]
            found.append(case)
        return found

    async def count_cases(self, community: str) -> int:
        async with self._trip("count_cases"):
            return int(await self.client.zcard(keys.case_index(community)))

    async def communities(self) -> list[str]:
        async with self._trip("communities"):
            return sorted(await self.client.smembers(keys.COMMUNITIES))

    async def threads_with_pending_cases(self, *, scan: bool = False) -> list[ThreadRef]:
        """Threads whose ends wait for case numbers, from the pending-case index (``scan``: from a scan of
        the whole keyspace, for start-up: it also finds what a process killed mid-end left unindexed)."""
        if scan:
            return await self._scan_pending()
        for k in list(self._unindexed_pending):
            await self._index_pending(k)
        shards = [keys.pending_shard(i) for i in range(keys.DUE_SHARDS)]
        async with self._trip("pending_index"):
            if self.cluster:
                found = await asyncio.gather(*(self.client.smembers(s) for s in shards), return_exceptions=True)
                if all(isinstance(members, BaseException) for members in found):
                    raise next(m for m in found if isinstance(m, BaseException))
            else:
                pipe = self.client.pipeline(transaction=False)
                for shard in shards:
                    pipe.smembers(shard)
                found = await pipe.execute()
        keys_found = sorted({str(m) for members in found if not isinstance(members, BaseException) for m in members})
        refs = []
        for key in keys_found:
            try:
                refs.append(ThreadRef.from_key(key))
            except ValueError:
                continue
        return refs

    async def _scan_pending(self) -> list[ThreadRef]:
        found = []
        async with self._trip("scan_pending"):
            async for key in self.client.scan_iter(match=f"{keys.PREFIX}:{{t:*}}:pending", count=500):
                thread_key = key[len(f"{keys.PREFIX}:{{t:"):-len("}:pending")]
                found.append(ThreadRef.from_key(thread_key))
        return found

    # --- threads -------------------------------------------------------------------------------

    async def load(self, thread: ThreadRef) -> tuple[ThreadState, list[Entry]]:
        k = thread.key
        async with self._trip("load"):
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(keys.state(k))
            pipe.lrange(keys.log(k), 0, -1)
            data, raw = await pipe.execute()
        return state_from_hash(thread, data), [Entry.from_json(r) for r in raw]

    async def seed_branch(self, thread: ThreadRef, entries: list[Entry], state: ThreadState) -> bool:
        k = thread.key
        ladder = state.ladder
        fields = {
            "status": "active", "redirects": ladder.redirects, "warned": "1" if ladder.warned else "0",
            "warned_turn": ladder.warned_turn, "at_risk": "1" if ladder.at_risk else "0",
            "crisis_posted": "1" if ladder.crisis_posted else "0", "turn": ladder.turn,
            "branch_of": state.branch_of or "", "platform": thread.platform,
            "community": thread.community, "channel": thread.channel, "created_at": f"{time.time():.3f}", "known": "1",
        }
        flat = [x for pair in fields.items() for x in pair]
        async with self._trip("seed_branch"):
            res = await self._seed(keys=[keys.state(k), keys.log(k)],
                                   args=[self.idle_ttl_ms, *(e.to_json() for e in entries), "--", *flat])
        return bool(res)

    async def reopen(self, thread: ThreadRef, entry: Entry) -> bool:
        k = thread.key
        async with self._trip("reopen"):
            res = await self._reopen(keys=[keys.state(k), keys.log(k), keys.remind(k)],
                                     args=[entry.to_json(), f"{time.time():.3f}", self.idle_ttl_ms])
        return bool(res)

    async def current_conversation(self, channel: ThreadRef) -> int:
        async with self._trip("current_conversation"):
            value = await self.client.get(keys.current(channel.key))
        return int(value or 0)

    async def next_conversation(self, channel: ThreadRef) -> int:
        async with self._trip("next_conversation"):
            pipe = self.client.pipeline(transaction=True)
            pipe.incr(keys.current(channel.key))
            pipe.pexpire(keys.current(channel.key), self.ended_ttl_ms)
            number, _ = await pipe.execute()
        return int(number)

    async def push_notice(self, platform: str, payload: str, keep: int = 10_000) -> None:
        async with self._trip("push_notice"):
            pipe = self.client.pipeline(transaction=False)
            pipe.rpush(keys.outbox(platform), payload)
            pipe.ltrim(keys.outbox(platform), -keep, -1)
            await pipe.execute()

    async def take_notices(self, platform: str, limit: int) -> list[str]:
        async with self._trip("take_notices"):
            items = await self.client.lpop(keys.outbox(platform), limit)
        return list(items or [])

    async def ping(self) -> float:
        start = time.perf_counter()
        async with self._trip("ping"):
            await self.client.ping()
        return time.perf_counter() - start

    async def writable(self) -> None:
        """One small write that expires at once: raises ``StoreRefusingWrites`` when Redis answers but refuses
        writes (out of memory under ``noeviction``, a read-only replica), ``StoreUnavailable`` when it is gone."""
        async with self._trip("write probe"):
            await self.client.set(keys.WRITE_PROBE, "1", px=1000)

    async def aclose(self) -> None:
        close = getattr(self.client, "aclose", None) or self.client.close
        await close()
