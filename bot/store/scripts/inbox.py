"""The inbox and its leases: accepting a message, claiming a waiting inbox, the lease for the end
command, renewing or handing back a lease, and the due sets the recovery loop reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.limits import LimitCheck, LimitHit
from bot.store import ClaimStatus, IngestStatus, keys
from bot.store.inbox_entry import UnknownThread
from bot.store.scripts import DUE, ENTRIES, GRANT, START, STATE_FIELDS, StartReply, flag, held_args, lua_list
from bot.store.scripts.limits import HELD_FORM, LIMITS, TELL_ONCE, limit_hit, limit_keys
from bot.store.window import HeldWindow
from bot.types import Entry

# Accepting a member's message: dedupe, the frozen check, the thread's inbox, and the lease when the
# thread is free. The state has its lifetime from the first commit on (every commit sets it), so only a
# thread without turns needs one here. ``due`` is only a key on one server (on Cluster it is in another
# slot), and so are the limits' keys (``check_keys``) with their arguments (``LimitCheck.args``, from
# ``ARGV[LIMIT_ARGS]`` on). Encoded by ``Ingest``, decoded by ``IngestReply``.
INGEST = START + GRANT + LIMITS + TELL_ONCE + HELD_FORM + DUE + """
local state, log, lease, seen, remind, inbox, pending, parked, limited, due, members, yesterday, day =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12],
  KEYS[13]
local entry, limits, cooldown, unknown, take_lease, thread_key, due_at, have, held, verdict, hold =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local LIMIT_ARGS = 12
local lease_ttl, dedupe, max_inbox, max_turns, idle, park =
  string.match(limits, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+)$')
if not redis.call('SET', seen, '1', 'NX', 'EX', dedupe) then return {'duplicate'} end
-- the state fields a turn start sends (``state_fields``), then whether the bot takes part in the thread
local st = redis.call('HMGET', state, """ + lua_list((*STATE_FIELDS, "known")) + """)
local known = st[#state_fields + 1]
if st[field_at.status] == 'ended' then
  return {'frozen', remind_due(remind, cooldown), redis.call('HLEN', pending)}
end
local queued = redis.call('LLEN', inbox)
local turn = tonumber(st[field_at.turn] or '0')
if unknown ~= '' and queued == 0 and turn == 0 and known ~= '1' and (st[field_at.branch_of] or '') == '' then
  if unknown ~= 'park' then
    redis.call('DEL', seen)  -- not seen: the thread may become one the bot takes part in
    return {'unknown'}
  end
  -- a reply that may have overtaken its thread's opening mention: kept until the mention arrives
  redis.call('RPUSH', parked, entry)
  redis.call('PEXPIRE', parked, park)
  return {'parked'}
end
-- the member's limits (never in a thread flagged at risk): checked here on one server, by ``LIMIT_CHECK`` on
-- Cluster (its verdict); the member is told once per limit window in this thread
local kept = false
if (members or verdict ~= '') and st[field_at.at_risk] ~= '1' then
  local hit = false
  if verdict == '?' then
    -- Cluster: the verdict comes by ``LIMIT_CHECK``, sent alongside. A message that finds the thread free and
    -- its inbox empty is taken without it (its owner, the caller, applies the verdict before any model
    -- call: ``REFUSE_HEAD``); any other is left untouched, and the caller sends it again with the verdict.
    if take_lease ~= '1' or queued > 0 or turn >= tonumber(max_turns) or redis.call('EXISTS', lease) == 1 then
      redis.call('DEL', seen)
      return {'ask'}
    end
  elseif verdict ~= '' then
    local kind, until_ms, now = string.match(verdict, '^(%a+) (%d+) (%d+)$')
    hit = {kind, until_ms, now}
  elseif members then
    hit = check_limits(members, yesterday, day, LIMIT_ARGS)
  end
  if hit and hold == '' then
    return {'limited', hit[1], hit[2], hit[3], tell_once(limited, hit[1], hit[2], hit[3], idle)}
  end
  kept = hit
end
if turn + queued >= tonumber(max_turns) then return {'too_long'} end
if queued >= tonumber(max_inbox) then return {'full', queued} end
-- a message over a limit the community answers when it resets: kept, marked for its owner to check again
if kept then entry = held_form(entry) end
redis.call('RPUSH', inbox, entry)
if unknown == '' then
  local waiting = redis.call('LPOP', parked)
  while waiting do
    redis.call('RPUSH', inbox, waiting)
    waiting = redis.call('LPOP', parked)
  end
end
redis.call('PEXPIRE', inbox, idle)
if known ~= '1' then redis.call('HSET', state, 'known', '1') end
if turn == 0 and redis.call('PTTL', state) < 0 then redis.call('PEXPIRE', state, idle) end
if kept then
  -- alone in a free thread: the thread wakes when the limit resets (``hold``: how far the limits' clock is
  -- ahead, ms), its state's ``wake``; behind others in a free thread: when it was to (the head's ``wake``)
  local free, wake = redis.call('EXISTS', lease) == 0, false
  if free and queued == 0 then
    wake = string.format('%d', tonumber(kept[2]) - tonumber(hold))
    redis.call('HSET', state, 'wake', wake)
    if due then due_add(due, wake, thread_key) end
  elseif free then
    wake = redis.call('HGET', state, 'wake') or false
    if due then due_add(due, due_at, thread_key, true) end
  elseif due then
    due_add(due, due_at, thread_key)
  end
  return {'held', kept[1], kept[2], kept[3], tell_once(limited, kept[1], kept[2], kept[3], idle), wake}
