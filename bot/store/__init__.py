"""The conversation store: the roles the core depends on, each a small protocol, and their result types.

``Store`` holds the parts together; ``bot.store.redis_store.build_store`` builds them over one Redis
connection (a server, a Redis Cluster or the in-process Redis, fakeredis); the same contract tests run on
all three.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from bot.model import Usage
from bot.types import Case, Entry, ThreadRef, ThreadState
from bot.usage import TokenTotals

if TYPE_CHECKING:
    from bot.limits import LimitCheck, LimitHit, SpendCount
    from bot.store.inbox_entry import InboxEntry, UnknownThread


class IngestStatus(enum.StrEnum):
    #: This process now owns the thread: ``start`` holds the lease and the inbox head.
    OWNER = "owner"
    #: Accepted behind other messages; the thread's owner (this process or another) answers it.
    QUEUED = "queued"
    DUPLICATE = "duplicate"
    FROZEN = "frozen"
    #: A Slack reply in a thread the bot takes no part in.
    UNKNOWN = "unknown"
    #: A Slack reply kept for a short while: it may have overtaken its thread's opening mention.
    PARKED = "parked"
    #: The thread's inbox is full: the member is asked to slow down.
    FULL = "full"
    #: The thread reached its length limit: the member is asked to start a new conversation.
    TOO_LONG = "too_long"
    #: A member's or the community's limit: the message is not stored (the member is told once per window).
    LIMITED = "limited"
    #: A limit the community answers at its reset: the message is kept, and answered then (the member is
    #: told once per window).
    HELD = "held"


class ClaimStatus(enum.StrEnum):
    OWNER = "owner"
    EMPTY = "empty"
    HELD = "held"
    BUSY = "busy"
    FROZEN = "frozen"


@dataclass
class TurnStart:
    """A thread's owner at work: its fencing token, the thread state, the history window and the inbox
    entry to answer next (``head``; ``None`` for the member's end command)."""

    token: str
    state: ThreadState
    #: The log from ``window_start`` on: the model history window (never the whole log of a long thread).
    log: list[Entry] = field(default_factory=list)
    window_start: int = 0
    head: str | None = None


@dataclass
class IngestResult:
    status: IngestStatus
    start: TurnStart | None = None
    #: Frozen thread: whether this message should get a reminder (outside the cooldown).
    remind: bool = False
    queued: int = 0
    #: Frozen thread: ends whose case a failure left unnumbered (the next event files them).
    pending_cases: int = 0
    #: Limited or held: which limit and until when.
    limit: LimitHit | None = None
    #: Held in a free thread: when the thread wakes (system clock, epoch ms; its recovery is due then).
    due_ms: int | None = None


@dataclass
class ClaimResult:
    status: ClaimStatus
    start: TurnStart | None = None
    #: Milliseconds left on another owner's lease (0: it runs out now; -1: it has no lifetime).
    lease_left_ms: int = 0


@dataclass
class TurnCommit:
    """Everything one turn changes, applied atomically together with the fencing check."""

    entries: list[Entry]
    redirects: int = 0
    warned_turn: int | None = None
    at_risk: bool = False
    crisis_posted: bool = False
    jump_url: str | None = None
    #: Set when the turn ends the thread: the case body (without number) written in the same step.
    end_case: Case | None = None
    #: The inbox entry this turn answers (removed in the same step); empty for the end command.
    entry_id: str = ""
    #: Where the history window starts from now on, when this turn moved it.
    window_start: int | None = None
    #: The turn's model usage, added to the thread's and the community's sums in the same step (also when
    #: the commit is refused: the tokens were billed); never twice when the commit is sent again.
    usage: Usage | None = None
    #: Set by the store once the usage went to sums kept in other slots (Redis Cluster), by a request of
    #: its own: the commit sent again does not send them twice.
    usage_sent_elsewhere: bool = False
    #: The member's tokens of the day and the community's spend alerts, counted with the usage.
    spend: SpendCount | None = None


class CommitStatus(enum.StrEnum):
    OK = "ok"
    ENDED = "ended"
    LOST_LOCK = "lost_lock"
    ALREADY_ENDED = "already_ended"


@dataclass
class CommitResult:
    status: CommitStatus
    end_seq: int = 0
    #: The lease kept for the next inbox entry, when there is one and the owner asked to go on.
    next: TurnStart | None = None
    #: A dropped entry: whether its member gets the frozen reminder.
    remind: bool = False
    #: The thread's usage sums after the commit added the turn's (``None``: it added none).
    totals: TokenTotals | None = None
    #: The community's daily spend passed these alert levels (80, 100) with this commit, first of all.
    spend_alerts: tuple[int, ...] = ()


class TurnInbox(Protocol):
    """A thread's inbox and its owner's lease: accepting messages, claiming a waiting inbox, the lease for
    the end command, and the due sets the recovery loop reads."""

    #: How long an owner keeps a lease without renewing it (ms).
    lease_ms: int

    async def ingest(self, entry: InboxEntry, *, reminder_cooldown: int, unknown: UnknownThread,
                     take_lease: bool, max_inbox: int, max_turns: int,
                     limits: LimitCheck | None = None) -> IngestResult: ...

    async def claim(self, thread: ThreadRef) -> ClaimResult: ...

    async def lease_for_end(self, thread: ThreadRef) -> ClaimResult: ...

    async def renew(self, thread: ThreadRef, token: str) -> bool: ...

    async def release(self, thread: ThreadRef, token: str) -> None: ...

    async def due_threads(self, platform: str, now_ms: int, limit: int,
                          shards: Iterable[int] | None = None) -> DueThreads: ...

    async def reschedule_due(self, thread: ThreadRef, at_ms: int, *, later: bool = True) -> None: ...

    async def charge_limits(self, check: LimitCheck) -> LimitHit | None: ...

    async def forget_due(self, thread: ThreadRef, score: int) -> None: ...


class DueThreads(list[tuple[str, int]]):
    """Threads whose inbox is due for a look (thread key, due time in epoch ms), and ``later``: when to look
    at each due set read again (its shard number: epoch ms), the time asked for when it held due threads
    (they may still be there) or could not be read; a set that holds nothing is not named."""

    def __init__(self) -> None:
        super().__init__()
        self.later: dict[int, int] = {}


class TurnLog(Protocol):
    """A thread's state and log: the fenced commit of a turn, inbox entries answered without one, whole
    reads, branches and reopens."""

    async def commit_turn(self, thread: ThreadRef, token: str, commit: TurnCommit, *,
                          go_on: bool = True, hold: bool = False) -> CommitResult: ...

    async def pass_on(self, thread: ThreadRef, token: str, *, go_on: bool = True) -> CommitResult: ...

    async def drop_head(self, thread: ThreadRef, token: str, entry_id: str, *, go_on: bool,
                        reminder_cooldown: int | None, forget: bool = False) -> CommitResult: ...

    async def read_log(self, thread: ThreadRef) -> list[Entry]: ...

    async def load(self, thread: ThreadRef) -> tuple[ThreadState, list[Entry]]: ...

    async def seed_branch(self, thread: ThreadRef, entries: list[Entry], state: ThreadState) -> bool: ...

    async def reopen(self, thread: ThreadRef, entry: Entry) -> bool: ...


class CaseStore(Protocol):
    """Numbered cases per community: ends (numbered after their commit, or later when a failure left them
    pending), moderator actions, branch links, and reading them back."""

    async def file_end_case(self, thread: ThreadRef, end_seq: int, case: Case) -> Case: ...

    async def file_pending_cases(self, thread: ThreadRef, min_age: float = 0.0) -> list[Case]: ...

    async def threads_with_pending_cases(self, *, scan: bool = False) -> list[ThreadRef]: ...

    async def file_action(self, case: Case) -> Case: ...

    async def link_branch(self, community: str, case_id: int, branch_key: str) -> None: ...

    async def get_case(self, community: str, case_id: int) -> Case | None: ...

    async def list_cases(self, community: str, offset: int, limit: int) -> list[Case]: ...

    async def count_cases(self, community: str) -> int: ...

    async def communities(self) -> list[str]: ...


@dataclass(frozen=True)
class CaseQuery:
    """Which cases of a community a list shows: one action (``end``: ended threads, with a review state or
    ``""`` for all of them), values of indexed fields (``who``: a participant's id or name, whole), and
    end times from ``since`` up to ``until`` (epoch seconds, inclusive)."""

    action: str = "end"
    review: str = ""
    reason: str = ""
    category: str = ""
    platform: str = ""
    thread: str = ""
    who: str = ""
    since: float | None = None
    until: float | None = None


class CaseIndex(Protocol):
    """A community's cases through its indexes: a page of a query and its total, summaries (no transcripts)
    and whole cases by number, review counts; what each page reads does not grow with the number of cases."""

    async def ensure_indexed(self, community: str) -> int: ...

    async def query(self, community: str, query: CaseQuery, offset: int, limit: int) -> tuple[int, list[int]]: ...

    async def summaries(self, community: str, case_ids: Iterable[int]) -> list[Case]: ...

    async def full_cases(self, community: str, case_ids: Iterable[int]) -> list[Case]: ...

    async def review_counts(self, community: str) -> dict[str, int]: ...


class EventDedupe(Protocol):
    """Platform events handled once (an edit, a command), outside the inbox's own dedupe."""

    async def first_sight(self, thread: ThreadRef, event_id: str) -> bool: ...


class ConversationNumbers(Protocol):
    """The numbered conversations of a place without threads (a Discord DM channel)."""

    async def current_conversation(self, channel: ThreadRef) -> int: ...

    async def next_conversation(self, channel: ThreadRef) -> int: ...


class NoticeOutbox(Protocol):
    """Notices queued for a platform's bot processes by surfaces without a platform connection."""

    async def push_notice(self, platform: str, payload: str, keep: int = 10_000) -> None: ...

    async def pop_notices(self, platform: str, limit: int) -> list[str]: ...


class AttachmentStore(Protocol):
    """Members' prepared files per thread, for later turns: bounded (the oldest go first), living as long as
    the thread is active; references elsewhere (log, inbox, cases) never carry the bytes."""

    async def put(self, thread: ThreadRef, files: list[tuple[str, str]]) -> list[str]: ...

    async def get(self, thread: ThreadRef, ids: list[str]) -> dict[str, str]: ...

    async def drop(self, thread: ThreadRef, ids: list[str]) -> None: ...

    async def delete_thread(self, thread: ThreadRef) -> None: ...


class StoreHealth(Protocol):
    """The connection every part shares: its request count, a health check, closing it."""

    #: Requests sent (a script call or a pipeline counts once): for benchmarks.
    round_trips: int

    async def ping(self) -> float: ...

    async def writable(self) -> None: ...

    async def aclose(self) -> None: ...


class BackoffShare(Protocol):
    """The model API's back-off, shared by every worker (epoch ms it lasts until; 0: none)."""

    async def share(self, until_ms: int) -> int:
        """Hold the back-off until ``until_ms`` (never shortened); returns the shared end."""
        ...

    async def read(self) -> int: ...

    async def wait_out(self, thread: ThreadRef, token: str, until_ms: int, tell_after_ms: int | None) -> bool:
        """Hand the thread's lease back until the back-off ends; whether its member is told now."""
        ...


@dataclass(frozen=True)
class WakeUp:
    """A word on the wake-up channel: ``due`` (a thread of ``platform`` is due at ``at_ms``, sooner than any
    other of its due set, number ``shard``), ``notice`` (queued for ``platform``), ``settings`` (saved),
    ``pending`` (an end's case waits for its number), ``backoff`` (the model API's, until ``at_ms``)."""

    kind: str
    platform: str = ""
    at_ms: int = 0
    shard: int = 0


class WakeUps(Protocol):
    """What the background loops of a process wait on instead of asking Redis every second."""

    async def listen(self, heard: Callable[[WakeUp], None], connected: Callable[[bool], None]) -> None:
        """Until cancelled: every word published to ``heard``; ``connected(True)`` each time the process
        listens (again), ``connected(False)`` when it stopped hearing (words said meanwhile are lost)."""
        ...


@dataclass(frozen=True)
class Store:
    """The store's parts, built together over one connection by the composition root."""

    inbox: TurnInbox
    turns: TurnLog
    cases: CaseStore
    case_index: CaseIndex
    dedupe: EventDedupe
    conversations: ConversationNumbers
    notices: NoticeOutbox
    health: StoreHealth
    backoff: BackoffShare
    files: AttachmentStore
    wakeups: WakeUps
