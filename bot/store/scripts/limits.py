"""Spend and rate limits in Lua: checking a member's message against them (in the accepting script on one
server; on Redis Cluster by ``LIMIT_CHECK`` in the community's slot, its verdict then handed to the
accepting script), and counting a turn's tokens toward the member's day and the community's spend alerts
(in the commit script on one server; on Cluster by ``DAY_SPEND`` with the community's day sums).

Every key here but the thread's ``limited`` hash lives in the community's slot (``{c:<community>}``), the
member's counters too, so one request checks or counts them all.

What a check reads is in one hash per community and UTC day, the members' day (``keys.members_day``): the
community's spend (``$ spent``), each member's tokens (``<member>``) and each member's message bucket
(``<member> r``). So the check is one HMGET and, for a message the rate lets through, one HSET; the commit
adds the member's tokens with one HINCRBY.

``$ spent`` is the day's spend as the community's last commit worked it out from its day sums (for the
alerts), or its first check of the day when no commit has yet. Tokens billed without a commit (a turn whose
model call failed goes to the sums alone) count from the community's next commit on, as do turns committed
by a worker still on the release before during a rolling deploy.

Data from the layout before (each member's bucket a key of its own, ``bucket:<member>``; the spend read
from the community's day sums at every check) is taken as it is: the members' tokens were already in the
members' day under the same field, so a deploy in the middle of a day keeps every member's tokens; a day
without ``$ spent`` has it worked out from the community's day sums by its first check, as a new day does;
the old buckets are not read: a member's message bucket starts full once after the deploy (at most one
burst more), and the old bucket keys expire by themselves once they would have been full again. The
members' day is kept two days now (``MEMBERS_DAY_TTL_MS``; before, as long as the day sums); one the
release before created keeps its lifetime. While workers of both releases run (a rolling deploy), each
release keeps its own message buckets, and one on the release before shows the new fields as members with
odd counts in ``threadguard usage``, nothing worse: every value is a whole number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from bot.limits import LimitCheck, LimitHit, LimitKind, SpendCount
from bot.store import keys
from bot.store.scripts import lua_list
from bot.store.usage import community_day
from bot.usage import FIELDS as USAGE_FIELDS

#: How long a members' day is kept after a member's first count in it (ms): today's is read, and
#: yesterday's for a message bucket that runs across midnight.
MEMBERS_DAY_TTL_MS = 2 * 86_400_000
#: The members' day's field with the community's spend of the day as of its last commit.
SPENT = "$ spent"

# The community's spend that day in millionths of a US dollar from its day sums (prices per million tokens:
# ``prices`` is "<input> <output> <cache write> <cache read>").
SPENT_MICRO = """
local function spent_micro(day, prices)
  local p_in, p_out, p_cw, p_cr = string.match(prices, '^(%S+) (%S+) (%S+) (%S+)$')
  local d = redis.call('HMGET', day, 'input', 'output', 'cache_write', 'cache_read')
  return tonumber(d[1] or '0') * p_in + tonumber(d[2] or '0') * p_out + tonumber(d[3] or '0') * p_cw
         + tonumber(d[4] or '0') * p_cr
end
"""

# ``ARGV[at]`` on (``LimitCheck.args``): the member, now (ms), the ceiling, tokens per day, the message rate as
# one message per ``interval`` µs and ``ahead`` µs, the 4 prices. The community's ceiling first (it stops
# everyone), then the member's tokens of the day, then the member's message bucket: kept as the moment it is
# full again (µs), it lets a message through while that moment is at most ``ahead`` (``burst - 1``
# intervals) past now, and the message moves it one interval on (a bucket of ``burst`` messages refilled
# one per interval). A member's first message of the day finds the bucket in yesterday's members' day. The
# day's spend is ``$ spent`` (see above), worked out from the day's sums when the day has none yet.
# Returns false, or ``{kind, until ms, now ms}``.
LIMITS = SPENT_MICRO + """
local function day_end(now)
  return string.format('%d', (math.floor(tonumber(now) / 86400000) + 1) * 86400000)
