"""Lua scripts for every state transition, each with its arguments and reply encoded and decoded by name
next to it. Each script touches the keys of one hash tag only, so it runs the same on one Redis server, on
Redis Cluster and on the in-process Redis.

- ``scripts.inbox``: accepting a message, leases, the due sets.
- ``scripts.turns``: a turn's commit, an inbox entry dropped, a branch seeded, a thread reopened.
- ``scripts.cases``: numbering a case.

This module holds what they share: the turn start every lease hands out (``START``), and its decoding.
Inside a script, arguments and keys are named once at the top; the state fields a turn start sends are
read by name (``field_at``), never by position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.store import TurnStart, keys
from bot.store.window import HeldWindow, WindowCache
from bot.types import LadderState, ThreadRef, ThreadState, ThreadStatus

#: The thread-state fields a turn start sends back, in this order (``state_from_hash`` reads them; ``win``
#: and ``log_gen`` are also what the window is read by).
STATE_FIELDS: tuple[str, ...] = ("status", "redirects", "warned", "warned_turn", "at_risk", "crisis_posted", "turn",
                                 "branch_of", "ended_reason", "ended_category", "case_id", "jump_url", "win",
                                 "log_gen")


def lua_list(names: tuple[str, ...]) -> str:
    return ", ".join(f"'{n}'" for n in names)


# Log entries from ``from`` to ``to`` (inclusive, -1: the last) as one JSON array: one string to send and
# to decode, not one per entry.
ENTRIES = """
local function entries(log, from, to)
  return '[' .. table.concat(redis.call('LRANGE', log, from, to), ',') .. ']'
end
"""

# What a turn start sends: ``{state, window, inbox head, win, last, base, length}``, ``state`` being the
# values of ``STATE_FIELDS`` (``field_at[name]`` is a field's place among them). The window is the log from
# the stored start ``win`` on; a caller that holds the log from ``from`` up to ``to`` (exclusive; ``have`` =
# "<from> <to> <log generation>", ``held`` = its entry at ``to - 1``) gets only the entries from ``base`` =
# ``to`` on, when what it holds is still the log (same generation, the same entry at ``to - 1``) and the
# window starts inside it; otherwise ``base`` = ``win``. The entries from ``base`` come as a JSON array of all
# but the last, and the last apart (``false`` when none is after ``base``), so the caller can say what it
# holds next time. See ``bot.store.window``; decoded by ``StartReply``.
START = """
local state_fields = {""" + lua_list(STATE_FIELDS) + """}
local field_at = {""" + ", ".join(f"{name} = {i}" for i, name in enumerate(STATE_FIELDS, 1)) + """}
-- ``st``: the state's values of ``state_fields`` when the caller read them already, ``head``: the inbox head
-- when the caller knows it (each saves a call).
local function window(state, log, inbox, have, held, st, head)
  st = st or redis.call('HMGET', state, unpack(state_fields))
  local len = redis.call('LLEN', log)
  local win = tonumber(st[field_at.win] or '0')
  if win > len then win = 0 end
  local base = win
  if have ~= '' then
    local from, to, gen = string.match(have, '^(%d+) (%d+) (%d+)$')
    from, to = tonumber(from), tonumber(to)
    if to and to > 0 and from <= win and win <= to and gen == (st[field_at.log_gen] or '0')
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

# A thread's owner holds the lease key; ``fence`` in the state counts every lease handed out, so a commit
# carrying an older token is refused even after its lease ran out. ``grant`` replies ``{'owner', token,
# turn start}``.
GRANT = """
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


# A thread due in its due set at ``at`` (epoch ms; ``nx``: unless it is there already). When that makes it the
# set's first, earlier than the first was, every process's recovery loop is told when to look at that set
# (``due <platform> <shard> <ms>`` on the wake-up channel): it sleeps until the first due time it knows of,
# so any other write to a due set (a later time, a removal) needs no word.
DUE = """
local function due_add(due, at, thread_key, nx)
  at = tonumber(at)
  local first = redis.call('ZRANGE', due, 0, 0, 'WITHSCORES')
  if nx then redis.call('ZADD', due, 'NX', at, thread_key) else redis.call('ZADD', due, at, thread_key) end
  if first[2] and tonumber(first[2]) <= at then return end
  if nx and tonumber(redis.call('ZSCORE', due, thread_key)) ~= at then return end
  local platform, shard = string.match(due, '{due:([^}]*):(%d+)}')
  redis.call('PUBLISH', '""" + keys.WAKE + """', 'due ' .. platform .. ' ' .. shard .. ' ' .. string.format('%d', at))
end
"""


def held_args(held: HeldWindow | None) -> list[str]:
    """The two arguments (``have``, ``held``) that tell ``START`` what the caller holds (empty: nothing)."""
    return ["", ""] if held is None else [held.have, held.last]


@dataclass(slots=True)
class StartReply:
    """A turn start as ``START`` sends it."""

    state: dict[str, str]
    #: The entries from ``base`` on but the last, as one JSON array.
    tail: str
    head: str | None
    #: Where the history window starts.
    win: int
    #: The last entry (``None`` when none is after ``base``).
    last: str | None
    base: int
    length: int

    @property
    def at_risk(self) -> bool:
        return self.state.get("at_risk") == "1"

    @classmethod
    def from_reply(cls, reply: list[Any]) -> StartReply:
        fields, tail, head, win, last, base, length = reply
        state = {name: value for name, value in zip(STATE_FIELDS, fields, strict=True) if value is not None}
        return cls(state, tail, str(head) if head else None, int(win), last, int(base), int(length))

    def turn_start(self, thread: ThreadRef, token: str, windows: WindowCache, held: HeldWindow | None) -> TurnStart:
        """The ``TurnStart``, its window read on top of what the caller said it held (``held``)."""
        log = windows.window(thread.key, held, self.tail, self.last, self.win, self.base, self.length,
                             self.state.get("log_gen", "0"))
        return TurnStart(token=token, state=state_from_hash(thread, self.state), log=log, window_start=self.win,
                         head=self.head)


def state_from_hash(thread: ThreadRef, data: dict[str, str]) -> ThreadState:
    def num(name: str, default: int = 0) -> int:
        try:
            return int(data.get(name, default))
        except ValueError:
            return default

    case_id = data.get("case_id")
    return ThreadState(
        thread=thread,
        status=ThreadStatus(data.get("status", "active")),
        ladder=LadderState(
            redirects=num("redirects"),
            warned=data.get("warned") == "1",
            warned_turn=num("warned_turn", -1),
            at_risk=data.get("at_risk") == "1",
            crisis_posted=data.get("crisis_posted") == "1",
            turn=num("turn"),
        ),
        branch_of=data.get("branch_of") or None,
        ended_reason=data.get("ended_reason") or None,
        ended_category=data.get("ended_category") or None,
        case_id=int(case_id) if case_id and case_id.isdigit() else None,
        jump_url=data.get("jump_url") or None,
    )


def flag(value: bool) -> str:
    """A yes/no argument as the scripts read it: ``'1'`` or ``''``."""
    return "1" if value else ""