end
if due then due_add(due, due_at, thread_key) end
if take_lease == '1' and redis.call('EXISTS', lease) == 0 then
  -- the state read above is still the state (nothing here changed its fields); a message that found the
  -- inbox empty is its head
  return grant(state, log, lease, inbox, lease_ttl, have, held, st, queued == 0 and entry or nil)
end
return {'queued', queued + 1}
"""


#: ``INGEST``'s reply on Cluster when it cannot take the message before the limits' verdict is known.
ASK = "ask"


@dataclass(slots=True)
class Ingest:
    """``INGEST``'s keys and arguments."""

    thread_key: str
    entry_id: str
    #: The entry's stored form (``InboxEntry.stored()``).
    entry: str
    #: "<lease ttl ms> <dedupe ttl s> <inbox limit> <turn limit> <idle ttl ms> <parking ttl ms>" (one
    #: argument, built once per limits by the caller).
    limits: str
    reminder_cooldown: int
    unknown: UnknownThread
    take_lease: bool
    #: The thread's score in its due set (ms).
    due_at: int
    held: HeldWindow | None
    #: The member's limits (``None``: none apply).
    check: LimitCheck | None = None
    #: Redis Cluster: ``LIMIT_CHECK``'s verdict ('' none: allowed, or checked here; '?': sent alongside).
    verdict: str = ""

    def keys(self, *, one_server: bool) -> list[str]:
        """The thread's keys; on one server also its due set and the limits' keys (other slots)."""
        k = self.thread_key
        found = [keys.state(k), keys.log(k), keys.lock(k), keys.seen(k, self.entry_id), keys.remind(k),
                 keys.inbox(k), keys.pending(k), keys.parked(k), keys.limited(k)]
        if not one_server:
            return found
        found.append(keys.due(k))
        if self.check is not None:
            found += limit_keys(self.check)
        return found

    def to_args(self, *, one_server: bool) -> list[Any]:
        check = self.check
        args = [self.entry, self.limits, self.reminder_cooldown, self.unknown.value, flag(self.take_lease),
                self.thread_key, self.due_at, *held_args(self.held), self.verdict, check.hold if check else ""]
        if check is not None and one_server:
            args += check.args
        return args


@dataclass(slots=True)
class IngestReply:
    status: IngestStatus
    token: str = ""
    start: StartReply | None = None
    #: Frozen: whether the member gets a reminder; how many of its ends wait for a case number.
    remind: bool = False
    pending_cases: int = 0
    #: Queued or full: the inbox length.
    queued: int = 0
    #: Limited or held: which limit, until when, whether the member is told now.
    limit: LimitHit | None = None
    #: Held in a free thread: when the thread wakes (alone: this message's reset; behind others: the head's;
    #: system clock, epoch ms).
    due_ms: int | None = None

    @classmethod
    def from_reply(cls, reply: list[Any]) -> IngestReply:
        status = IngestStatus(reply[0])
        if status is IngestStatus.OWNER:
            return cls(status, token=str(reply[1]), start=StartReply.from_reply(reply[2]))
        if status is IngestStatus.FROZEN:
            return cls(status, remind=bool(int(reply[1])), pending_cases=int(reply[2]))
        if status in (IngestStatus.QUEUED, IngestStatus.FULL):
            return cls(status, queued=int(reply[1]))
        if status is IngestStatus.LIMITED:
            return cls(status, limit=limit_hit(*reply[1:5]))
        if status is IngestStatus.HELD:
            hit = limit_hit(*reply[1:5])
            return cls(status, limit=LimitHit(hit.kind, hit.until_ms, hit.notify, hit.now_ms, kept=True),
                       due_ms=int(reply[5]) if reply[5] else None)
        return cls(status)


# The recovery loop: the lease of a thread whose inbox waits and whose lease is free. Encoded by
# ``Claim``, decoded by ``ClaimReply``.
CLAIM = START + GRANT + """
local state, log, lease, inbox = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local lease_ttl, have, held = ARGV[1], ARGV[2], ARGV[3]
if redis.call('LLEN', inbox) == 0 then return {'empty'} end
local left = redis.call('PTTL', lease)
if left ~= -2 then return {'held', left} end
return grant(state, log, lease, inbox, lease_ttl, have, held)
"""


@dataclass(slots=True)
class Claim:
    """``CLAIM``'s keys and arguments."""

    thread_key: str
    lease_ms: int
    held: HeldWindow | None

    def keys(self) -> list[str]:
        k = self.thread_key
        return [keys.state(k), keys.log(k), keys.lock(k), keys.inbox(k)]

    def to_args(self) -> list[Any]:
        return [self.lease_ms, *held_args(self.held)]


