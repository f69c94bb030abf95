"""``ConversationStore`` on Redis: one server, a Redis Cluster, or the in-process Redis (fakeredis).

Every transition is one Lua script on the keys of one hash tag. An ordinary turn costs two round
trips (begin, commit); a message to a frozen thread costs one. An end is written in the commit (the
freeze and the case body together, in the thread's slot) and then numbered in the community's slot by
an idempotent script; a crash in between leaves the case in the thread's ``pending`` hash, from which
the next event in that thread or ``reconcile`` files it. No case is lost and none is filed twice.
"""

from __future__ import annotations

import logging
import secrets
import sys
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.errors import StoreUnavailable
from bot.metrics import Metrics
from bot.store import BeginStatus, CommitResult, CommitStatus, TurnCommit, TurnStart, keys, scripts
from bot.types import Case, Entry, LadderState, ThreadRef, ThreadState, ThreadStatus

log = logging.getLogger(__name__)

DAY_MS = 86_400_000


def connect(url: str | None, *, cluster: bool = False) -> Any:
    """A Redis client for ``url``; without a URL, the in-process Redis that speaks the same protocol."""
    if url is None:
        return _in_process_redis()
    # No health-check PING before a command on a connection that sat idle (it would add a round trip to
    # the first turn after every quiet spell): a connection found dead is replaced and the command
    # retried. A script call that fails on a dead connection was never run, so retrying it is safe.
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 2)
    if cluster:
        return RedisCluster.from_url(url, decode_responses=True, retry=retry, socket_timeout=5,
                                     socket_connect_timeout=2)
    return aioredis.Redis.from_url(url, decode_responses=True, retry=retry, socket_timeout=5,
                                   socket_connect_timeout=2, health_check_interval=0,
                                   retry_on_error=[RedisConnectionError, RedisTimeoutError])


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


