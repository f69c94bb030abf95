"""Retention and the deletion of one user's data, on the key schema of ``bot.store.keys``.

- ``purge``: case transcripts older than the retention period are replaced by one notice (the case's
  number, reason, category, counters and participants stay, marked ``transcript_expired``); thread keys
  that somehow lack a TTL get one, or go at once when they are already older than their period.
- ``forget_user``: that user's message texts in every case transcript, unnumbered case body and thread
  log become ``REMOVED_TEXT``; their id and name are dropped from those entries and from participants. Their
  messages still waiting to be answered (a thread's inbox, or parked for its opening mention) keep their id,
  so the answer reaches them, and lose their text and name (it becomes their id).

Every write is a compare-and-set script on one key (the value read must still be there), so a turn
committing at the same moment is never overwritten; a lost race is retried. The same code runs on one
server, on Redis Cluster (SCAN visits every primary) and on the in-process Redis.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from bot.errors import StoreUnavailable
from bot.store import keys
from bot.store.inbox_entry import InboxEntry
from bot.store.review import forget_member
from bot.store.scripts.case_index import index_keys, summary_json
from bot.types import AttachmentRef, Author, Case, Entry, EntryKind, Participant, ThreadRef

log = logging.getLogger(__name__)

DAY_S = 86_400
REMOVED_TEXT = "[removed at the user's request]"
TRANSCRIPT_EXPIRED = "Transcript expired under the retention policy; the case record is kept."
PLATFORMS = ("discord", "slack", "console")
_RETRIES = 5

# A case body replaced when it is still ``expected``, with a marker field set (``marker_value`` '': none),
# its summary with it, and the case taken out of the indexes it left (``KEYS[2..]``: a forgotten participant).
_SWAP_CASE_BODY = """
local case = KEYS[1]
local expected, body, marker, marker_value, summary, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if redis.call('HGET', case, 'body') ~= expected then return 0 end
redis.call('HSET', case, 'body', body, 'summary', summary)
if marker_value ~= '' then redis.call('HSET', case, marker, marker_value) end
for i = 2, #KEYS do redis.call('ZREM', KEYS[i], n) end
return 1
"""

# One hash field replaced when it still holds ``expected``.
_SWAP_HASH_FIELD = """
local hash = KEYS[1]
local field, expected, value = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', hash, field) ~= expected then return 0 end
redis.call('HSET', hash, field, value)
return 1
"""

# Swaps the items of the list ``KEYS[1]`` in place: ARGV is a run of (index, expected, new) triples;
# ``missed`` counts the items not swapped because the list moved on (a lost race, retried by the caller).
_SWAP_ITEMS = """
local list = KEYS[1]
local missed = 0
for i = 1, #ARGV, 3 do
  local at, expected, new = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2]
  if redis.call('LINDEX', list, at) == expected then
    redis.call('LSET', list, at, new)
  else
    missed = missed + 1
  end
end
"""

# KEYS: a list.  Returns the number not swapped.
_SWAP_LIST_ITEMS = _SWAP_ITEMS + "return missed\n"

# KEYS: a thread's log, its state.  Returns the number not swapped. A log rewritten in place moves its
# generation on (``log_gen`` in the state), so no process goes on using the entries it read before
# (``bot.store.window``); a state that is gone is created for it, holding only that, for as long as the log
# is kept.
_SWAP_LOG_ENTRIES = _SWAP_ITEMS + """
local state = KEYS[2]
if missed < #ARGV / 3 then
  local fresh = redis.call('EXISTS', state) == 0
  redis.call('HINCRBY', state, 'log_gen', 1)
  local ttl = redis.call('PTTL', list)
  if fresh and ttl > 0 then redis.call('PEXPIRE', state, ttl) end
end
return missed
"""

# A thread's keys without a TTL get what remains of their period, or go at once when they are older than
# it (``last_activity``: the time of the log's last entry, epoch s). Returns 0 (every key has a TTL), 1 (TTLs
# set to what remains), 2 (older than its period: deleted).
_EXPIRE_THREAD = """
local state, log, remind, files, order = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now_ms, idle_ttl, ended_ttl, last_activity = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('PTTL', state) ~= -1 and redis.call('PTTL', log) ~= -1 then return 0 end
local last = tonumber(last_activity)
for _, name in ipairs({'updated_at', 'ended_at', 'created_at'}) do
  local v = tonumber(redis.call('HGET', state, name) or '')
  if v and v > last then last = v end
end
local limit = tonumber(idle_ttl)
if redis.call('HGET', state, 'status') == 'ended' then limit = tonumber(ended_ttl) end
local rest = limit - (tonumber(now_ms) - math.floor(last * 1000))
if rest <= 0 then
  redis.call('DEL', state, log, remind, files, order)
  return 2