@dataclass(slots=True)
class ClaimReply:
    status: ClaimStatus
    token: str = ""
    start: StartReply | None = None
    #: Held: milliseconds left on the other owner's lease (0: it runs out now; -1: it has no lifetime).
    lease_left_ms: int = 0

    @classmethod
    def from_reply(cls, reply: list[Any]) -> ClaimReply:
        status = ClaimStatus(reply[0])
        if status is ClaimStatus.OWNER:
            return cls(status, token=str(reply[1]), start=StartReply.from_reply(reply[2]))
        if status is ClaimStatus.HELD:
            return cls(status, lease_left_ms=max(-1, int(reply[1])))
        return cls(status)


# The member's own end command: the lease without an inbox entry, and the whole log (a case needs it).
# Replies ``{'owner', token, the state as HGETALL pairs, the log as one JSON array}``, or the status alone.
LEASE_FOR_END = ENTRIES + """
local state, log, lease = KEYS[1], KEYS[2], KEYS[3]
local lease_ttl = ARGV[1]
if redis.call('HGET', state, 'status') == 'ended' then return {'frozen'} end
if redis.call('EXISTS', lease) == 1 then return {'busy'} end
local token = tostring(redis.call('HINCRBY', state, 'fence', 1))
redis.call('SET', lease, token, 'PX', lease_ttl)
return {'owner', token, redis.call('HGETALL', state), entries(log, 0, -1), false, 0}
"""


@dataclass(slots=True)
class LeaseForEnd:
    """``LEASE_FOR_END``'s keys and arguments."""

    thread_key: str
    lease_ms: int

    def keys(self) -> list[str]:
        k = self.thread_key
        return [keys.state(k), keys.log(k), keys.lock(k)]

    def to_args(self) -> list[Any]:
        return [self.lease_ms]


@dataclass(slots=True)
class LeaseForEndReply:
    status: ClaimStatus
    token: str = ""
    state: dict[str, str] | None = None
    log: list[Entry] | None = None

    @classmethod
    def from_reply(cls, reply: list[Any]) -> LeaseForEndReply:
        status = ClaimStatus(reply[0])
        if status is not ClaimStatus.OWNER:
            return cls(status)
        pairs = list(reply[2])
        state = {str(pairs[i]): str(pairs[i + 1]) for i in range(0, len(pairs) - 1, 2)}
        return cls(status, token=str(reply[1]), state=state, log=Entry.many_from_json(reply[3]))


# Renew the owner's lease (``lease_ttl`` '' hands it back). A lease that is gone (handed back by the last
# commit, or run out) is not brought back: 1 still means no newer owner exists, so the owner's fenced
# commit can go through.
RENEW = """
local state, lease = KEYS[1], KEYS[2]
local token, lease_ttl = ARGV[1], ARGV[2]
if redis.call('HGET', state, 'fence') ~= token then return 0 end
if redis.call('GET', lease) == token then
  if lease_ttl == '' then redis.call('DEL', lease) else redis.call('PEXPIRE', lease, lease_ttl) end
end
return 1
"""


@dataclass(slots=True)
class Renew:
    """``RENEW``'s keys and arguments (``lease_ms`` ``None``: hand the lease back)."""

    thread_key: str
    token: str
    lease_ms: int | None

    def keys(self) -> list[str]:
        return [keys.state(self.thread_key), keys.lock(self.thread_key)]

    def to_args(self) -> list[Any]:
        return [self.token, "" if self.lease_ms is None else self.lease_ms]


# A thread due at ``at`` (``nx`` '1': unless it is due already), written on its own: on Redis Cluster, where
# the due set is in another slot than the thread's scripts, and for a lease handed back.
ADD_DUE = DUE + """
due_add(KEYS[1], ARGV[2], ARGV[1], ARGV[3] == '1')
return 1
"""


@dataclass(slots=True)
class AddDue:
    """``ADD_DUE``'s keys and arguments."""

    thread_key: str
    at_ms: int
    nx: bool = False

    def keys(self) -> list[str]:
        return [keys.due(self.thread_key)]

    def to_args(self) -> list[Any]:
        return [self.thread_key, self.at_ms, flag(self.nx)]


# Unregister an inbox found empty, unless a message arrived since (its score moved on).
FORGET_DUE = """
local due = KEYS[1]
local thread_key, seen_score = ARGV[1], ARGV[2]
local score = redis.call('ZSCORE', due, thread_key)
if score and tonumber(score) == tonumber(seen_score) then redis.call('ZREM', due, thread_key) end
return 1
"""


@dataclass(slots=True)
class ForgetDue:
    """``FORGET_DUE``'s keys and arguments."""

    thread_key: str
    score: int

    def keys(self) -> list[str]:
        return [keys.due(self.thread_key)]

    def to_args(self) -> list[Any]:
        return [self.thread_key, self.score]