class RedisConversationStore:
    """The one store implementation; ``client`` is any redis-py asyncio client (or fakeredis)."""

    def __init__(self, client: Any, *, lock_ttl_ms: int = 300_000, dedupe_ttl_s: int = 86_400,
                 idle_ttl_ms: int = 30 * DAY_MS, ended_ttl_ms: int = 365 * DAY_MS) -> None:
        self.client = client
        self.lock_ttl_ms = lock_ttl_ms
        self.dedupe_ttl_s = dedupe_ttl_s
        self.idle_ttl_ms = idle_ttl_ms
        self.ended_ttl_ms = ended_ttl_ms
        #: Requests sent to Redis (a script call or a pipeline counts once): for benchmarks.
        self.round_trips = 0
        #: Told about every failed request (the metrics of a long-running process).
        self.metrics = Metrics()
        self._begin = client.register_script(scripts.BEGIN_TURN)
        self._commit = client.register_script(scripts.COMMIT_TURN)
        self._abandon = client.register_script(scripts.ABANDON_TURN)
        self._file = client.register_script(scripts.FILE_CASE)
        self._finish = client.register_script(scripts.FINISH_FILING)
        self._seed = client.register_script(scripts.SEED_BRANCH)
        self._reopen = client.register_script(scripts.REOPEN)
        self._extend = client.register_script(scripts.EXTEND_LOCK)

    @asynccontextmanager
    async def _trip(self, what: str) -> AsyncIterator[None]:
        self.round_trips += 1
        try:
            yield
        except (RedisError, OSError) as exc:
            log.warning("redis %s failed: %s", what, type(exc).__name__)
            self.metrics.store_error(what)
            raise StoreUnavailable(f"redis {what} failed") from exc

    # --- turns ---------------------------------------------------------------------------------

    async def begin_turn(self, thread: ThreadRef, event_id: str, *, reminder_cooldown: int) -> TurnStart:
        k = thread.key
        token = secrets.token_hex(8)
        async with self._trip("begin_turn"):
            res = await self._begin(
                keys=[keys.state(k), keys.log(k), keys.lock(k), keys.seen(k, event_id), keys.remind(k),
                      keys.pending(k)],
                args=[token, self.lock_ttl_ms, self.dedupe_ttl_s, reminder_cooldown])
        status = BeginStatus(res[0])
        if status is BeginStatus.FROZEN:
            return TurnStart(status, remind=bool(int(res[1])), pending_cases=int(res[2]))
        if status is not BeginStatus.OK:
            return TurnStart(status)
        state = state_from_hash(thread, _pairs(res[1]))
        entries = [Entry.from_json(raw) for raw in res[2]]
        return TurnStart(status, token=token, state=state, log=entries, pending_cases=int(res[3]))

    async def commit_turn(self, thread: ThreadRef, token: str, commit: TurnCommit) -> CommitResult:
        k = thread.key
        end = commit.end_case
        args: list[Any] = [
            token, f"{time.time():.3f}", self.idle_ttl_ms, self.ended_ttl_ms, commit.redirects,
            "" if commit.warned_turn is None else commit.warned_turn,
            "1" if commit.at_risk else "", "1" if commit.crisis_posted else "",
            thread.platform, thread.community, thread.channel, commit.jump_url or "",
            end.to_json() if end else "",
            (end.reason or "") if end else "",
            (end.category or "") if end else "",
            *(e.to_json() for e in commit.entries),
        ]
        async with self._trip("commit_turn"):
            res = await self._commit(keys=[keys.state(k), keys.log(k), keys.lock(k), keys.pending(k)],
                                     args=args)
        return CommitResult(CommitStatus(res[0]), int(res[1]))

    async def extend_lock(self, thread: ThreadRef, token: str) -> bool:
        """Give a long turn (several tool rounds) a fresh lock TTL; False if the lock was lost."""
        async with self._trip("extend_lock"):
            return bool(await self._extend(keys=[keys.lock(thread.key)], args=[token, self.lock_ttl_ms]))

    async def abandon_turn(self, thread: ThreadRef, token: str, event_id: str | None) -> None:
        k = thread.key
        async with self._trip("abandon_turn"):
            await self._abandon(keys=[keys.lock(k), keys.seen(k, event_id or "-")],
                                args=[token, "1" if event_id else ""])

    # --- cases ---------------------------------------------------------------------------------

    async def file_end_case(self, thread: ThreadRef, end_seq: int, case: Case) -> Case:
        """Number the case a commit just wrote (the engine already holds its body)."""
        case.case_ref = f"{thread.key}#{end_seq}"
        filed = await self._file_case(case)
        async with self._trip("finish_filing"):
            await self._finish(keys=[keys.state(thread.key), keys.pending(thread.key)],
                               args=[end_seq, filed.case_id])
        return filed

    async def claim_event(self, thread: ThreadRef, event_id: str) -> bool:
        """Mark an event handled; False if it already was (a redelivery)."""
        async with self._trip("claim_event"):
            return bool(await self.client.set(keys.seen(thread.key, event_id), "1", nx=True,
                                              ex=self.dedupe_ttl_s))

    async def file_pending_cases(self, thread: ThreadRef) -> list[Case]:
        """Number every case the thread's freezes wrote; idempotent, safe to run from any process."""
        k = thread.key
        async with self._trip("read_pending"):
            pending = await self.client.hgetall(keys.pending(k))
        return [await self.file_end_case(thread, int(seq), Case.from_json(body))
                for seq, body in sorted(pending.items(), key=lambda kv: int(kv[0]))]

    async def _file_case(self, case: Case) -> Case:
        c = case.community
        created = time.time()
        async with self._trip("file_case"):
            number = await self._file(
                keys=[keys.case_seq(c), keys.case_refs(c), keys.case_index(c)],
                args=[case.case_ref, case.to_json(), f"{created:.3f}", keys.case(c, 0)[:-1]])
        async with self._trip("register_community"):
            await self.client.sadd(keys.COMMUNITIES, c)
        case.case_id = int(number)
        return case

    async def file_action(self, case: Case) -> Case:
        case.case_ref = case.case_ref or f"action:{secrets.token_hex(8)}"
        filed = await self._file_case(case)
        if case.refers_to is not None:
            async with self._trip("link_action"):
                await self.client.rpush(keys.case_actions(case.community, case.refers_to), filed.case_id)
        return filed

    async def link_branch(self, community: str, case_id: int, branch_key: str) -> None:
        async with self._trip("link_branch"):
            await self.client.rpush(keys.case_links(community, case_id), branch_key)

    async def get_case(self, community: str, case_id: int) -> Case | None:
        async with self._trip("get_case"):
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(keys.case(community, case_id))
            pipe.lrange(keys.case_links(community, case_id), 0, -1)
            pipe.lrange(keys.case_actions(community, case_id), 0, -1)
            data, links, actions = await pipe.execute()
        if not data or "body" not in data:
            return None
        case = Case.from_json(data["body"])
        case.case_id = case_id
        case.case_ref = data.get("ref", case.case_ref)
        case.branches = [*case.branches, *links]
        case.actions = [int(a) for a in actions]
        return case

    async def list_cases(self, community: str, offset: int, limit: int) -> list[Case]:
        async with self._trip("list_cases"):
            ids = await self.client.zrevrange(keys.case_index(community), offset, offset + limit - 1)
        cases = [await self.get_case(community, int(i)) for i in ids]
        return [c for c in cases if c is not None]

    async def count_cases(self, community: str) -> int:
        async with self._trip("count_cases"):
            return int(await self.client.zcard(keys.case_index(community)))

    async def communities(self) -> list[str]:
        async with self._trip("communities"):
            return sorted(await self.client.smembers(keys.COMMUNITIES))

    async def threads_with_pending_cases(self) -> list[ThreadRef]:
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
            "community": thread.community, "channel": thread.channel, "created_at": f"{time.time():.3f}",
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

    async def aclose(self) -> None:
        close = getattr(self.client, "aclose", None) or self.client.close
        await close()
