"""Review state, appeals and members' end history on Redis.

Every key of a community shares the hash tag ``{c:<community>}`` (the same slot as its cases), so the
scripts below work on one server, on Redis Cluster and on the in-process Redis alike.

Per community (``C``):
    tg:{c:C}:review:<n>        hash   state (in_review | reviewed), assignee, outcome, by, at
    tg:{c:C}:appeals:<n>       hash   member id -> appeal JSON (at most one per member per case)
    tg:{c:C}:appealq           zset   "<n>:<member id>" of every appeal still waiting, scored by filing time
    tg:{c:C}:ends:<member>     zset   case_ref -> end time (epoch seconds): the member's ended threads
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from bot.errors import StoreUnavailable
from bot.store.errors import STORE_FAILURES
from bot.store.keys import case_index_key, community_tag
from bot.store.scripts.case_index import MOVE_REVIEW, review_keys

log = logging.getLogger(__name__)


def review_key(community: str, case_id: int) -> str:
    return f"{community_tag(community)}:review:{case_id}"


def appeals_key(community: str, case_id: int) -> str:
    return f"{community_tag(community)}:appeals:{case_id}"


def appeal_queue_key(community: str) -> str:
    return f"{community_tag(community)}:appealq"


def ends_key(community: str, member_id: str) -> str:
    safe = member_id.replace("{", "(").replace("}", ")")
    return f"{community_tag(community)}:ends:{safe}"


# KEYS: review, then the ended threads' index and the review-state indexes (``index_keys``) ; ARGV: assignee,
# now, take_over ('1' lets another moderator take a case in review), case number
ASSIGN = MOVE_REVIEW + """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'reviewed' then return 'reviewed' end
if state == 'in_review' and ARGV[3] ~= '1' and redis.call('HGET', KEYS[1], 'assignee') ~= ARGV[1] then
  return 'taken'
end
redis.call('HSET', KEYS[1], 'state', 'in_review', 'assignee', ARGV[1], 'at', ARGV[2])
redis.call('HDEL', KEYS[1], 'outcome', 'by')
move_review({KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}, ARGV[4], 'in_review')
return 'ok'
"""

# KEYS: review, then the indexes as for ``ASSIGN`` ; ARGV: outcome, by, now, case number
CONCLUDE = MOVE_REVIEW + """
redis.call('HSET', KEYS[1], 'state', 'reviewed', 'outcome', ARGV[1], 'by', ARGV[2], 'at', ARGV[3])
move_review({KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}, ARGV[4], 'reviewed')
return 1
"""


def index_keys(community: str, case_id: int) -> list[str]:
    """A case's review hash, the ended threads' index and the review-state indexes (``ASSIGN``, ``CONCLUDE``)."""
    return [review_key(community, case_id), case_index_key(community, "end"), *review_keys(community)]

# KEYS: appeals, appeal queue ; ARGV: member id, appeal JSON, score, queue member
FILE_APPEAL = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
"""

