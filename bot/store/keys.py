"""The Redis key schema, in one place.

Thread keys share the hash tag ``{t:<thread key>}`` so one thread's keys live in one cluster slot and
every per-thread Lua script works on Redis Cluster. Community keys share ``{c:<community>}``.

Per thread (``T`` = ``ThreadRef.key``):
    tg:{t:T}:state        hash   status, redirects, warned, warned_turn, at_risk, crisis_posted, turn,
                                 end_seq, case_id, branch_of, ended_reason, ended_category,
                                 platform, community, channel, created_at, updated_at, jump_url,
                                 known (a bot thread), fence (last lease token handed out),
                                 win (log index where the model's history window starts),
                                 log_gen (moves on when log entries are rewritten in place),
                                 wake (epoch ms: when a thread whose head waits, for a limit or the
                                 model API's back-off, is taken up again)
    tg:{t:T}:log          list   Entry JSON, oldest first (transcript and ladder timeline)
    tg:{t:T}:lock         string the lease: fencing token of the thread's owner (PX TTL, seconds)
    tg:{t:T}:inbox        list   accepted messages not yet answered, ``<entry id>\t<InboxEntry JSON>`` (a
                                 message a limit kept: ``<entry id>\t!<InboxEntry JSON>``)
    tg:{t:T}:parked       list   Slack replies that overtook their thread's opening mention (short TTL)
    tg:{t:T}:seen:<id>    string platform event already handled (EX TTL)
    tg:{t:T}:remind       string a frozen-thread reminder was posted (EX cooldown)
    tg:{t:T}:pending      hash   end_seq -> case JSON written by the freeze, not yet numbered
    tg:{t:T}:current      string number of the conversation now running in a channel without threads
                                 (a Discord DM): conversation n lives at thread key ``T~n``
    tg:{t:T}:limited      hash   limit kind -> end of the window the thread's member was last told about
    tg:{t:T}:busy         string the member was told the message waits for the model API's back-off
    tg:{t:T}:files        hash   members' prepared files by id (``bot.attachments``), bounded, idle TTL
    tg:{t:T}:files:order  list   their ids, oldest first (the oldest go first beyond the bound)

Per community (``C``):
    tg:{c:C}:seq          string last case number
    tg:{c:C}:case:<n>     hash   body (Case JSON; its case_id is taken from the key), ref, created
    tg:{c:C}:case:<n>:links   list  thread keys of branches opened from this case's thread
    tg:{c:C}:case:<n>:actions list  numbers of later action cases (reopen, note, mistaken) on it
    tg:{c:C}:index        zset   case number scored by creation time (epoch seconds)
    tg:{c:C}:refs         hash   case_ref -> case number (idempotent filing)
    tg:{c:C}:usage:<day>:members      hash  the members' day, what a limit check reads (2 days' TTL):
                                 ``<member>`` -> tokens used that UTC day; ``<member> r`` -> the member's
                                 message bucket (µs when it is full again); ``$ spent`` -> the
                                 community's spend that day as of its last commit (millionths of US$)
    tg:{c:C}:usage:<day>:alerts       hash  spend alerts posted that day (80, 100)
    tg:{c:C}:case:<n>     ... its ``summary`` field: the case JSON without its transcript (list pages)
    tg:{c:C}:ix:<a>       zset   numbers of the cases of action ``a`` (end, note, ...) scored by end time
                                 (``bot.store.case_index``: epoch seconds * 2^21 + number)
    tg:{c:C}:ix:<a>:<dimension>:<value>   zset   the same, of one reason, category, platform, thread or
                                 participant (``who``: a participant's id and name, casefolded)
    tg:{c:C}:ix:end:review:<state>        zset   ended threads by review state (unreviewed, in_review,
                                 reviewed, and awaiting: the first two)
    tg:{c:C}:ix:built     string the index version the community's existing cases were indexed at

Due inboxes (``P`` = platform, ``i`` = shard ``crc32(T) % DUE_SHARDS``, spread over cluster slots):
    tg:{due:P:i}          zset   thread key scored by when to look at its inbox (epoch ms): the
                                 recovery loop takes over threads whose owner's lease ran out

Threads whose ends wait for case numbers (``i`` = ``crc32(T) % DUE_SHARDS``), read by the loop that files them:
    tg:{pend:i}           set    thread keys with entries in their ``pending`` hash

Global:
    tg:communities        set    every community that has cases
    tg:outbox:<platform>  list   ThreadNotice JSON for that platform's bot process, oldest first
    tg:wake               pub/sub channel: what the background loops of every process wait for
                                 (``bot.store.wakeups``): ``due <platform> <shard> <ms>`` (a due set's first
                                 score moved earlier), ``notice <platform>``, ``settings``, ``pending``
                                 (an end's case waits for its number), ``backoff <ms>``, ``echo``
"""

