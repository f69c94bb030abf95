"""Lua scripts for every state transition. Each touches the keys of one hash tag only, so it runs the
same on one Redis server, on Redis Cluster and on the in-process Redis."""

from __future__ import annotations

# KEYS: state, log, lock, seen, remind, pending
# ARGV: token, lock_ttl_ms, dedupe_ttl_s, reminder_cooldown_s
BEGIN_TURN = """
if redis.call('EXISTS', KEYS[4]) == 1 then return {'duplicate'} end
if redis.call('HGET', KEYS[1], 'status') == 'ended' then
  redis.call('SET', KEYS[4], '1', 'EX', ARGV[3])
  local remind = 0
  if tonumber(ARGV[4]) <= 0 then
    remind = 1
  elseif redis.call('SET', KEYS[5], '1', 'NX', 'EX', ARGV[4]) then
    remind = 1
  end
  return {'frozen', remind, redis.call('HLEN', KEYS[6])}
end
if not redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'busy'} end
redis.call('SET', KEYS[4], '1', 'EX', ARGV[3])
return {'ok', redis.call('HGETALL', KEYS[1]), redis.call('LRANGE', KEYS[2], 0, -1),
        redis.call('HLEN', KEYS[6])}
"""

# KEYS: state, log, lock, pending
# ARGV: 1 token, 2 now, 3 active ttl ms, 4 ended ttl ms, 5 redirect delta, 6 warned turn or '',
#       7 at_risk '1'/'', 8 crisis_posted '1'/'', 9 platform, 10 community, 11 channel, 12 jump url,
#       13 end case JSON or '', 14 end reason, 15 end category, 16.. log entries
COMMIT_TURN = """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return {'lost_lock', 0} end
if redis.call('HGET', KEYS[1], 'status') == 'ended' then
  redis.call('DEL', KEYS[3])
  return {'already_ended', 0}
end
redis.call('HSETNX', KEYS[1], 'created_at', ARGV[2])
redis.call('HSET', KEYS[1], 'status', 'active', 'updated_at', ARGV[2], 'platform', ARGV[9],
           'community', ARGV[10], 'channel', ARGV[11])
redis.call('HINCRBY', KEYS[1], 'turn', 1)
if ARGV[12] ~= '' then redis.call('HSETNX', KEYS[1], 'jump_url', ARGV[12]) end
local delta = tonumber(ARGV[5])
if delta ~= 0 then redis.call('HINCRBY', KEYS[1], 'redirects', delta) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'warned', '1', 'warned_turn', ARGV[6]) end
if ARGV[7] == '1' then redis.call('HSET', KEYS[1], 'at_risk', '1') end
if ARGV[8] == '1' then redis.call('HSET', KEYS[1], 'crisis_posted', '1') end
for i = 16, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
local ttl = ARGV[3]
local seq = 0
if ARGV[13] ~= '' then
  seq = redis.call('HINCRBY', KEYS[1], 'end_seq', 1)
  redis.call('HSET', KEYS[1], 'status', 'ended', 'ended_reason', ARGV[14],
             'ended_category', ARGV[15], 'ended_at', ARGV[2])
  redis.call('HDEL', KEYS[1], 'case_id')
  redis.call('HSET', KEYS[4], seq, ARGV[13])
  ttl = ARGV[4]
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('DEL', KEYS[3])
if seq > 0 then return {'ended', seq} end
return {'ok', 0}
"""

# KEYS: lock, seen.  ARGV: token, forget ('1' to forget the event so a redelivery is processed)
ABANDON_TURN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if ARGV[2] == '1' then redis.call('DEL', KEYS[2]) end
return 1
"""

# KEYS: seq, refs, index.  ARGV: case ref, body, created (epoch), case key prefix
FILE_CASE = """
local n = redis.call('HGET', KEYS[2], ARGV[1])
if n then return tonumber(n) end
n = redis.call('INCR', KEYS[1])
redis.call('HSET', ARGV[4] .. n, 'body', ARGV[2], 'ref', ARGV[1], 'created', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], n)
redis.call('ZADD', KEYS[3], ARGV[3], n)
return n
"""

# KEYS: state, pending.  ARGV: end seq, case number
FINISH_FILING = """
redis.call('HDEL', KEYS[2], ARGV[1])
if tonumber(redis.call('HGET', KEYS[1], 'end_seq') or '0') == tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'case_id', ARGV[2])
end
return 1
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
           'updated_at', ARGV[2])
redis.call('HDEL', KEYS[1], 'ended_reason', 'ended_category', 'ended_at')
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""

# KEYS: lock.  ARGV: token, ttl ms
EXTEND_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
