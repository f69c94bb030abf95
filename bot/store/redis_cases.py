"""``CaseStore`` on Redis. An end is written in its turn's commit (the freeze and the case body together,
in the thread's slot) and then numbered in the community's slot by an idempotent script; a crash or a
failover in between leaves the case in the thread's ``pending`` hash, from which the loop every process
runs (``bot.worker``) files it. No case is lost and none is filed twice.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import datetime

from bot.errors import StoreUnavailable
from bot.store import keys
from bot.store.connection import RedisConnection
from bot.store.scripts import cases as scripts
from bot.types import Case, ThreadRef


def _age(ended_at: str) -> float:
    """Seconds since an ISO timestamp (a large age when it cannot be read)."""
    try:
        return time.time() - datetime.fromisoformat(ended_at).timestamp()
    except ValueError:
        return float("inf")


class PendingIndex:
    """The index of threads whose ends wait for case numbers. On one server the scripts keep it; on Redis
    Cluster it lives in other slots, so a thread is registered by a request of its own (and again later
    when that failed)."""

    def __init__(self, connection: RedisConnection) -> None:
        self._redis = connection
        self._unindexed: set[str] = set()

    async def add(self, k: str) -> None:
        """Cluster: register an ended thread whose case waits for its number (another slot)."""
        self._unindexed.add(k)
        try:
            async with self._redis.trip("index_pending"):
                await self._redis.client.sadd(keys.pending_index(k), k)
        except StoreUnavailable:
            return  # registered by the next pass of the loop that files pending cases
        self._unindexed.discard(k)

    async def remove(self, k: str) -> None:
        try:
            async with self._redis.trip("unindex_pending"):
                await self._redis.client.srem(keys.pending_index(k), k)
        except StoreUnavailable:
            return  # a stale member is dropped when the loop finds nothing pending there

    async def threads(self) -> list[ThreadRef]:
        """Every thread in the index, and those whose registration failed (registered again first; those that
        still fail are named all the same: their cases wait too)."""
        for k in list(self._unindexed):
            await self.add(k)
        redis = self._redis
        shards = [keys.pending_shard(i) for i in range(keys.DUE_SHARDS)]
        async with redis.trip("pending_index"):
            if redis.cluster:
                found = await asyncio.gather(*(redis.client.smembers(s) for s in shards), return_exceptions=True)
                if all(isinstance(members, BaseException) for members in found):
                    raise next(m for m in found if isinstance(m, BaseException))
            else:
                pipe = redis.client.pipeline(transaction=False)
                for shard in shards:
                    pipe.smembers(shard)
                found = await pipe.execute()
        keys_found = sorted({str(m) for members in found if not isinstance(members, BaseException) for m in members}
                            | self._unindexed)
        refs = []
        for key in keys_found:
            try:
                refs.append(ThreadRef.from_key(key))
            except ValueError:
                continue
        return refs


class RedisCases:
    def __init__(self, connection: RedisConnection, pending: PendingIndex) -> None:
        self._redis = connection
        self._pending = pending
        self._file = connection.script(scripts.FILE_CASE)
        self._finish = connection.script(scripts.FINISH_FILING)

    async def file_end_case(self, thread: ThreadRef, end_seq: int, case: Case) -> Case:
        """Number the case a commit just wrote (the engine already holds its body)."""
        filed, _ = await self._number_end_case(thread, end_seq, case)
        return filed

    async def _number_end_case(self, thread: ThreadRef, end_seq: int, case: Case) -> tuple[Case, bool]:
        k = thread.key
        case.case_ref = f"{k}#{end_seq}"
        filed, new = await self._file_case(case)
        call = scripts.FinishFiling(k, end_seq, filed.case_id)
        async with self._redis.trip("finish_filing"):
            left = await self._finish(keys=call.keys(one_server=not self._redis.cluster), args=call.to_args())
        if self._redis.cluster and int(left) == 0:
            await self._pending.remove(k)
        return filed, new

    async def file_pending_cases(self, thread: ThreadRef, min_age: float = 0.0) -> list[Case]:
        """Number every case the thread's freezes wrote (older than ``min_age`` seconds, so the turn
        that wrote one numbers it itself); idempotent, safe to run from any process. Returns the cases
        numbered by this call."""
        k = thread.key
        async with self._redis.trip("read_pending"):
            pending = await self._redis.client.hgetall(keys.pending(k))
        if not pending:
            await self._pending.remove(k)
        numbered: list[Case] = []
        for seq, body in sorted(pending.items(), key=lambda kv: int(kv[0])):
            case = Case.from_json(body)
            if min_age and _age(case.ended_at) < min_age:
                continue
            filed, new = await self._number_end_case(thread, int(seq), case)
            if new:
                numbered.append(filed)
        return numbered

    async def threads_with_pending_cases(self, *, scan: bool = False) -> list[ThreadRef]:
        """Threads whose ends wait for case numbers, from the pending-case index (``scan``: from a scan of
        the whole keyspace, for start-up: it also finds what a process killed mid-end left unindexed)."""
        if scan:
            return await self._scan_pending()
        return await self._pending.threads()

    async def _scan_pending(self) -> list[ThreadRef]:
        found = []
        async with self._redis.trip("scan_pending"):
            async for key in self._redis.client.scan_iter(match=f"{keys.PREFIX}:{{t:*}}:pending", count=500):
                thread_key = key[len(f"{keys.PREFIX}:{{t:"):-len("}:pending")]
                found.append(ThreadRef.from_key(thread_key))
        return found

    async def _file_case(self, case: Case) -> tuple[Case, bool]:
        c = case.community
        call = scripts.FileCase(case, f"{time.time():.3f}")
        async with self._redis.trip("file_case"):
            reply = scripts.FiledCase.from_reply(await self._file(keys=call.keys(), args=call.to_args()))
        async with self._redis.trip("register_community"):
            await self._redis.client.sadd(keys.COMMUNITIES, c)
        case.case_id = reply.number
        return case, reply.new

    async def file_action(self, case: Case) -> Case:
        case.case_ref = case.case_ref or f"action:{secrets.token_hex(8)}"
        filed, _ = await self._file_case(case)
        if case.refers_to is not None:
            async with self._redis.trip("link_action"):
                await self._redis.client.rpush(keys.case_actions(case.community, case.refers_to), filed.case_id)
        return filed

    async def link_branch(self, community: str, case_id: int, branch_key: str) -> None:
        async with self._redis.trip("link_branch"):
            await self._redis.client.rpush(keys.case_links(community, case_id), branch_key)

    async def get_case(self, community: str, case_id: int) -> Case | None:
        async with self._redis.trip("get_case"):
            [case] = await self._read_cases(community, [case_id])
        return case

    async def list_cases(self, community: str, offset: int, limit: int) -> list[Case]:
        async with self._redis.trip("list_cases"):
            ids = await self._redis.client.zrevrange(keys.case_index(community), offset, offset + limit - 1)
        if not ids:
            return []
        async with self._redis.trip("get_cases"):  # one pipelined request for the page (one slot: {c:community})
            cases = await self._read_cases(community, [int(i) for i in ids])
        return [c for c in cases if c is not None]

    async def _read_cases(self, community: str, case_ids: list[int]) -> list[Case | None]:
        pipe = self._redis.client.pipeline(transaction=False)
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
        async with self._redis.trip("count_cases"):
            return int(await self._redis.client.zcard(keys.case_index(community)))

    async def communities(self) -> list[str]:
        async with self._redis.trip("communities"):
            return sorted(await self._redis.client.smembers(keys.COMMUNITIES))