# KEYS: appeals, appeal queue ; ARGV: member id, decided appeal JSON, queue member
DECIDE_APPEAL = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('ZREM', KEYS[2], ARGV[3]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class RedisReviewStore:
    """The review desk's storage on any redis-py asyncio client (decoded responses) or fakeredis."""

    def __init__(self, client: Any, *, retention_s: int) -> None:
        self.client = client
        self.retention_s = retention_s
        self._assign = client.register_script(ASSIGN)
        self._conclude = client.register_script(CONCLUDE)
        self._file = client.register_script(FILE_APPEAL)
        self._decide = client.register_script(DECIDE_APPEAL)

    @asynccontextmanager
    async def _trip(self, what: str) -> AsyncIterator[None]:
        try:
            yield
        except STORE_FAILURES as exc:
            log.warning("redis %s failed: %s", what, type(exc).__name__)
            raise StoreUnavailable(f"redis {what} failed") from exc

    # --- review state --------------------------------------------------------------------------

    async def reviews(self, community: str, case_ids: Iterable[int]) -> dict[int, dict[str, str]]:
        ids = list(case_ids)
        if not ids:
            return {}
        async with self._trip("reviews"):
            pipe = self.client.pipeline(transaction=False)
            for case_id in ids:
                pipe.hgetall(review_key(community, case_id))
            found = await pipe.execute()
        return {case_id: dict(data) for case_id, data in zip(ids, found, strict=True) if data}

    async def assign(self, community: str, case_id: int, assignee: str, *, take_over: bool) -> str:
        async with self._trip("assign"):
            return str(await self._assign(keys=index_keys(community, case_id),
                                          args=[assignee, f"{time.time():.3f}", "1" if take_over else "", case_id]))

    async def conclude(self, community: str, case_id: int, outcome: str, by: str) -> None:
        async with self._trip("conclude"):
            await self._conclude(keys=index_keys(community, case_id), args=[outcome, by, f"{time.time():.3f}", case_id])

    # --- appeals -------------------------------------------------------------------------------

    async def file_appeal(self, community: str, case_id: int, member_id: str, payload: str, at: float) -> bool:
        async with self._trip("file_appeal"):
            return bool(await self._file(keys=[appeals_key(community, case_id), appeal_queue_key(community)],
                                         args=[member_id, payload, f"{at:.3f}", f"{case_id}:{member_id}"]))

    async def decide_appeal(self, community: str, case_id: int, member_id: str, payload: str) -> bool:
        async with self._trip("decide_appeal"):
            return bool(await self._decide(keys=[appeals_key(community, case_id), appeal_queue_key(community)],
                                           args=[member_id, payload, f"{case_id}:{member_id}"]))

    async def appeals(self, community: str, case_id: int) -> dict[str, str]:
        async with self._trip("appeals"):
            return dict(await self.client.hgetall(appeals_key(community, case_id)))

    async def open_appeal_bodies(self, community: str) -> list[str]:
        """The JSON of every appeal still waiting, oldest first (two round trips)."""
        waiting = await self.open_appeals(community)
        if not waiting:
            return []
        async with self._trip("open_appeal_bodies"):
            pipe = self.client.pipeline(transaction=False)
            for case_id, member_id in waiting:
                pipe.hget(appeals_key(community, case_id), member_id)
            found = await pipe.execute()
        return [str(raw) for raw in found if raw is not None]

    async def appeal(self, community: str, case_id: int, member_id: str) -> str | None:
        async with self._trip("appeal"):
            raw = await self.client.hget(appeals_key(community, case_id), member_id)
        return str(raw) if raw is not None else None

    async def open_appeals(self, community: str) -> list[tuple[int, str]]:
        """(case id, member id) of every appeal still waiting, oldest first."""
        async with self._trip("open_appeals"):
            members = await self.client.zrange(appeal_queue_key(community), 0, -1)
        found = []
        for item in members:
            case_id, _, member_id = str(item).partition(":")
            if case_id.isdigit():
                found.append((int(case_id), member_id))
        return found

    # --- members' end history ------------------------------------------------------------------

    async def record_end(self, community: str, member_id: str, case_ref: str, at: float) -> None:
        key = ends_key(community, member_id)
        async with self._trip("record_end"):
            pipe = self.client.pipeline(transaction=True)
            pipe.zadd(key, {case_ref: at})
            pipe.zremrangebyscore(key, "-inf", at - self.retention_s)
            pipe.expire(key, self.retention_s)
            await pipe.execute()

    async def drop_end(self, community: str, member_id: str, case_ref: str) -> None:
        async with self._trip("drop_end"):
            await self.client.zrem(ends_key(community, member_id), case_ref)

    async def ends_since(self, community: str, member_id: str, since: float) -> int:
        async with self._trip("ends_since"):
            return int(await self.client.zcount(ends_key(community, member_id), since, "+inf"))

    async def end_counts(self, community: str, member_ids: list[str]) -> dict[str, int]:
        """Member id -> ended threads on record (one round trip)."""
        if not member_ids:
            return {}
        async with self._trip("end_counts"):
            pipe = self.client.pipeline(transaction=False)
            for member_id in member_ids:
                pipe.zcard(ends_key(community, member_id))
            found = await pipe.execute()
        return {member_id: int(n) for member_id, n in zip(member_ids, found, strict=True)}

    async def forget_member(self, community: str, member_id: str) -> None:
        async with self._trip("forget_member"):
            await self.client.delete(ends_key(community, member_id))


REMOVED = "[removed at the user's request]"


async def forget_member(client: Any, communities: Iterable[str], member_id: str,
                        appeal_keys: AsyncIterator[str]) -> int:
    """Drop a member's end history and the words and name of their appeals (the decision stays).
    ``appeal_keys`` yields every ``appeals`` hash (scanned on every primary of a cluster). Returns the
    number of appeals changed."""
    for community in communities:
        await client.delete(ends_key(community, member_id))
    changed = 0
    async for key in appeal_keys:
        raw = await client.hget(key, member_id)
        if raw is None:
            continue
        data = json.loads(raw)
        data.update(text=REMOVED if data.get("text") else "", member_name=REMOVED)
        await client.hset(key, member_id, json.dumps(data, ensure_ascii=False, separators=(",", ":")))
        changed += 1
    return changed
