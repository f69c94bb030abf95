"""Lua scripts for every state transition. Each touches the keys of one hash tag only, so it runs the
same on one Redis server, on Redis Cluster and on the in-process Redis."""

from __future__ import annotations

from bot.usage import FIELDS as USAGE_FIELDS

#: The thread-state fields a turn start sends back, in this order (``redis_store.state_from_hash`` reads
#: them; ``win`` and ``log_gen`` are also what the window is read by).
STATE_FIELDS: tuple[str, ...] = ("status", "redirects", "warned", "warned_turn", "at_risk", "crisis_posted", "turn",
                                 "branch_of", "ended_reason", "ended_category", "case_id", "jump_url", "win",
                                 "log_gen")


def _lua_list(names: tuple[str, ...]) -> str:
    return ", ".join(f"'{n}'" for n in names)


# Log entries from ``from`` to ``to`` (inclusive, -1: the last) as one JSON array: one string to send and
# to decode, not one per entry.
_ENTRIES = """
local function entries(log, from, to)
  return '[' .. table.concat(redis.call('LRANGE', log, from, to), ',') .. ']'
end
"""

# What a turn start sends: ``{state, window, inbox head, win, last, base, length}``, ``state`` being the
# values of ``STATE_FIELDS``. The window is the log from the stored start ``win`` on; a caller that holds
# the log from ``from`` up to ``to`` (exclusive; ``have`` = "<from> <to> <log generation>", ``held`` = its
# entry at ``to - 1``) gets only the entries from ``base`` = ``to`` on, when what it holds is still the log
# (same generation, the same entry at ``to - 1``) and the window starts inside it; otherwise ``base`` =
# ``win``. The entries from ``base`` come as a JSON array of all but the last, and the last apart
# (``false`` when none is after ``base``), so the caller can say what it holds next time. See
# ``bot.store.window``.
_START = """
local state_fields = {""" + _lua_list(STATE_FIELDS) + """}
-- ``st``: the state's values of ``state_fields`` when the caller read them already, ``head``: the inbox head
-- when the caller knows it (each saves a call).
local function window(state, log, inbox, have, held, st, head)
  st = st or redis.call('HMGET', state, unpack(state_fields))
  local len = redis.call('LLEN', log)
  local win = tonumber(st[13] or '0')
  if win > len then win = 0 end
  local base = win
  if have ~= '' then
    local from, to, gen = string.match(have, '^(%d+) (%d+) (%d+)$')
    from, to = tonumber(from), tonumber(to)
    if to and to > 0 and from <= win and win <= to and gen == (st[14] or '0')
       and redis.call('LINDEX', log, to - 1) == held then
      base = to
    end
  end
  local tail, last = '[]', false
  if len > base then
    local fresh = redis.call('LRANGE', log, base, -1)
    last = table.remove(fresh)
    tail = '[' .. table.concat(fresh, ',') .. ']'
  end
  return {{unpack(st, 1, #state_fields)}, tail, head or redis.call('LINDEX', inbox, 0), win, last, base, len}
end
"""

# Shared Lua fragments.  A thread's owner holds the lease key; ``fence`` in the state counts every
# lease handed out, so a commit carrying an older token is refused even after its lease ran out.
_GRANT = """
local function grant(state, log, lease, inbox, ttl, have, held, st, head)
  local token = tostring(redis.call('HINCRBY', state, 'fence', 1))
  redis.call('SET', lease, token, 'PX', ttl)
  return {'owner', token, window(state, log, inbox, have, held, st, head)}
end
local function remind_due(remind, cooldown)
  if tonumber(cooldown) <= 0 then return 1 end
  if redis.call('SET', remind, '1', 'NX', 'EX', cooldown) then return 1 end
  return 0
end
"""

