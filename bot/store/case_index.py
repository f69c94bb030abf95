"""``CaseIndex`` on Redis: one page of a community's cases through its indexes (``scripts.case_index``), read
as summaries (no transcripts), whatever the number of cases. The scripts that file cases and change review
state keep the indexes; cases filed before them are indexed once, the first time a process queries their
community (idempotent: every process may do it at once).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from bot.store import CaseQuery, keys
from bot.store.connection import RedisConnection
from bot.store.review import review_key
from bot.store.scripts import case_index as scripts
from bot.types import Case

BATCH = 500


def query_keys(community: str, query: CaseQuery) -> list[str]:
    """The indexes whose intersection is ``query``. Every index of a value lies within its action's (and a
    review state's within ``end``), so the action's own index joins only when nothing narrower does: one
    filter reads one index, however many cases there are; only several filters at once intersect."""
    c, action = community, query.action
    found = [keys.case_index_key(c, "end", "review", query.review)] if action == "end" and query.review else []
    for dimension in scripts.DIMENSIONS:
        value = getattr(query, dimension)
        if value:
            found.append(keys.case_index_key(c, action, dimension, value))
    if query.who:
        found.append(keys.case_index_key(c, action, "who", query.who.casefold()))
    return found or [keys.case_index_key(c, action)]


class RedisCaseIndex:
    def __init__(self, connection: RedisConnection) -> None:
        self._redis = connection
        self._query = connection.script(scripts.QUERY)
        self._index = connection.script(scripts.INDEX_CASE)
        self._built: set[str] = set()

    async def ensure_indexed(self, community: str) -> int:
        """Index the community's cases filed before its indexes existed (once per process: a read of the
        marker when done already). Returns the number of cases indexed now."""
        if community in self._built:
            return 0
        redis = self._redis
        async with redis.trip("index_built"):
            built = await redis.client.get(keys.case_index_built(community))
        indexed = 0
        if built != scripts.VERSION:
            async with redis.trip("index_cases"):
                ids = [int(i) for i in await redis.client.zrange(keys.case_index(community), 0, -1)]
                for start in range(0, len(ids), BATCH):
                    indexed += await self._index_batch(community, ids[start:start + BATCH])
                await redis.client.set(keys.case_index_built(community), scripts.VERSION)
        self._built.add(community)
        return indexed

    async def _index_batch(self, community: str, case_ids: list[int]) -> int:
        client = self._redis.client
        pipe = client.pipeline(transaction=False)
        for case_id in case_ids:
            pipe.hget(keys.case(community, case_id), "body")
        bodies = await pipe.execute()
        calls = [scripts.IndexCase(case_id, Case.from_json(body), review_key(community, case_id))
                 for case_id, body in zip(case_ids, bodies, strict=True) if body is not None]
        if self._redis.cluster:  # a cluster pipeline takes no scripts: one request each (a one-time pass)
            return sum([int(await self._redis.run(self._index, call.keys(), call.to_args())) for call in calls])
        pipe = client.pipeline(transaction=False)
        for call in calls:
            await self._index(keys=call.keys(), args=call.to_args(), client=pipe)
        return sum(int(n) for n in await pipe.execute())

    async def query(self, community: str, query: CaseQuery, offset: int, limit: int) -> tuple[int, list[int]]:
        """How many cases match, and the numbers of ``limit`` of them from ``offset`` on, newest first."""
        await self.ensure_indexed(community)
        low, high = scripts.score_bounds(query.since, query.until)
        scratch = keys.case_index_scratch(community, secrets.token_hex(6))
        async with self._redis.trip("query_cases"):
            reply = await self._redis.run(self._query, [scratch, *query_keys(community, query)],
                                          [low, high, offset, limit])
        page = scripts.QueryPage.from_reply(reply)
        return page.total, page.case_ids

    async def summaries(self, community: str, case_ids: Iterable[int]) -> list[Case]:
        """The cases ``case_ids`` without their transcripts (one request), in that order; missing ones left out."""
        return await self._read(community, list(case_ids), "summary")

    async def full_cases(self, community: str, case_ids: Iterable[int]) -> list[Case]:
        """The cases ``case_ids`` with their transcripts (one request), in that order."""
        return await self._read(community, list(case_ids), "body")

    async def _read(self, community: str, case_ids: list[int], field: str) -> list[Case]:
        if not case_ids:
            return []
        async with self._redis.trip("read_cases"):  # one pipelined request (one slot: {c:community})
            pipe = self._redis.client.pipeline(transaction=False)
            for case_id in case_ids:
                pipe.hmget(keys.case(community, case_id), [field, "ref"])
                pipe.lrange(keys.case_links(community, case_id), 0, -1)
                pipe.lrange(keys.case_actions(community, case_id), 0, -1)
            replies = await pipe.execute()
            unindexed = [case_id for n, case_id in enumerate(case_ids) if replies[3 * n][0] is None]
            bodies: dict[int, str | None] = {}
            if field != "body" and unindexed:  # filed before the indexes, not indexed yet: the body
                pipe = self._redis.client.pipeline(transaction=False)
                for case_id in unindexed:
                    pipe.hget(keys.case(community, case_id), "body")
                bodies = dict(zip(unindexed, await pipe.execute(), strict=True))
        found = []
        for n, case_id in enumerate(case_ids):
            (raw, ref), links, actions = replies[3 * n:3 * n + 3]
            raw = raw or bodies.get(case_id)
            if raw is None:
                continue
            case = Case.from_json(raw)
            if field == "summary":
                case.transcript = []
            case.case_id = case_id
            case.case_ref = ref or case.case_ref
            case.branches = [*case.branches, *links]
            case.actions = [int(a) for a in actions]
            found.append(case)
        return found

    async def review_counts(self, community: str) -> dict[str, int]:
        """Ended threads per review state, and risk alerts (one request)."""
        await self.ensure_indexed(community)
        states = scripts.REVIEW_STATES[:3]
        async with self._redis.trip("review_counts"):
            pipe = self._redis.client.pipeline(transaction=False)
            for state in states:
                pipe.zcard(keys.case_index_key(community, "end", "review", state))
            pipe.zcard(keys.case_index_key(community, "risk"))
            found = await pipe.execute()
        return {**{s: int(n) for s, n in zip(states, found, strict=False)}, "risk": int(found[-1])}