end
for _, key in ipairs({state, log, remind}) do
  if redis.call('PTTL', key) == -1 then redis.call('PEXPIRE', key, rest) end
end
return 1
"""


@dataclass
class PurgeReport:
    transcripts_expired: int = 0
    threads_deleted: int = 0
    ttls_set: int = 0


@dataclass
class ForgetReport:
    case_entries: int = 0
    cases_changed: int = 0
    log_entries: int = 0
    threads_changed: int = 0
    pending_changed: int = 0
    appeals_changed: int = 0
    #: Messages still waiting in a thread's inbox (or parked for its opening mention) when this ran.
    waiting_changed: int = 0


def parse_user(spec: str) -> tuple[str, str]:
    """``PLATFORM:USER_ID`` -> (platform, user id); raises ValueError with a readable message."""
    platform, sep, user_id = spec.partition(":")
    if not sep or not user_id or platform not in PLATFORMS:
        raise ValueError(f"expected PLATFORM:USER_ID with PLATFORM one of {', '.join(PLATFORMS)}")
    return platform, user_id


def transcript_expired(case: Case) -> bool:
    """True when retention removed this case's transcript."""
    return len(case.transcript) == 1 and case.transcript[0].text == TRANSCRIPT_EXPIRED


#: Lines the model wrote in a turn; they may quote the member, so they go with the member's message.
MODEL_WRITTEN = frozenset({EntryKind.ASSISTANT, EntryKind.REDIRECTION, EntryKind.RISK, EntryKind.END})


def _anonymise_entries(entries: list[Entry], user_id: str) -> int:
    """Remove the user's words, id and name, and the model's words in the turns they wrote in (it may
    quote them). Engine notices, kinds, categories and times stay, so the ladder timeline survives."""
    turns = {e.turn for e in entries if e.kind is EntryKind.USER and e.author_id == user_id}
    changed = 0
    for entry in entries:
        if entry.author_id == user_id:
            if entry.kind is EntryKind.USER:
                entry.text = REMOVED_TEXT
                entry.attachments = _forget_files(entry.attachments)
            entry.author_id = None
            entry.author_name = None
            changed += 1
        elif entry.kind in MODEL_WRITTEN and entry.turn in turns and entry.text not in ("", REMOVED_TEXT):
            entry.text = REMOVED_TEXT
            changed += 1
    return changed


def _forget_files(refs: list[AttachmentRef] | None) -> list[AttachmentRef] | None:
    """A forgotten member's files: their names and links go, and the line no longer points at stored bytes;
    type, size and SHA-256 stay (they identify no one and keep the record)."""
    if not refs:
        return refs
    return [AttachmentRef(REMOVED_TEXT, r.media_type, r.size, r.sha256, None, note="removed") for r in refs]


def _file_ids(entries: list[Entry], user_id: str) -> list[str]:
    return [r.id for e in entries if e.author_id == user_id and e.kind is EntryKind.USER
            for r in e.attachments or () if r.id]


def forget_in_case(case: Case, user_id: str) -> int:
    """Anonymise one case in place; returns how many of its entries and participants changed."""
    changed = _anonymise_entries(case.transcript, user_id)
    kept: list[Participant] = [p for p in case.participants if p.id != user_id]
    changed += len(case.participants) - len(kept)
    case.participants = kept
    return changed


