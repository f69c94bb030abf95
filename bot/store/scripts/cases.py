"""Numbering cases, in the community's slot: idempotent by the case's ref, so a case is never filed twice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.store import keys
from bot.store.scripts.case_index import NUMBER_BITS, end_seconds, index_keys, review_keys, summary_json
from bot.types import Case

# A case filed under its ref: the next number of the community, or the number it already has. Returns
# ``{number, 1 filed now / 0 already}``. The case joins the community's list indexes (``KEYS[4..]``, see
# ``scripts.case_index``) with its summary.
FILE_CASE = """
local seq, refs, index = KEYS[1], KEYS[2], KEYS[3]
local ref, body, created, case_prefix, summary, ended = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local n = redis.call('HGET', refs, ref)
if n then return {tonumber(n), 0} end
n = redis.call('INCR', seq)
redis.call('HSET', case_prefix .. n, 'body', body, 'ref', ref, 'created', created, 'summary', summary)
redis.call('HSET', refs, ref, n)
redis.call('ZADD', index, created, n)
local score = tonumber(ended) * """ + str(NUMBER_BITS) + """ + n
for i = 4, #KEYS do redis.call('ZADD', KEYS[i], score, n) end
return {n, 1}
"""


@dataclass(slots=True)
class FileCase:
    """``FILE_CASE``'s keys and arguments."""

    case: Case
    #: Epoch seconds, as text.
    created: str

    def keys(self) -> list[str]:
        c = self.case.community
        found = [keys.case_seq(c), keys.case_refs(c), keys.case_index(c), *index_keys(self.case)]
        if self.case.action == "end":  # a new ended thread is unreviewed (and so awaiting review)
            unreviewed, _, _, awaiting = review_keys(c)
            found += [unreviewed, awaiting]
        return found

    def to_args(self) -> list[Any]:
        case = self.case
        return [case.case_ref, case.to_json(), self.created, keys.case(case.community, 0)[:-1], summary_json(case),
                end_seconds(case)]


@dataclass(slots=True)
class FiledCase:
    number: int
    new: bool

    @classmethod
    def from_reply(cls, reply: list[Any]) -> FiledCase:
        number, new = reply
        return cls(int(number), bool(int(new)))


# The number written back to the thread (when it is still its latest end) and the pending body removed;
# ``pending_index`` only on one server (on Cluster it is in another slot). Returns how many cases of the
# thread still wait for their numbers.
FINISH_FILING = """
local state, pending, pending_index = KEYS[1], KEYS[2], KEYS[3]
local end_seq, case_id, thread_key = ARGV[1], ARGV[2], ARGV[3]
redis.call('HDEL', pending, end_seq)
if tonumber(redis.call('HGET', state, 'end_seq') or '0') == tonumber(end_seq) then
  redis.call('HSET', state, 'case_id', case_id)
end
local left = redis.call('HLEN', pending)
if left == 0 and pending_index then redis.call('SREM', pending_index, thread_key) end
return left
"""


@dataclass(slots=True)
class FinishFiling:
    """``FINISH_FILING``'s keys and arguments."""

    thread_key: str
    end_seq: int
    case_id: int

    def keys(self, *, one_server: bool) -> list[str]:
        k = self.thread_key
        found = [keys.state(k), keys.pending(k)]
        return [*found, keys.pending_index(k)] if one_server else found

    def to_args(self) -> list[Any]:
        return [self.end_seq, self.case_id, self.thread_key]
