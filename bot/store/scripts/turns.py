"""A thread's turns: the fenced commit of a turn, an inbox entry answered without one, a branch seeded
from an ended thread, and a moderator's reopen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.limits import LimitHit, SpendCount
from bot.store import CommitStatus, TurnCommit, keys
from bot.store.scripts import GRANT, START, StartReply, flag, held_args, lua_list
from bot.store.scripts.limits import HELD_FORM, SPEND, TELL_ONCE, alert_levels, spend_keys
from bot.store.usage import thread_usage
from bot.store.window import HeldWindow
from bot.types import ThreadRef
from bot.usage import FIELDS as USAGE_FIELDS
from bot.usage import TokenTotals

# After a commit or a drop: ``{result, extra, the next turn's start or false}``: go on with the next inbox
# entry (lease renewed), or hand the lease back; ``go_on`` is '1', '' or 'hold' (keep the lease even with an
# empty inbox: the turn still has posts to make, then ``PASS_ON``). Only the owner gets here (``fence`` is
# its token): a lease still there is its own.
NEXT = """
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
  local last_commit, last_result, last_extra, fence =
    unpack(redis.call('HMGET', state, 'last_commit', 'last_result', 'last_extra', 'fence'))
  if last_commit ~= token .. '\\t' .. head then return false end
  local result, extra = last_result or 'ok', tonumber(last_extra or '0')
  if fence ~= token then return {result, extra, false} end
  return next_or_release(state, log, lease, inbox, token, ttl, go_on, result, extra, have, held)