class Retention:
    """Applies the retention periods and forgets users; ``client`` is the store's redis client."""

    def __init__(self, client: Any, *, case_retention_days: float, idle_ttl_days: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.case_retention_s = case_retention_days * DAY_S
        self.idle_ttl_ms = int(idle_ttl_days * DAY_S * 1000)
        self.ended_ttl_ms = int(self.case_retention_s * 1000)
        self._clock = clock
        self._swap_case = client.register_script(_SWAP_CASE_BODY)
        self._swap_field = client.register_script(_SWAP_HASH_FIELD)
        self._swap_entries = client.register_script(_SWAP_LOG_ENTRIES)
        self._swap_items = client.register_script(_SWAP_LIST_ITEMS)
        self._expire_thread = client.register_script(_EXPIRE_THREAD)

    async def purge(self) -> PurgeReport:
        report = PurgeReport()
        try:
            await self._expire_transcripts(report)
            await self._expire_threads(report)
        except RedisError as exc:
            raise StoreUnavailable(f"purge failed: {type(exc).__name__}") from exc
        log.info("purge: %s transcripts expired, %s threads deleted, %s TTLs set",
                 report.transcripts_expired, report.threads_deleted, report.ttls_set)
        return report

    async def forget_user(self, platform: str, user_id: str) -> ForgetReport:
        if platform not in PLATFORMS or not user_id:
            raise ValueError("unknown platform or empty user id")
        report = ForgetReport()
        try:
            await self._forget_in_cases(platform, user_id, report)
            await self._forget_in_pending(platform, user_id, report)
            await self._forget_in_logs(platform, user_id, report)
            await self._forget_in_waiting(platform, user_id, report)
            report.appeals_changed = await forget_member(
                self.client, await self.client.smembers(keys.COMMUNITIES), user_id,
                self.scan(f"{keys.PREFIX}:{{c:*}}:appeals:*"))
        except RedisError as exc:
            raise StoreUnavailable(f"forget-user failed: {type(exc).__name__}") from exc
        log.info("forget-user %s: %s case entries in %s cases, %s log entries in %s threads", platform,
                 report.case_entries, report.cases_changed, report.log_entries, report.threads_changed)
        return report

    # --- scanning --------------------------------------------------------------------------------

    async def scan(self, match: str) -> AsyncIterator[str]:
        """Every key matching ``match``; on Redis Cluster every primary is scanned."""
        if isinstance(self.client, RedisCluster):
            iterator = self.client.scan_iter(match=match, count=500, target_nodes=RedisCluster.PRIMARIES)
        else:
            iterator = self.client.scan_iter(match=match, count=500)
        seen: set[str] = set()
        async for key in iterator:
            if key not in seen:  # SCAN may return a key twice
                seen.add(key)
                yield key

    async def _case_keys(self, community: str, max_score: float | str = "+inf") -> list[str]:
        ids = await self.client.zrangebyscore(keys.case_index(community), "-inf", max_score)
        return [keys.case(community, int(i)) for i in ids]

    # --- retention -------------------------------------------------------------------------------

    async def _expire_transcripts(self, report: PurgeReport) -> None:
        now = self._clock()
        cutoff = now - self.case_retention_s
        for community in sorted(await self.client.smembers(keys.COMMUNITIES)):
            for key in await self._case_keys(community, cutoff):
                if await self._rewrite_case(key, lambda case: _expire(case, now), marker=f"{now:.3f}"):
                    report.transcripts_expired += 1

    async def _expire_threads(self, report: PurgeReport) -> None:
        now_ms = int(self._clock() * 1000)
        prefix = f"{keys.PREFIX}:{{t:"
        async for key in self.scan(f"{prefix}*}}:state"):
            await self._expire_one(key[len(prefix):-len("}:state")], now_ms, report)
        async for key in self.scan(f"{prefix}*}}:log"):  # a log whose state is gone
            thread_key = key[len(prefix):-len("}:log")]
            if not await self.client.exists(keys.state(thread_key)):
                await self._expire_one(thread_key, now_ms, report)

    async def _expire_one(self, thread_key: str, now_ms: int, report: PurgeReport) -> None:
        last = await self._last_log_activity(thread_key, now_ms / 1000)
        result = int(await self._expire_thread(
            keys=[keys.state(thread_key), keys.log(thread_key), keys.remind(thread_key), keys.files(thread_key),
                  keys.files_order(thread_key)],
            args=[now_ms, self.idle_ttl_ms, self.ended_ttl_ms, f"{last:.3f}"]))
        if result == 2:
            report.threads_deleted += 1
        elif result == 1:
            report.ttls_set += 1

    async def _last_log_activity(self, thread_key: str, default: float) -> float:
        """The time of the thread's last log entry (0 when it has none and a state hash to go by)."""
        raw = await self.client.lindex(keys.log(thread_key), -1)
        if raw is None:
            return 0.0 if await self.client.exists(keys.state(thread_key)) else default
        try:
            return float(Entry.from_json(raw).at)
        except (ValueError, TypeError, KeyError):
            return default

    # --- forgetting ------------------------------------------------------------------------------

    async def _forget_in_cases(self, platform: str, user_id: str, report: ForgetReport) -> None:
        def edit(case: Case) -> int:
            return forget_in_case(case, user_id) if case.platform == platform else 0

        for community in sorted(await self.client.smembers(keys.COMMUNITIES)):
            for key in await self._case_keys(community):
                changed = await self._rewrite_case(key, edit)
                if changed:
                    report.cases_changed += 1
                    report.case_entries += changed

    async def _forget_in_pending(self, platform: str, user_id: str, report: ForgetReport) -> None:
        async for key in self.scan(f"{keys.PREFIX}:{{t:{platform}:*}}:pending"):
            for _ in range(_RETRIES):
                bodies = await self.client.hgetall(key)
                missed = 0
                for field, body in bodies.items():
                    case = Case.from_json(body)
                    if forget_in_case(case, user_id) == 0:
                        continue
                    if await self._swap_field(keys=[key], args=[field, body, case.to_json()]):
                        report.pending_changed += 1
                    else:
                        missed += 1
                if not missed:
                    break

    async def _forget_in_logs(self, platform: str, user_id: str, report: ForgetReport) -> None:
        async for key in self.scan(f"{keys.PREFIX}:{{t:{platform}:*}}:log"):
            changed = 0
            for _ in range(_RETRIES):
                raws = await self.client.lrange(key, 0, -1)
                entries = [Entry.from_json(raw) for raw in raws]
                before = [e.to_json() for e in entries]
                await self._forget_stored_files(key, _file_ids(entries, user_id))
                _anonymise_entries(entries, user_id)
                swaps: list[str | int] = []
                for index, (raw, old, entry) in enumerate(zip(raws, before, entries, strict=True)):
                    if entry.to_json() != old:
                        swaps.extend([index, raw, entry.to_json()])
                if not swaps:
                    break
                thread_key = key[len(f"{keys.PREFIX}:{{t:"):-len("}:log")]
                missed = int(await self._swap_entries(keys=[key, keys.state(thread_key)], args=swaps))
                changed += len(swaps) // 3 - missed
                if not missed:
                    break
            if changed:
                report.threads_changed += 1
                report.log_entries += changed

    async def _forget_stored_files(self, log_key: str, ids: list[str]) -> None:
        """The member's files kept in the thread's file store (``log_key``: the thread's log)."""
        if not ids:
            return
        thread_key = log_key[len(f"{keys.PREFIX}:{{t:"):-len("}:log")]
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(keys.files(thread_key), *ids)
        for file_id in ids:
            pipe.lrem(keys.files_order(thread_key), 0, file_id)
        await pipe.execute()

    async def _forget_in_waiting(self, platform: str, user_id: str, report: ForgetReport) -> None:
        """Messages of theirs not answered yet: their text becomes ``REMOVED_TEXT`` and their name their id;
        the id stays, because the answer still goes to them (the entry's id too: the turn owner checks it)."""
        for suffix in ("inbox", "parked"):
            async for key in self.scan(f"{keys.PREFIX}:{{t:{platform}:*}}:{suffix}"):
                for _ in range(_RETRIES):
                    swaps: list[str | int] = []
                    thread_key = key[len(f"{keys.PREFIX}:{{t:"):-len(f"}}:{suffix}")]
                    for index, raw in enumerate(await self.client.lrange(key, 0, -1)):
                        changed = _forget_waiting(thread_key, raw, user_id)
                        if changed is not None:
                            swaps.extend([index, raw, changed])
                    if not swaps:
                        break
                    missed = int(await self._swap_items(keys=[key], args=swaps))
                    report.waiting_changed += len(swaps) // 3 - missed
                    if not missed:
                        break

    async def _rewrite_case(self, key: str, edit: Callable[[Case], int], marker: str = "") -> int:
        """Apply ``edit`` (returns how much it changed) to the case body at ``key`` with compare-and-set."""
        for _ in range(_RETRIES):
            body = await self.client.hget(key, "body")
            if body is None:
                return 0
            case = Case.from_json(body)
            changed = edit(case)
            if not changed:
                return 0
            before = set(index_keys(Case.from_json(body)))
            left = sorted(before - set(index_keys(case)))
            args = [body, case.to_json(), "transcript_expired", marker, summary_json(case), key.rsplit(":", 1)[1]]
            if await self._swap_case(keys=[key, *left], args=args):
                return changed
        log.warning("case %s kept changing; left for the next run", key)
        return 0


def _forget_waiting(thread_key: str, raw: str, user_id: str) -> str | None:
    """A waiting message with ``user_id``'s text removed and their name replaced by their id, or None when it
    is not theirs (or not readable)."""
    try:
        entry = InboxEntry.parse(ThreadRef.from_key(thread_key), raw)
    except ValueError:
        return None
    message = entry.message
    if message.author.id != user_id or (message.text == REMOVED_TEXT and message.author.name == user_id):
        return None
    entry.message = dataclasses.replace(message, text=REMOVED_TEXT, author=Author(user_id, user_id))
    return entry.stored()


def _expire(case: Case, now: float) -> int:
    if not case.transcript or transcript_expired(case):
        return 0
    case.transcript = [Entry(EntryKind.NOTICE, TRANSCRIPT_EXPIRED, at=now)]
    return 1