# KEYS: state, log, lock, seen, remind, inbox, pending, parked [, due (one server only: on Cluster it is
#       in another slot)]
# ARGV: 1 entry, 2 "<lease ttl ms> <dedupe ttl s> <inbox limit> <turn limit> <idle ttl ms> <parking ttl ms>",
#       3 reminder cooldown s, 4 require a known thread: '' no, '1' yes, 'park' yes but keep the entry for a
#       mention to come, 5 take the lease '1'/'', 6 thread key, 7 due score ms, 8 and 9 the window the
#       caller holds (``_START``)
# The state has its lifetime from the first commit on (every commit sets it), so only a thread without
# turns needs one here.
INGEST = _START + _GRANT + """
local lease, dedupe, max_inbox, max_turns, idle, park =
  string.match(ARGV[2], '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+)$')
if not redis.call('SET', KEYS[4], '1', 'NX', 'EX', dedupe) then return {'duplicate'} end
-- the state fields a turn start sends (``state_fields``), then whether the bot takes part in the thread
local st = redis.call('HMGET', KEYS[1], """ + _lua_list((*STATE_FIELDS, "known")) + """)
local known = st[#state_fields + 1]
if st[1] == 'ended' then
  return {'frozen', remind_due(KEYS[5], ARGV[3]), redis.call('HLEN', KEYS[7])}
end
local queued = redis.call('LLEN', KEYS[6])
local turn = tonumber(st[7] or '0')
if ARGV[4] ~= '' and queued == 0 and turn == 0 and known ~= '1' and (st[8] or '') == '' then
  if ARGV[4] ~= 'park' then
    redis.call('DEL', KEYS[4])  -- not seen: the thread may become one the bot takes part in
    return {'unknown'}
  end
  -- a reply that may have overtaken its thread's opening mention: kept until the mention arrives
  redis.call('RPUSH', KEYS[8], ARGV[1])
  redis.call('PEXPIRE', KEYS[8], park)
  return {'parked'}
end
if turn + queued >= tonumber(max_turns) then return {'too_long'} end
if queued >= tonumber(max_inbox) then return {'full', queued} end
redis.call('RPUSH', KEYS[6], ARGV[1])
if ARGV[4] == '' then
  local parked = redis.call('LPOP', KEYS[8])
  while parked do
    redis.call('RPUSH', KEYS[6], parked)
    parked = redis.call('LPOP', KEYS[8])
  end
end
redis.call('PEXPIRE', KEYS[6], idle)
if known ~= '1' then redis.call('HSET', KEYS[1], 'known', '1') end
if turn == 0 and redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], idle) end
if KEYS[9] then redis.call('ZADD', KEYS[9], ARGV[7], ARGV[6]) end
if ARGV[5] == '1' and redis.call('EXISTS', KEYS[3]) == 0 then
  -- the state read above is still the state (nothing here changed its fields); a message that found the
  -- inbox empty is its head
  return grant(KEYS[1], KEYS[2], KEYS[3], KEYS[6], lease, ARGV[8], ARGV[9], st, queued == 0 and ARGV[1] or nil)
end
return {'queued', queued + 1}
"""

# KEYS: state, log, lock, inbox.  ARGV: lease ttl ms, then the window the caller holds (``_START``)
CLAIM = _START + _GRANT + """
if redis.call('LLEN', KEYS[4]) == 0 then return {'empty'} end
local left = redis.call('PTTL', KEYS[3])
if left ~= -2 then return {'held', left} end
return grant(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3])
"""

# The member's own end command: the lease without an inbox entry, and the whole log (a case needs it).
# KEYS: state, log, lock.  ARGV: lease ttl ms
TAKE = _ENTRIES + """
if redis.call('HGET', KEYS[1], 'status') == 'ended' then return {'frozen'} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'busy'} end
local token = tostring(redis.call('HINCRBY', KEYS[1], 'fence', 1))
redis.call('SET', KEYS[3], token, 'PX', ARGV[1])
return {'owner', token, redis.call('HGETALL', KEYS[1]), entries(KEYS[2], 0, -1), false, 0}
"""

