"""The conversation store: the role the engine depends on, and its result types.

``bot.store.redis_store.RedisConversationStore`` plays the role on a Redis server, a Redis Cluster or
the in-process Redis (fakeredis); the same contract tests run on all three.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from bot.types import Case, Entry, ThreadRef, ThreadState


class BeginStatus(enum.StrEnum):
    OK = "ok"
    DUPLICATE = "duplicate"
    FROZEN = "frozen"
    BUSY = "busy"


@dataclass
class TurnStart:
    status: BeginStatus
    token: str = ""
    state: ThreadState | None = None
    log: list[Entry] = field(default_factory=list)
    #: Frozen thread: whether this message should get a reminder (outside the cooldown).
    remind: bool = False
    #: Ends whose case was written by a freeze but not yet numbered (a crash in between).
    pending_cases: int = 0


@dataclass
class TurnCommit:
    """Everything one turn changes, applied atomically together with the lock check."""

    entries: list[Entry]
    redirects: int = 0
    warned_turn: int | None = None
    at_risk: bool = False
    crisis_posted: bool = False
    jump_url: str | None = None
    #: Set when the turn ends the thread: the case body (without number) written in the same step.
    end_case: Case | None = None


class CommitStatus(enum.StrEnum):
    OK = "ok"
    ENDED = "ended"
    LOST_LOCK = "lost_lock"
    ALREADY_ENDED = "already_ended"


@dataclass
class CommitResult:
    status: CommitStatus
    end_seq: int = 0


class ConversationStore(Protocol):
    """Per-thread state, the ladder counters, locks, dedupe and the case log."""

    round_trips: int

    async def begin_turn(self, thread: ThreadRef, event_id: str, *, reminder_cooldown: int) -> TurnStart: ...

    async def commit_turn(self, thread: ThreadRef, token: str, commit: TurnCommit) -> CommitResult: ...

    async def extend_lock(self, thread: ThreadRef, token: str) -> bool: ...

    async def abandon_turn(self, thread: ThreadRef, token: str, event_id: str | None) -> None: ...

    async def file_end_case(self, thread: ThreadRef, end_seq: int, case: Case) -> Case: ...

    async def claim_event(self, thread: ThreadRef, event_id: str) -> bool: ...

    async def file_pending_cases(self, thread: ThreadRef) -> list[Case]: ...

    async def load(self, thread: ThreadRef) -> tuple[ThreadState, list[Entry]]: ...

    async def seed_branch(self, thread: ThreadRef, entries: list[Entry], state: ThreadState) -> bool: ...

    async def reopen(self, thread: ThreadRef, entry: Entry) -> bool: ...

    async def file_action(self, case: Case) -> Case: ...

    async def link_branch(self, community: str, case_id: int, branch_key: str) -> None: ...

    async def get_case(self, community: str, case_id: int) -> Case | None: ...

    async def list_cases(self, community: str, offset: int, limit: int) -> list[Case]: ...

    async def count_cases(self, community: str) -> int: ...

    async def communities(self) -> list[str]: ...

    async def threads_with_pending_cases(self) -> list[ThreadRef]: ...

    async def current_conversation(self, channel: ThreadRef) -> int: ...

    async def next_conversation(self, channel: ThreadRef) -> int: ...

    async def push_notice(self, platform: str, payload: str, keep: int = 10_000) -> None: ...

    async def take_notices(self, platform: str, limit: int) -> list[str]: ...

    async def ping(self) -> float: ...

    async def aclose(self) -> None: ...