from __future__ import annotations

import zlib

PREFIX = "tg"
DUE_SHARDS = 16
COMMUNITIES = f"{PREFIX}:communities"
#: What the readiness check writes (and lets expire at once) to learn whether Redis takes writes.
WRITE_PROBE = f"{PREFIX}:write-probe"
#: The channel every process's background loops wait on (a channel, not a key: no slot on Redis Cluster,
#: where a message published on any node reaches the subscribers of every node).
WAKE = f"{PREFIX}:wake"


def outbox(platform: str) -> str:
    return f"{PREFIX}:outbox:{platform}"


def thread_tag(thread_key: str) -> str:
    return f"{PREFIX}:{{t:{thread_key}}}"


def state(thread_key: str) -> str:
    return f"{thread_tag(thread_key)}:state"


def log(thread_key: str) -> str:
    return f"{thread_tag(thread_key)}:log"


def lock(thread_key: str) -> str:
    return f"{thread_tag(thread_key)}:lock"


def inbox(thread_key: str) -> str:
    return f"{thread_tag(thread_key)}:inbox"


def parked(thread_key: str) -> str:
    return f"{thread_tag(thread_key)}:parked"


def due_shard(platform: str, shard: int) -> str:
    return f"{PREFIX}:{{due:{platform}:{shard}}}"


def pending_shard(shard: int) -> str:
    return f"{PREFIX}:{{pend:{shard}}}"


def pending_index(thread_key: str) -> str:
    """The set of threads with cases waiting for their numbers that this thread joins when it ends."""
    return pending_shard(zlib.crc32(thread_key.encode()) % DUE_SHARDS)


def due(thread_key: str) -> str:
    """The due set a thread's inbox is registered in (its platform's shard for this thread)."""
    platform = thread_key.split(":", 1)[0]
    return due_shard(platform, zlib.crc32(thread_key.encode()) % DUE_SHARDS)


def seen(thread_key: str, event_id: str) -> str:
    return f"{thread_tag(thread_key)}:seen:{event_id}"


def remind(thread_key: str) -> str:
    return f"{thread_tag(thread_key)}:remind"


def pending(thread_key: str) -> str:
    return f"{thread_tag(thread_key)}:pending"


def current(thread_key: str) -> str:
    return f"{thread_tag(thread_key)}:current"


def busy(thread_key: str) -> str:
    return f"{thread_tag(thread_key)}:busy"


def limited(thread_key: str) -> str:
    return f"{thread_tag(thread_key)}:limited"


def members_day(community: str, day: str) -> str:
    """What the community's limits count that UTC day (``bot.store.scripts.limits``)."""
    return f"{community_tag(community)}:usage:{day}:members"


def spend_alerts(community: str, day: str) -> str:
    return f"{community_tag(community)}:usage:{day}:alerts"


def files(thread_key: str) -> str:
    return f"{thread_tag(thread_key)}:files"


def files_order(thread_key: str) -> str:
    return f"{thread_tag(thread_key)}:files:order"


def community_tag(community: str) -> str:
    return f"{PREFIX}:{{c:{community}}}"


def case_seq(community: str) -> str:
    return f"{community_tag(community)}:seq"


def case(community: str, case_id: int) -> str:
    return f"{community_tag(community)}:case:{case_id}"


def case_index(community: str) -> str:
    return f"{community_tag(community)}:index"


def case_refs(community: str) -> str:
    return f"{community_tag(community)}:refs"


def case_links(community: str, case_id: int) -> str:
    return f"{case(community, case_id)}:links"


def case_actions(community: str, case_id: int) -> str:
    return f"{case(community, case_id)}:actions"


def case_index_key(community: str, action: str, dimension: str = "", value: str = "") -> str:
    """One index of the community's cases (``tg:{c:C}:ix:<action>[:<dimension>:<value>]``)."""
    base = f"{community_tag(community)}:ix:{action}"
    if not dimension:
        return base
    safe = value.replace("{", "(").replace("}", ")")
    return f"{base}:{dimension}:{safe}"


def case_index_built(community: str) -> str:
    return f"{community_tag(community)}:ix:built"


def case_index_scratch(community: str, token: str) -> str:
    """A short-lived key in the community's slot where a query intersects indexes."""
    return f"{community_tag(community)}:ix:tmp:{token}"