# After a commit or a drop: ``{result, extra, the next turn's start or false}``: go on with the next inbox
# entry (lease renewed), or hand the lease back. Only the owner gets here (``fence`` is its token): a lease
# still there is its own.
_NEXT = """
local function next_or_release(state, log, lease, inbox, token, ttl, go_on, result, extra, have, held)
  if go_on ~= '' and redis.call('LLEN', inbox) > 0 then
    redis.call('SET', lease, token, 'PX', ttl)
    return {result, extra, window(state, log, inbox, have, held)}
  end
  if go_on == 'hold' then
    -- the turn's notices are still to be posted: the owner keeps the thread until they are (``PASS_ON``),
    -- so no later answer in it can be shown before them
    redis.call('SET', lease, token, 'PX', ttl)
    return {result, extra, false}
  end
  redis.call('DEL', lease)
  return {result, extra, false}
end
-- A commit whose reply was lost (Redis restarted) is sent again by the client: it is answered as before.
local function replayed(state, log, lease, inbox, token, head, ttl, go_on, have, held)
  if head == '' then return false end
  local last = redis.call('HMGET', state, 'last_commit', 'last_result', 'last_extra', 'fence')
  if last[1] ~= token .. '\t' .. head then return false end
  local result, extra = last[2] or 'ok', tonumber(last[3] or '0')
  if last[4] ~= token then return {result, extra, false} end
  return next_or_release(state, log, lease, inbox, token, ttl, go_on, result, extra, have, held)
end
local function owns(fence, inbox, token, head)
  if fence ~= token then return false end
  if head == '' then return true end
  local first = redis.call('LINDEX', inbox, 0)
  return first ~= false and string.sub(first, 1, #head + 1) == head .. '\\t'
end
"""

# The turn's tokens, added to the thread's usage sums (KEYS[6], its slot) and, on one server, to the
# community's day sums (KEYS[9]) with the community registered (KEYS[8]); on Cluster those live in other
# slots and the store sends them by a request of its own. Returns the thread's new sums (or false).
_USAGE = """
local usage_fields = {""" + _lua_list(USAGE_FIELDS) + """}
-- ``counts``: the increments of ``usage_fields``, then 1 when the community may not be in the set of
-- communities with usage yet (0 when this process registered it), space-separated; '' for none
local function add_usage(counts, ttl, day_ttl, community)
  if counts == '' then return false end
  local values, totals = {}, {}
  for v in string.gmatch(counts, '%d+') do values[#values + 1] = v end
  for i, name in ipairs(usage_fields) do totals[i] = redis.call('HINCRBY', KEYS[6], name, values[i]) end
  redis.call('PEXPIRE', KEYS[6], ttl)
  if KEYS[9] then
    for i, name in ipairs(usage_fields) do
      if values[i] ~= '0' then redis.call('HINCRBY', KEYS[9], name, values[i]) end
    end
    redis.call('PEXPIRE', KEYS[9], day_ttl)
    if values[#usage_fields + 1] == '1' then redis.call('SADD', KEYS[8], community) end
  end
  return totals
end
"""