end
local function owns(fence, inbox, token, head)
  if fence ~= token then return false end
  if head == '' then return true end
  local first = redis.call('LINDEX', inbox, 0)
  return first ~= false and string.sub(first, 1, #head + 1) == head .. '\\t'
end
"""

# The turn's tokens, added to the thread's usage sums (``usage``, its slot) and, on one server, to the
# community's day sums (``day``) with the community registered (``communities``); on Cluster those live in
# other slots (``day`` is nil) and the store sends them by a request of its own. Returns the thread's new
# sums (or false).
USAGE = """
local usage_fields = {""" + lua_list(USAGE_FIELDS) + """}
-- ``counts``: the increments of ``usage_fields``, then 1 when the community may not be in the set of
-- communities with usage yet (0 when this process registered it), space-separated; '' for none. Returns
-- the thread's new sums, the increments, and the day's new sums of the fields it added to (``priced``: the
-- four priced fields always, for the day's spend: the community has a ceiling).
local function add_usage(usage, communities, day, counts, ttl, day_ttl, community, priced)
  if counts == '' then return false end
  local values, totals, sums = {}, {}, {}
  for v in string.gmatch(counts, '%d+') do values[#values + 1] = v end
  for i, name in ipairs(usage_fields) do totals[i] = redis.call('HINCRBY', usage, name, values[i]) end
  redis.call('PEXPIRE', usage, ttl)
  if day then
    for i, name in ipairs(usage_fields) do
      if values[i] ~= '0' or (priced and i <= 4) then sums[i] = redis.call('HINCRBY', day, name, values[i]) end
    end
    redis.call('PEXPIRE', day, day_ttl)
    if values[#usage_fields + 1] == '1' then redis.call('SADD', communities, community) end
  end
  return totals, values, sums
end
"""

# A turn's commit, fenced by the lease token: the log entries, the ladder fields, an end (the freeze and
# the case body, in the thread's slot), the answered inbox entry removed, the turn's usage added, then the
# next inbox entry's start or the lease handed back. The keys after ``usage`` are only there on one server
# (on Cluster they are in other slots); ``day`` only when the turn has usage. The log entries follow the
# named arguments (from ``FIRST_ENTRY`` on). Returns ``{result, end seq, the next turn's start or false, the
# thread's usage sums or false}``. A refused commit still counts its tokens (they were billed); a commit sent
# again after a lost reply does not count them twice. An end is told on the wake-up channel (``pending``).
# Encoded by ``Commit``, decoded by ``CommitReply``.
COMMIT_TURN = START + NEXT + USAGE + SPEND + """
local state, log, lease, pending, inbox, usage, pending_index, communities, day, members, alerts =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local token, now, ttls, redirect_delta, warned_turn, at_risk, crisis_posted, platform, community, channel,
      jump_url, end_case, end_reason, end_category, entry_id, window_start, go_on, thread_key, have, held,
      usage_counts = unpack(ARGV, 1, 21)
-- ARGV[22], [23], [24]: the member's count (``SpendCount.args``; '' when the community has no limits)
local SPEND, FIRST_ENTRY = 22, 25
local active, ended, lease_ttl, usage_ttl, day_ttl = string.match(ttls, '^(%d+) (%d+) (%d+) (%d+) (%d+)$')
local fence, status, created_at, stored_jump_url, turn, redirects =
  unpack(redis.call('HMGET', state, 'fence', 'status', 'created_at', 'jump_url', 'turn', 'redirects'))
local passed = false
local function add(counts)
  local spending = day and members and ARGV[SPEND] ~= ''
  local totals, values, sums = add_usage(usage, communities, day, counts, usage_ttl, day_ttl, community,
                                         spending and ARGV[SPEND + 1] ~= '0')
  if spending and totals then passed = add_spend(day, members, alerts, values, day_ttl, SPEND, sums) end
  return totals
end
local function reply(r, totals)
  if r[3] == nil then r[3] = false end
  r[4] = totals
  r[5] = passed
  return r
end
if not owns(fence, inbox, token, entry_id) then
  local again = replayed(state, log, lease, inbox, token, entry_id, lease_ttl, go_on, have, held)
  if again then return reply(again, false) end
  return reply({'lost_lock', 0}, add(usage_counts))
end
if entry_id ~= '' then redis.call('LPOP', inbox) end
local totals = add(usage_counts)
local last = token .. '\\t' .. entry_id
if status == 'ended' then
  if entry_id ~= '' then
    redis.call('HSET', state, 'last_commit', last, 'last_result', 'already_ended', 'last_extra', 0)
  end
  return reply(next_or_release(state, log, lease, inbox, token, lease_ttl, go_on, 'already_ended', 0, have, held),
               totals)
end
local fields = {'status', 'active', 'updated_at', now, 'platform', platform, 'community', community,
                'channel', channel, 'known', '1', 'turn', tonumber(turn or '0') + 1}
local function set(name, value)
  fields[#fields + 1] = name
  fields[#fields + 1] = value
end
if not created_at then set('created_at', now) end
if jump_url ~= '' and not stored_jump_url then set('jump_url', jump_url) end
if window_start ~= '' then set('win', window_start) end
local delta = tonumber(redirect_delta)
if delta ~= 0 then set('redirects', tonumber(redirects or '0') + delta) end
if warned_turn ~= '' then set('warned', '1') set('warned_turn', warned_turn) end
if at_risk == '1' then set('at_risk', '1') end
if crisis_posted == '1' then set('crisis_posted', '1') end
local ttl, seq, result = active, 0, 'ok'
if end_case ~= '' then
  seq, result, ttl = redis.call('HINCRBY', state, 'end_seq', 1), 'ended', ended
  fields[2] = 'ended'
  set('ended_reason', end_reason) set('ended_category', end_category) set('ended_at', now)
  redis.call('HDEL', state, 'case_id')
  redis.call('HSET', pending, seq, end_case)
  if pending_index then redis.call('SADD', pending_index, thread_key) end
  -- every process's loop that files pending cases looks when this one is old enough to be left to it
  redis.call('PUBLISH', '""" + keys.WAKE + """', 'pending')
end
if entry_id ~= '' then set('last_commit', last) set('last_result', result) set('last_extra', seq) end
redis.call('HSET', state, unpack(fields))
if #ARGV >= FIRST_ENTRY then redis.call('RPUSH', log, unpack(ARGV, FIRST_ENTRY)) end
redis.call('PEXPIRE', state, ttl)
redis.call('PEXPIRE', log, ttl)
return reply(next_or_release(state, log, lease, inbox, token, lease_ttl, go_on, result, seq, have, held), totals)
"""


@dataclass(slots=True)
class Commit:
    """``COMMIT_TURN``'s keys and arguments."""

    thread: ThreadRef
    token: str
    #: Epoch seconds, as text.
    now: str
    #: "<active ttl> <ended ttl> <lease ttl> <usage ttl> <day usage ttl>" (ms; one argument, built once).
    ttls: str
    commit: TurnCommit
    go_on: bool
    held: HeldWindow | None
    #: The turn's token counts (``bot.store.usage.counts``), '' for none.
    usage_counts: str
    #: The member's tokens of the day and the spend alerts, counted with the day's usage (one server).
    spend: SpendCount | None = None
    #: Keep the lease even when the inbox is empty (the turn still has posts to make; then ``PASS_ON``).
    hold: bool = False

    def keys(self, *, one_server: bool, pending_index: str, communities: str, day: str) -> list[str]:
        """The thread's keys; on one server also the keys of other slots (``day`` '': no usage to add)."""
        k = self.thread.key
        found = [keys.state(k), keys.log(k), keys.lock(k), keys.pending(k), keys.inbox(k), thread_usage(k)]
        if one_server:
            found += [pending_index, communities, *([day] if day else [])]
            if day and self.spend is not None:
                found += spend_keys(self.thread.community, self.spend.day)
        return found

    def to_args(self) -> list[Any]:
        c, end, thread = self.commit, self.commit.end_case, self.thread
        return [
            self.token, self.now, self.ttls, c.redirects, "" if c.warned_turn is None else c.warned_turn,
            flag(c.at_risk), flag(c.crisis_posted), thread.platform, thread.community, thread.channel,
            c.jump_url or "", end.to_json() if end else "", (end.reason or "") if end else "",
            (end.category or "") if end else "", c.entry_id, "" if c.window_start is None else c.window_start,
            go_on_arg(self.go_on, self.hold), thread.key, *held_args(self.held), self.usage_counts,
            *(self.spend.args if self.spend is not None else _NO_SPEND), *(e.to_json() for e in c.entries),
        ]


_NO_SPEND = ("", "", "")


def go_on_arg(go_on: bool, hold: bool) -> str:
    """``next_or_release``'s ``go_on``: '' (hand the lease back), '1' (go on when an entry waits) or 'hold'
    (go on, or keep the lease with an empty inbox)."""
    return ("hold" if hold else "1") if go_on else ""


@dataclass(slots=True)
class CommitReply:
    status: CommitStatus
    end_seq: int
    next: StartReply | None
    totals: TokenTotals | None
    spend_alerts: tuple[int, ...] = ()

    @classmethod
    def from_reply(cls, reply: list[Any]) -> CommitReply:
        result, end_seq, start, totals, *passed = reply
        return cls(CommitStatus(result), int(end_seq), StartReply.from_reply(start) if start else None,
                   TokenTotals(*(int(v) for v in totals)) if totals else None,
                   alert_levels(passed[0] if passed else None))


# An inbox entry answered without a turn (the thread ended before it, or the model failed for good);
# ``forget``: its event may be delivered again and is then accepted anew. Returns ``{result, remind, the
# next turn's start or false}``. Encoded by ``Drop``, decoded by ``DropReply``.
DROP_HEAD = START + NEXT + GRANT + """
local state, log, lease, inbox, remind, seen = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local token, entry_id, lease_ttl, go_on, cooldown, forget, have, held = unpack(ARGV, 1, 8)
if not owns(redis.call('HGET', state, 'fence'), inbox, token, entry_id) then
  return replayed(state, log, lease, inbox, token, entry_id, lease_ttl, go_on, have, held)
         or {'lost_lock', 0, false}
end
redis.call('LPOP', inbox)
if forget == '1' then redis.call('DEL', seen) end
local reminded = 0
if cooldown ~= '' then reminded = remind_due(remind, cooldown) end
if entry_id ~= '' then
  redis.call('HSET', state, 'last_commit', token .. '\\t' .. entry_id, 'last_result', 'ok', 'last_extra', reminded)
end
return next_or_release(state, log, lease, inbox, token, lease_ttl, go_on, 'ok', reminded, have, held)
"""


@dataclass(slots=True)
class Drop:
    """``DROP_HEAD``'s keys and arguments (``reminder_cooldown`` ``None``: no reminder)."""

    thread_key: str
    token: str
    entry_id: str
    lease_ms: int
    go_on: bool
    reminder_cooldown: int | None
    forget: bool
    held: HeldWindow | None

    def keys(self) -> list[str]:
        k = self.thread_key
        return [keys.state(k), keys.log(k), keys.lock(k), keys.inbox(k), keys.remind(k),
                keys.seen(k, self.entry_id or "-")]

    def to_args(self) -> list[Any]:
        return [self.token, self.entry_id, self.lease_ms, flag(self.go_on),
                "" if self.reminder_cooldown is None else self.reminder_cooldown, flag(self.forget),
                *held_args(self.held)]


@dataclass(slots=True)
class DropReply:
    status: CommitStatus
    remind: bool
    next: StartReply | None

    @classmethod
    def from_reply(cls, reply: list[Any]) -> DropReply:
        result, reminded, start = reply
        status = CommitStatus(result)
        return cls(status, status is CommitStatus.OK and bool(int(reminded)),
                   StartReply.from_reply(start) if start else None)


# Redis Cluster: the owner of a message accepted before its limits' verdict came (``INGEST`` with '?') applies
# a refusal: the member is told once per window in the thread, and the message is removed (it gets no turn;
# its dedupe mark stays, as for a message refused at once), the owner going on with the inbox or handing the
# lease back; or (``wake``: when the limit resets, system clock ms) the message stays at the head, marked, the
# lease goes back and the thread wakes then (the caller makes it due then). Returns ``{result, 1 when the
# member is told now, the next turn's start or false}``. Encoded by ``RefuseHead``, decoded by ``RefuseReply``.
REFUSE_HEAD = START + NEXT + TELL_ONCE + HELD_FORM + """
local state, log, lease, inbox, limited = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token, entry_id, kind, until_ms, now, idle, lease_ttl, have, held, wake = unpack(ARGV, 1, 10)
if not owns(redis.call('HGET', state, 'fence'), inbox, token, entry_id) then return {'lost_lock', 0, false} end
local told = tell_once(limited, kind, until_ms, now, idle)
if wake ~= '' then
  redis.call('LSET', inbox, 0, held_form(redis.call('LINDEX', inbox, 0)))
  redis.call('HSET', state, 'wake', wake)
  redis.call('DEL', lease)
  return {'ok', told, false}
end
redis.call('LPOP', inbox)
return next_or_release(state, log, lease, inbox, token, lease_ttl, '1', 'ok', told, have, held)
"""


@dataclass(slots=True)
class RefuseHead:
    """``REFUSE_HEAD``'s keys and arguments."""

    thread_key: str
    token: str
    entry_id: str
    hit: LimitHit
    idle_ms: int
    lease_ms: int
    held: HeldWindow | None
    #: Keep the message, to be answered when the limit resets at ``wake`` (epoch ms; ``None``: refuse it).
    wake: int | None = None

    def keys(self) -> list[str]:
        k = self.thread_key
        return [keys.state(k), keys.log(k), keys.lock(k), keys.inbox(k), keys.limited(k)]

    def to_args(self) -> list[Any]:
        hit = self.hit
        return [self.token, self.entry_id, hit.kind.value, hit.until_ms, hit.now_ms, self.idle_ms, self.lease_ms,
                *held_args(self.held), "" if self.wake is None else self.wake]


@dataclass(slots=True)
class RefuseReply:
    status: CommitStatus
    #: The member is told now (once per limit window in the thread).
    notify: bool
    next: StartReply | None

    @classmethod
    def from_reply(cls, reply: list[Any]) -> RefuseReply:
        result, told, start = reply
        return cls(CommitStatus(result), bool(int(told)), StartReply.from_reply(start) if start else None)


# After the posts of a turn committed with ``hold``: go on with the next inbox entry, or hand the lease back.
# Returns ``{result, 0, the next turn's start or false}`` ('lost_lock' when a newer owner holds the thread).
# Encoded by ``PassOn``, decoded by ``DropReply`` (the same shape).
PASS_ON = START + NEXT + """
local state, log, lease, inbox = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token, lease_ttl, go_on, have, held = unpack(ARGV, 1, 5)
if redis.call('HGET', state, 'fence') ~= token then return {'lost_lock', 0, false} end
return next_or_release(state, log, lease, inbox, token, lease_ttl, go_on, 'ok', 0, have, held)
"""


@dataclass(slots=True)
class PassOn:
    """``PASS_ON``'s keys and arguments."""

    thread_key: str
    token: str
    lease_ms: int
    go_on: bool
    held: HeldWindow | None

    def keys(self) -> list[str]:
        k = self.thread_key
        return [keys.state(k), keys.log(k), keys.lock(k), keys.inbox(k)]

    def to_args(self) -> list[Any]:
        return [self.token, self.lease_ms, flag(self.go_on), *held_args(self.held)]


# A branch's thread, seeded once: its log, then its state fields (after a '--' marker). Returns 1, or 0
# when the thread exists already.
SEED_BRANCH = """
local state, log = KEYS[1], KEYS[2]
local ttl = ARGV[1]
if redis.call('EXISTS', state) == 1 then return 0 end
local i = 2
while ARGV[i] ~= '--' do
  redis.call('RPUSH', log, ARGV[i])
  i = i + 1
end
i = i + 1
while i < #ARGV do
  redis.call('HSET', state, ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('PEXPIRE', state, ttl)
if redis.call('EXISTS', log) == 1 then redis.call('PEXPIRE', log, ttl) end
return 1
"""


@dataclass(slots=True)
class SeedBranch:
    """``SEED_BRANCH``'s keys and arguments."""

    thread_key: str
    ttl_ms: int
    entries: list[str]
    fields: dict[str, Any]

    def keys(self) -> list[str]:
        return [keys.state(self.thread_key), keys.log(self.thread_key)]

    def to_args(self) -> list[Any]:
        return [self.ttl_ms, *self.entries, "--", *(x for pair in self.fields.items() for x in pair)]


# A moderator's reopen of an ended thread. Returns 1, or 0 when the thread is not ended.
REOPEN = """
local state, log, remind = KEYS[1], KEYS[2], KEYS[3]
local entry, now, ttl = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', state, 'status') ~= 'ended' then return 0 end
redis.call('HSET', state, 'status', 'active', 'redirects', '0', 'warned', '0', 'warned_turn', '-1',
           'updated_at', now, 'known', '1')
redis.call('HDEL', state, 'ended_reason', 'ended_category', 'ended_at')
redis.call('RPUSH', log, entry)
redis.call('DEL', remind)
redis.call('PEXPIRE', state, ttl)
redis.call('PEXPIRE', log, ttl)
return 1
"""


@dataclass(slots=True)
class Reopen:
    """``REOPEN``'s keys and arguments."""

    thread_key: str
    entry: str
    now: str
    ttl_ms: int

    def keys(self) -> list[str]:
        k = self.thread_key
        return [keys.state(k), keys.log(k), keys.remind(k)]

    def to_args(self) -> list[Any]:
        return [self.entry, self.now, self.ttl_ms]
