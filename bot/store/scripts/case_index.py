"""The case indexes of a community (``bot.store.keys``: ``tg:{c:C}:ix:...``), written by the scripts that
write cases and review state, read by list pages. Every index is a sorted set of case numbers scored by the
case's end time; the score carries the number too (``end seconds * 2^21 + number``), so newest first is a
plain reverse range and equal seconds keep the numbers' order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.store import keys
from bot.types import Case

#: Raised when what the indexes hold changes shape: existing cases are indexed again (idempotently).
VERSION = "1"
NUMBER_BITS = 2 ** 21
#: Review states of an ended thread with an index each; ``awaiting`` holds the first two.
REVIEW_STATES = ("unreviewed", "in_review", "reviewed", "awaiting")
#: The case fields with an index per value (within one action).
DIMENSIONS = ("reason", "category", "platform", "thread")


def end_seconds(case: Case) -> int:
    try:
        return int(datetime.fromisoformat(case.ended_at).timestamp())
    except ValueError:
        return 0


def score_bounds(since: float | None, until: float | None) -> tuple[str, str]:
    """The score range of cases that ended from ``since`` up to ``until`` (epoch seconds, inclusive)."""
    low = "-inf" if since is None else str(int(since) * NUMBER_BITS)
    high = "+inf" if until is None else str((int(until) + 1) * NUMBER_BITS - 1)
    return low, high


def summary_json(case: Case) -> str:
    """The case as list pages show it: everything but its transcript."""
    data = case.to_dict()
    data["transcript"] = []
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def who_values(case: Case) -> set[str]:
    return {v.casefold() for p in case.participants for v in (p.id, p.name) if v}


def index_keys(case: Case) -> list[str]:
    """The indexes a case belongs to (the review-state ones apart)."""
    c, action = case.community, case.action
    found = [keys.case_index_key(c, action)]
    for dimension in DIMENSIONS:
        value = getattr(case, dimension)
        if value:
            found.append(keys.case_index_key(c, action, dimension, str(value)))
    found += [keys.case_index_key(c, action, "who", w) for w in sorted(who_values(case))]
    return found


def review_keys(community: str) -> list[str]:
    return [keys.case_index_key(community, "end", "review", s) for s in REVIEW_STATES]


# Moves ended thread ``n`` (when it is indexed) to the review-state index of ``to``: ``rv`` the keys of
# ``end``'s index and of the four states (``REVIEW_STATES``).
MOVE_REVIEW = """
local function move_review(rv, n, to)
  local score = redis.call('ZSCORE', rv[1], n)
  if not score then return end
  for i = 2, 5 do redis.call('ZREM', rv[i], n) end
  local at = {unreviewed = 2, in_review = 3, reviewed = 4}
  redis.call('ZADD', rv[at[to] or 2], score, n)
  if to ~= 'reviewed' then redis.call('ZADD', rv[5], score, n) end
end
"""

# Indexes an existing case (the start-up pass over cases filed before the indexes): its summary, its
# indexes and, for an ended thread, its review state's index. Idempotent.
INDEX_CASE = MOVE_REVIEW + """
local case, review = KEYS[1], KEYS[2]
local n, seconds, summary, is_end = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
if redis.call('HEXISTS', case, 'body') == 0 then return 0 end
redis.call('HSETNX', case, 'summary', summary)
local score = seconds * """ + str(NUMBER_BITS) + """ + tonumber(n)
for i = 7, #KEYS do redis.call('ZADD', KEYS[i], score, n) end
if is_end == '1' then
  move_review({KEYS[7], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}, n, redis.call('HGET', review, 'state') or 'unreviewed')
end
return 1
"""


@dataclass(slots=True)
class IndexCase:
    """``INDEX_CASE``'s keys and arguments."""

    case_id: int
    case: Case
    #: The case's review hash (``bot.store.review.review_key``).
    review: str

    def keys(self) -> list[str]:
        c = self.case.community
        return [keys.case(c, self.case_id), self.review, *review_keys(c), *index_keys(self.case)]

    def to_args(self) -> list[Any]:
        return [self.case_id, end_seconds(self.case), summary_json(self.case), "1" if self.case.action == "end" else ""]


# One page of the cases in every index of ``KEYS[2..]`` (intersected in the scratch key ``KEYS[1]`` when
# there are several) with scores in ``[low, high]``, newest first. Returns ``{total, number...}``.
QUERY = """
local scratch = KEYS[1]
local low, high, offset, count = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local from = KEYS[2]
if #KEYS > 2 then
  local sources = {}
  for i = 2, #KEYS do sources[#sources + 1] = KEYS[i] end
  redis.call('ZINTERSTORE', scratch, #sources, unpack(sources))
  from = scratch
end
local total = redis.call('ZCOUNT', from, low, high)
local ids = redis.call('ZREVRANGEBYSCORE', from, high, low, 'LIMIT', offset, count)
if from == scratch then redis.call('DEL', scratch) end
table.insert(ids, 1, total)
return ids
"""


@dataclass(slots=True)
class QueryPage:
    """``QUERY``'s reply."""

    total: int
    case_ids: list[int]

    @classmethod
    def from_reply(cls, reply: list[Any]) -> QueryPage:
        total, *ids = reply
        return cls(int(total), [int(i) for i in ids])