end
local function check_limits(members, yesterday, day, at)
  local member, now, ceiling, per_day, interval =
    ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4])
  local bucket = member .. ' r'
  local m = redis.call('HMGET', members, '""" + SPENT + """', member, bucket)
  if ceiling > 0 then
    local spent = tonumber(m[1])
    if not spent then  -- no commit yet today (or since the ceiling was set, or the deploy): from the sums
      spent = math.floor(spent_micro(day, ARGV[at + 6]))
      redis.call('HSET', members, '""" + SPENT + """', string.format('%d', spent))
      redis.call('PEXPIRE', members, """ + str(MEMBERS_DAY_TTL_MS) + """)
    end
    if spent >= ceiling then return {'spend', day_end(now), now} end
  end
  if per_day > 0 and tonumber(m[2] or '0') >= per_day then return {'tokens', day_end(now), now} end
  if interval > 0 then
    local now_us, ahead = tonumber(now) * 1000, tonumber(ARGV[at + 5])
    local full = tonumber(m[3] or redis.call('HGET', yesterday, bucket) or '0')
    if full < now_us then full = now_us end
    if full - now_us > ahead then return {'rate', string.format('%d', math.ceil((full - ahead) / 1000)), now} end
    redis.call('HSET', members, bucket, string.format('%d', full + interval))
    if not m[3] then redis.call('PEXPIRE', members, """ + str(MEMBERS_DAY_TTL_MS) + """) end
  end
  return false