# KEYS: state, log, lock, pending, inbox, thread usage [, pending-case index, communities with usage, and
#       with usage to add the community's day usage (one server: on Cluster they are in other slots)]
# ARGV: 1 token, 2 now, 3 "<active ttl> <ended ttl> <lease ttl> <usage ttl> <day usage ttl>" (ms),
#       4 redirect delta, 5 warned turn or '', 6 at_risk '1'/'', 7 crisis_posted '1'/'', 8 platform,
#       9 community, 10 channel, 11 jump url, 12 end case JSON or '', 13 end reason, 14 end category,
#       15 inbox entry id ('' for none), 16 new window start or '', 17 go on '1'/'', 18 thread key,
#       19 and 20 the window the caller holds (``_START``), 21 the turn's token counts (``_USAGE``),
#       22.. log entries
# Returns ``{result, end seq, the next turn's start or false, the thread's usage sums or false}``. A
# refused commit still counts its tokens (they were billed); a commit sent again after a lost reply does
# not count them twice.
COMMIT_TURN = _START + _NEXT + _USAGE + """
local active, ended, lease, usage_ttl, day_ttl = string.match(ARGV[3], '^(%d+) (%d+) (%d+) (%d+) (%d+)$')
local st = redis.call('HMGET', KEYS[1], 'fence', 'status', 'created_at', 'jump_url', 'turn', 'redirects')
local function reply(r, totals)
  if r[3] == nil then r[3] = false end
  r[4] = totals
  return r
end
if not owns(st[1], KEYS[5], ARGV[1], ARGV[15]) then
  local again = replayed(KEYS[1], KEYS[2], KEYS[3], KEYS[5], ARGV[1], ARGV[15], lease, ARGV[17], ARGV[19], ARGV[20])
  if again then return reply(again, false) end
  return reply({'lost_lock', 0}, add_usage(ARGV[21], usage_ttl, day_ttl, ARGV[9]))
end
if ARGV[15] ~= '' then redis.call('LPOP', KEYS[5]) end
local totals = add_usage(ARGV[21], usage_ttl, day_ttl, ARGV[9])
local last = ARGV[1] .. '\\t' .. ARGV[15]
if st[2] == 'ended' then
  if ARGV[15] ~= '' then
    redis.call('HSET', KEYS[1], 'last_commit', last, 'last_result', 'already_ended', 'last_extra', 0)
  end
  return reply(next_or_release(KEYS[1], KEYS[2], KEYS[3], KEYS[5], ARGV[1], lease, ARGV[17], 'already_ended', 0,
                               ARGV[19], ARGV[20]), totals)
end
local fields = {'status', 'active', 'updated_at', ARGV[2], 'platform', ARGV[8], 'community', ARGV[9],
                'channel', ARGV[10], 'known', '1', 'turn', tonumber(st[5] or '0') + 1}
local function set(name, value)
  fields[#fields + 1] = name
  fields[#fields + 1] = value
end
if not st[3] then set('created_at', ARGV[2]) end
if ARGV[11] ~= '' and not st[4] then set('jump_url', ARGV[11]) end
if ARGV[16] ~= '' then set('win', ARGV[16]) end
local delta = tonumber(ARGV[4])
if delta ~= 0 then set('redirects', tonumber(st[6] or '0') + delta) end
if ARGV[5] ~= '' then set('warned', '1') set('warned_turn', ARGV[5]) end
if ARGV[6] == '1' then set('at_risk', '1') end
if ARGV[7] == '1' then set('crisis_posted', '1') end
local ttl, seq, result = active, 0, 'ok'
if ARGV[12] ~= '' then
  seq, result, ttl = redis.call('HINCRBY', KEYS[1], 'end_seq', 1), 'ended', ended
  fields[2] = 'ended'
  set('ended_reason', ARGV[13]) set('ended_category', ARGV[14]) set('ended_at', ARGV[2])
  redis.call('HDEL', KEYS[1], 'case_id')
  redis.call('HSET', KEYS[4], seq, ARGV[12])
  if KEYS[7] then redis.call('SADD', KEYS[7], ARGV[18]) end
end
if ARGV[15] ~= '' then set('last_commit', last) set('last_result', result) set('last_extra', seq) end
redis.call('HSET', KEYS[1], unpack(fields))
if #ARGV >= 22 then redis.call('RPUSH', KEYS[2], unpack(ARGV, 22)) end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return reply(next_or_release(KEYS[1], KEYS[2], KEYS[3], KEYS[5], ARGV[1], lease, ARGV[17], result, seq,
                             ARGV[19], ARGV[20]), totals)
"""

