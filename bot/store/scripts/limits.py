"""Spend and rate limits in Lua: checking a member's message against them (in the accepting script on one
server; on Redis Cluster by ``LIMIT_CHECK`` in the community's slot, its verdict then handed to the
accepting script), and counting a turn's tokens toward the member's day and the community's spend alerts
(in the commit script on one server; on Cluster by ``DAY_SPEND`` with the community's day sums).

Every key here but the thread's ``limited`` hash lives in the community's slot (``{c:<community>}``), the
member's counters too, so one request checks or counts them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.limits import LimitCheck, LimitHit, LimitKind, SpendCount
from bot.store import keys
from bot.store.scripts import lua_list
from bot.store.usage import community_day
from bot.usage import FIELDS as USAGE_FIELDS

# The community's spend that day in millionths of a US dollar (prices per million tokens).
SPENT = """
local function spent_micro(day, p_in, p_out, p_cw, p_cr)
  local d = redis.call('HMGET', day, 'input', 'output', 'cache_write', 'cache_read')
  return tonumber(d[1] or '0') * tonumber(p_in) + tonumber(d[2] or '0') * tonumber(p_out)
         + tonumber(d[3] or '0') * tonumber(p_cw) + tonumber(d[4] or '0') * tonumber(p_cr)
end
"""

# ``spec`` (``LimitCheck.spec``): "<member> <now ms> <per minute> <bucket> <tokens per day> <ceiling> <day end
# ms> <4 prices>". The community's ceiling first (it stops everyone), then the member's tokens of the day,
# then the member's message bucket (refilled at ``per minute``, at most ``bucket`` messages at once), which
# a message allowed takes one from. The bucket is one string, "<messages left> <at ms>", living as long as
# it takes to fill up again. Returns false, or ``{kind, until ms, now ms}``.
LIMITS = SPENT + """
local function check_limits(rate, day, members, spec)
  local member, now, per_minute, bucket, per_day, ceiling, day_end, p_in, p_out, p_cw, p_cr = string.match(spec,
    '^(%S+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%S+) (%S+) (%S+) (%S+)$')
  ceiling = tonumber(ceiling)
  if ceiling > 0 and spent_micro(day, p_in, p_out, p_cw, p_cr) >= ceiling then return {'spend', day_end, now} end
  per_day = tonumber(per_day)
  if per_day > 0 and tonumber(redis.call('HGET', members, member) or '0') >= per_day then
    return {'tokens', day_end, now}
  end
  per_minute = tonumber(per_minute)
  if per_minute > 0 then
    local per_ms, full, at_ms = per_minute / 60000, tonumber(bucket), tonumber(now)
    local left, held = full, redis.call('GET', rate)
    if held then
      local was, at = string.match(held, '^(%S+) (%d+)$')
      left = math.min(full, tonumber(was) + math.max(0, at_ms - tonumber(at)) * per_ms)
    end
    if left < 1 then return {'rate', string.format('%d', at_ms + math.ceil((1 - left) / per_ms)), now} end
    redis.call('SET', rate, (left - 1) .. ' ' .. now, 'PX', math.ceil(full / per_ms) + 60000)
  end
  return false
end
"""

# ``spend`` (``SpendCount.spec``): "<member> <ceiling> <4 prices>", '' for none; ``values``: the turn's
# increments of the usage fields (input, output, cache writes, cache reads first), already added to ``day``;
# ``sums``: the day's sums of those four after they were (what the additions replied), or nil: read here.
# Adds the turn's tokens to the member's day and, when the community has a ceiling, marks the 80% and
# 100% alerts the day's spend passed (once each per day). Returns the levels passed now ("80 100"), or false.
SPEND = SPENT + """
local function add_spend(day, members, alerts, values, day_ttl, spend, sums)
  if spend == '' then return false end
  local member, ceiling, p_in, p_out, p_cw, p_cr = string.match(spend, '^(%S+) (%d+) (%S+) (%S+) (%S+) (%S+)$')
  local tokens = tonumber(values[1]) + tonumber(values[2]) + tonumber(values[3]) + tonumber(values[4])
  if tokens > 0 and redis.call('HINCRBY', members, member, tokens) == tokens then
    redis.call('PEXPIRE', members, day_ttl)  -- the member's first tokens of the day
  end
  ceiling = tonumber(ceiling)
  if ceiling == 0 then return false end
  local cost
  if sums then
    cost = sums[1] * tonumber(p_in) + sums[2] * tonumber(p_out) + sums[3] * tonumber(p_cw) + sums[4] * tonumber(p_cr)
  else
    cost = spent_micro(day, p_in, p_out, p_cw, p_cr)
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
# not take the message without it, before the script is sent again with it.
LIMIT_CHECK = LIMITS + """
local hit = check_limits(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
if hit then return hit[1] .. ' ' .. hit[2] .. ' ' .. hit[3] end
return ''
"""

# Redis Cluster: a turn's tokens to the community's day sums (``KEYS[1]``), the member's day and the spend
# alerts (``add_spend``), in the community's slot, sent at the same time as the commit. ARGV: day ttl ms,
# the increments of the usage fields, the spend spec. Returns the alert levels passed now (or nil).
DAY_SPEND = SPEND + """
local usage_fields = {""" + lua_list(USAGE_FIELDS) + """}
local values, sums = {}, {}
for v in string.gmatch(ARGV[2], '%d+') do values[#values + 1] = v end
for i, name in ipairs(usage_fields) do
  -- the four priced fields always: their new sums are the day's spend
  if i <= 4 or values[i] ~= '0' then sums[i] = redis.call('HINCRBY', KEYS[1], name, values[i]) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return add_spend(KEYS[1], KEYS[2], KEYS[3], values, ARGV[1], ARGV[3], sums)
"""


def limit_keys(check: LimitCheck) -> list[str]:
    """The community-slot keys a check reads: the member's bucket, the community's day, the members' day."""
    return [keys.member_bucket(check.community, check.member), community_day(check.community, check.day),
            keys.member_tokens(check.community, check.day)]


def spend_keys(community: str, count: SpendCount) -> list[str]:
    return [keys.member_tokens(community, count.day), keys.spend_alerts(community, count.day)]


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
        return [self.day_key, *spend_keys(self.community, self.count)]

    def to_args(self) -> list[Any]:
        return [self.day_ttl_ms, self.values, self.count.spec()]