end
"""

# ``ARGV[at]`` on (``SpendCount.args``): the member, the ceiling, the 4 prices; ``values``: the turn's
# increments of the usage fields (input, output, cache writes, cache reads first), already added to ``day``;
# ``sums``: the day's sums of those four after they were (what the additions replied), or nil: read here.
# Adds the turn's tokens to the member's day and, when the community has a ceiling, writes the day's spend
# where the check reads it and marks the 80% and 100% alerts the day's spend passed (once each per day).
# Returns the levels passed now ("80 100"), or false.
SPEND = SPENT_MICRO + """
local function add_spend(day, members, alerts, values, day_ttl, at, sums)
  local member, ceiling = ARGV[at], tonumber(ARGV[at + 1])
  local tokens = values[1] + values[2] + values[3] + values[4]
  if tokens > 0 and redis.call('HINCRBY', members, member, tokens) == tokens then
    redis.call('PEXPIRE', members, """ + str(MEMBERS_DAY_TTL_MS) + """)  -- the member's first tokens of the day
  end
  if ceiling == 0 then return false end
  local cost
  if sums then
    local p_in, p_out, p_cw, p_cr = string.match(ARGV[at + 2], '^(%S+) (%S+) (%S+) (%S+)$')
    cost = sums[1] * p_in + sums[2] * p_out + sums[3] * p_cw + sums[4] * p_cr
  else
    cost = spent_micro(day, ARGV[at + 2])
  end
  -- the spend the check reads (rounded down: at or over the whole ceiling exactly when the spend is)
  if redis.call('HSET', members, '""" + SPENT + """', string.format('%d', math.floor(cost))) == 1 then
    redis.call('PEXPIRE', members, """ + str(MEMBERS_DAY_TTL_MS) + """)
  end
  if cost * 100 < ceiling * 80 then return false end
  local passed = {}
  for _, level in ipairs({80, 100}) do
    if cost * 100 >= ceiling * level and redis.call('HSETNX', alerts, tostring(level), '1') == 1 then
      passed[#passed + 1] = tostring(level)
    end
  end
  if #passed == 0 then return false end
  redis.call('PEXPIRE', alerts, day_ttl)
  return table.concat(passed, ' ')
end
"""

# The member is told about a limit once per window in a thread: ``limited`` (the thread's slot) keeps, per
# limit kind, the end of the window the member was last told about. Returns 1 when the member is told now.
TELL_ONCE = """
local function tell_once(limited, kind, until_ms, now, idle)
  if tonumber(redis.call('HGET', limited, kind) or '0') > tonumber(now) then return 0 end
  redis.call('HSET', limited, kind, until_ms)
  redis.call('PEXPIRE', limited, idle)
  return 1
end
"""

# A message a limit keeps to be answered when it resets is stored marked: "<id>\t!<JSON>" (``InboxEntry.parse``
# reads the mark), so whoever takes it up checks its limits again before any model call.
HELD_FORM = """
local function held_form(stored)
  local tab = string.find(stored, '\t', 1, true)
  return string.sub(stored, 1, tab) .. '!' .. string.sub(stored, tab + 1)
end
"""

# Redis Cluster: the limits checked (and the bucket counted) in the community's slot; the verdict
# (``kind until now``, or '') goes to the accepting script, which applies it unless the thread is at risk.
# It is sent alongside the accepting script (``INGEST`` with the verdict '?'), or, when that script could
# not take the message without it, before the script is sent again with it. KEYS: ``check_keys``; ARGV:
# ``LimitCheck.args``.
LIMIT_CHECK = LIMITS + """
local hit = check_limits(KEYS[1], KEYS[2], KEYS[3], 1)
if hit then return hit[1] .. ' ' .. hit[2] .. ' ' .. hit[3] end
return ''
"""

# Redis Cluster: a turn's tokens to the community's day sums (``KEYS[1]``), the member's day and the spend
# alerts (``add_spend``), in the community's slot, sent at the same time as the commit. ARGV: day ttl ms,
# the increments of the usage fields, then ``SpendCount.args``. Returns the alert levels passed now (or nil).
DAY_SPEND = SPEND + """
local usage_fields = {""" + lua_list(USAGE_FIELDS) + """}
local values, sums, priced = {}, {}, ARGV[4] ~= '0'
for v in string.gmatch(ARGV[2], '%d+') do values[#values + 1] = v end
for i, name in ipairs(usage_fields) do
  -- with a ceiling the four priced fields always: their new sums are the day's spend
  if (priced and i <= 4) or values[i] ~= '0' then sums[i] = redis.call('HINCRBY', KEYS[1], name, values[i]) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return add_spend(KEYS[1], KEYS[2], KEYS[3], values, ARGV[1], 3, sums)
"""


@lru_cache(maxsize=4096)
def check_keys(community: str, day: str) -> tuple[str, str, str]:
    """The community-slot keys a check reads: the members' day of ``day`` and of the day before, the
    community's day sums (its spend before the day's first commit). The same for every member of a
    community all day: built once."""
    yesterday = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
    return keys.members_day(community, day), keys.members_day(community, yesterday), community_day(community, day)


def limit_keys(check: LimitCheck) -> tuple[str, str, str]:
    return check_keys(check.community, check.day)


@lru_cache(maxsize=4096)
def spend_keys(community: str, day: str) -> tuple[str, str]:
    """The community-slot keys a turn's count writes besides the day sums: the members' day, the alerts."""
    return keys.members_day(community, day), keys.spend_alerts(community, day)


def limit_hit(kind: Any, until: Any, now: Any, notify: Any) -> LimitHit:
    return LimitHit(LimitKind(str(kind)), int(until), bool(int(notify)), int(now))


def alert_levels(reply: Any) -> tuple[int, ...]:
    """``add_spend``'s reply: the alert levels passed now."""
    if not reply:
        return ()
    return tuple(int(level) for level in str(reply).split())


@dataclass(slots=True)
class DaySpend:
    """Redis Cluster: ``DAY_SPEND``'s keys and arguments (the community's slot)."""

    day_key: str
    community: str
    count: SpendCount
    day_ttl_ms: int
    #: The turn's increments of the usage fields (``bot.store.usage.counts`` without the last number).
    values: str

    def keys(self) -> list[str]:
        return [self.day_key, *spend_keys(self.community, self.count.day)]

    def to_args(self) -> list[Any]:
        return [self.day_ttl_ms, self.values, *self.count.args]