# An inbox entry answered without a turn (the thread ended before it, or the model failed for good).
# KEYS: state, log, lock, inbox, remind, seen
# ARGV: token, entry id, lease ttl ms, go on, reminder cooldown or '', forget the event '1'/'',
#       7 and 8 the window the caller holds (``_START``)
DROP_HEAD = _START + _NEXT + _GRANT + """
if not owns(redis.call('HGET', KEYS[1], 'fence'), KEYS[4], ARGV[1], ARGV[2]) then
  return replayed(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[7], ARGV[8])
         or {'lost_lock', 0, false}
end
redis.call('LPOP', KEYS[4])
if ARGV[6] == '1' then redis.call('DEL', KEYS[6]) end
local remind = 0
if ARGV[5] ~= '' then remind = remind_due(KEYS[5], ARGV[5]) end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'last_commit', ARGV[1] .. '\\t' .. ARGV[2], 'last_result', 'ok', 'last_extra', remind)
end
return next_or_release(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[3], ARGV[4], 'ok', remind, ARGV[7], ARGV[8])
"""

# After the posts of a turn committed with ``hold``: go on with the next inbox entry, or hand the lease back.
# KEYS: state, log, lock, inbox.  ARGV: token, lease ttl ms, go on ('1' or ''), the window the caller holds
PASS_ON = _START + _NEXT + """
if redis.call('HGET', KEYS[1], 'fence') ~= ARGV[1] then return {'lost_lock', 0, false} end
return next_or_release(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], 'ok', 0, ARGV[4], ARGV[5])
"""

# KEYS: state, lock.  ARGV: token, lease ttl ms ('' releases the lease)
# A lease that is gone (handed back by the last commit, or run out) is not brought back: 1 still means no
# newer owner exists, so the owner's fenced commit can go through.
RENEW = """
if redis.call('HGET', KEYS[1], 'fence') ~= ARGV[1] then return 0 end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  if ARGV[2] == '' then redis.call('DEL', KEYS[2]) else redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
end
return 1
"""

# KEYS: due.  ARGV: thread key, the score seen when its inbox was found empty
FORGET_DUE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
"""

# KEYS: seq, refs, index.  ARGV: case ref, body, created (epoch), case key prefix
# Returns the number and whether it was filed now (1) or already (0).
FILE_CASE = """
local n = redis.call('HGET', KEYS[2], ARGV[1])
if n then return {tonumber(n), 0} end
n = redis.call('INCR', KEYS[1])
redis.call('HSET', ARGV[4] .. n, 'body', ARGV[2], 'ref', ARGV[1], 'created', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], n)
redis.call('ZADD', KEYS[3], ARGV[3], n)
return {n, 1}
"""

# KEYS: state, pending [, pending-case index (one server)].  ARGV: end seq, case number, thread key
# Returns how many cases of the thread still wait for their numbers.
FINISH_FILING = """
redis.call('HDEL', KEYS[2], ARGV[1])
if tonumber(redis.call('HGET', KEYS[1], 'end_seq') or '0') == tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'case_id', ARGV[2])
end
local left = redis.call('HLEN', KEYS[2])
if left == 0 and KEYS[3] then redis.call('SREM', KEYS[3], ARGV[3]) end
return left
"""

# KEYS: state, log.  ARGV: ttl ms, entries...; then the state fields follow after a '--' marker
SEED_BRANCH = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local i = 2
while ARGV[i] ~= '--' do
  redis.call('RPUSH', KEYS[2], ARGV[i])
  i = i + 1
end
i = i + 1
while i < #ARGV do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end
return 1
"""

# KEYS: state, log, remind.  ARGV: entry, now, ttl ms
REOPEN = """
if redis.call('HGET', KEYS[1], 'status') ~= 'ended' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'active', 'redirects', '0', 'warned', '0', 'warned_turn', '-1',
           'updated_at', ARGV[2], 'known', '1')
redis.call('HDEL', KEYS[1], 'ended_reason', 'ended_category', 'ended_at')
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""
