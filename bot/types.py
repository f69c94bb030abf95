"""Core value types shared by the engine, the store, the model client and every adapter.

Adapters translate platform events into these types and the engine's ``Outcome`` back into platform
calls. Nothing here knows about Discord, Slack or Redis.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import orjson

Platform = Literal["discord", "slack", "console"]
EndReason = Literal["persistent_abuse", "user_requested"]
RiskKind = Literal["self_harm", "harm_to_others"]

#: The published category taxonomy used by the model tools, the cases and the dashboard filters.
CATEGORIES: tuple[str, ...] = (
    "child_sexual_exploitation",
    "violent_extremism",
    "weapons_of_mass_harm",
    "violent_threats",
    "harassment",
    "hate",
    "self_harm",
    "other",
)

CATEGORY_LABELS: dict[str, str] = {
    "child_sexual_exploitation": "Child sexual exploitation",
    "violent_extremism": "Violent extremism / terrorism",
    "weapons_of_mass_harm": "Weapons of mass harm",
    "violent_threats": "Violent threats",
    "harassment": "Harassment / relentless abuse",
    "hate": "Hateful conduct",
    "self_harm": "Self-harm",
    "other": "Other",
}


#: Shown to moderators on every ended-thread case filed under self-harm: such a thread is never ended now,
#: so one that was may have shut out a member at risk.
SELF_HARM_MARKER = (
    "Self-harm: this thread was ended under the self-harm category. The member may have been at risk; "
    "consider reopening it or reaching out to them."
)


def _safe_part(value: str) -> str:
    """Keep a key component free of the characters Redis hash tags and our separators rely on."""
    return value.replace("{", "(").replace("}", ")").replace(" ", "_")


@dataclass(frozen=True)
class ThreadRef:
    """Where a conversation lives.

    ``community`` is the Discord guild id (``"dm"`` for direct messages), the Slack team id, or
    ``"local"`` for the console. ``channel`` is the parent channel; ``thread`` is the Discord thread
    channel id, the Slack ``thread_ts``, or a console conversation id.
    """

    platform: Platform
    community: str
    channel: str
    thread: str

    @functools.cached_property
    def key(self) -> str:
        """A stable string naming this thread across processes (used in Redis keys and cases)."""
        parts = (self.platform, self.community, self.channel, self.thread)
        return ":".join(_safe_part(p) for p in parts)

    @classmethod
    def from_key(cls, key: str) -> ThreadRef:
        platform, community, channel, thread = key.split(":", 3)
        if platform not in ("discord", "slack", "console"):
            raise ValueError(f"unknown platform in thread key: {platform!r}")
        return cls(platform, community, channel, thread)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Author:
    """A message author as the platform names them."""

    id: str
    name: str
    is_bot: bool = False
    #: The member's role ids where the platform has roles (Discord): for limit exemptions.
    roles: tuple[str, ...] = ()


AttachmentKind = Literal["image", "pdf", "text", ""]


@dataclass(frozen=True)
class Attachment:
    """A file a member attached, as the adapter received it: the platform's claims and the downloaded bytes
    (``data``), or why the adapter could not download them (``problem``, a line the member reads)."""

    name: str
    media_type: str
    size: int
    link: str | None = None
    data: bytes | None = None
    problem: str | None = None

    @functools.cached_property
    def sha256(self) -> str:
        """SHA-256 of the downloaded bytes (empty when nothing was downloaded)."""
        return hashlib.sha256(self.data).hexdigest() if self.data is not None else ""


@dataclass(frozen=True)
class AttachmentRef:
    """What a thread keeps of an attachment beyond its bytes: name, type, size, SHA-256 and link (what cases,
    exports and the mod-log show), the key of its prepared bytes in the thread's file store (``kind`` empty
    when it was left out) and, when left out, why (``note``)."""

    name: str
    media_type: str
    size: int
    sha256: str = ""
    link: str | None = None
    kind: AttachmentKind = ""
    #: Key of the prepared content in the thread's file store ("" when there is none).
    id: str = ""
    #: The token estimate of its content block, counted in the history window.
    tokens: int = 0
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in _EMPTY}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttachmentRef:
        return cls(**{k: v for k, v in data.items() if k in _REF_FIELDS})


@dataclass(frozen=True)
class IncomingMessage:
    """A new message from a community member in a thread the bot takes part in."""

    thread: ThreadRef
    author: Author
    text: str
    message_id: str
    #: Deduplication id: Slack's ``event_id``; Discord's message id. Defaults to ``message_id``.
    event_id: str | None = None
    jump_url: str | None = None
    #: Files as the adapter downloaded them (the engine prepares and stores them at accept).
    attachments: tuple[Attachment, ...] = ()
    #: The files as the thread keeps them (no bytes): what the inbox entry carries to the turn.
    files: tuple[AttachmentRef, ...] = ()

    @property
    def dedupe_id(self) -> str:
        return self.event_id or self.message_id


@dataclass(frozen=True)
class EditedMessage:
    """A member edited one of their earlier messages in a thread."""

    thread: ThreadRef
    author: Author
    message_id: str
    new_text: str
    event_id: str | None = None
    #: The message's files as they are now (they go with the branch's first message).
    attachments: tuple[Attachment, ...] = ()

    @property
    def dedupe_id(self) -> str:
        files = "".join(f"\n{a.name}\t{a.sha256 or a.size}" for a in self.attachments)
        digest = hashlib.blake2b((self.new_text + files).encode(), digest_size=8).hexdigest()
        return self.event_id or f"edit:{self.message_id}:{digest}"


class EntryKind(enum.StrEnum):
    """What one line of a thread's log records. User and assistant lines form the model history;
    the others are the ladder timeline and the engine's own notices."""

    USER = "user"
    ASSISTANT = "assistant"
    REDIRECTION = "redirection"
    WARNING = "warning"
    RISK = "risk"
    CRISIS = "crisis"
    REFUSAL = "refusal"
    END = "end"
    REOPEN = "reopen"
    BRANCH = "branch"
    NOTICE = "notice"


LADDER_KINDS = frozenset(
    {EntryKind.REDIRECTION, EntryKind.WARNING, EntryKind.RISK, EntryKind.REFUSAL, EntryKind.END,
     EntryKind.REOPEN}
)


@dataclass
class Entry:
    """One line of a thread's log (transcript plus ladder timeline)."""

    kind: EntryKind
    text: str = ""
    at: float = field(default_factory=time.time)
    turn: int = 0
    author_id: str | None = None
    author_name: str | None = None
    message_id: str | None = None
    category: str | None = None
    #: Only user/assistant entries with ``in_history`` are sent to the model. A turn the API refused
    #: keeps its lines in the transcript for moderators but drops them from the model history.
    in_history: bool = False
    #: The member's files with this line (references, never bytes).
    attachments: list[AttachmentRef] | None = None

    def to_json(self) -> str:
        """Compact JSON without the fields left at their empty defaults (``None``, ``""``, 0, ``False``), in
        field order: what ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)`` writes, byte for byte
        for any text and any time from 0.0001 s to 10^16 s (orjson writes exponents its own way outside)."""
        data = {k: v for k, v in self.__dict__.items() if v not in _EMPTY}
        data["kind"] = self.kind.value
        if self.attachments:
            data["attachments"] = [a.to_dict() for a in self.attachments]
        return orjson.dumps(data).decode()

    @classmethod
    def from_json(cls, raw: str | bytes) -> Entry:
        return cls.from_dict(orjson.loads(raw))

    @classmethod
    def many_from_json(cls, raw: str | bytes) -> list[Entry]:
        """Entries from one JSON array of stored entries (a window sent as one string: one decode)."""
        return [cls.from_dict(data) for data in orjson.loads(raw)]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        """An entry from its decoded JSON (``data`` is used up); fields this version does not know are
        left out."""
        kind = data["kind"]
        data["kind"] = _KINDS.get(kind) or EntryKind(kind)
        if "attachments" in data:
            data["attachments"] = [AttachmentRef.from_dict(a) for a in data["attachments"] or ()] or None
        if data.keys() <= _ENTRY_FIELDS:
            return cls(**data)
        return cls(**{k: v for k, v in data.items() if k in _ENTRY_FIELDS})


#: What ``Entry.to_json`` leaves out (``0`` and ``0.0`` compare equal to ``False``).
_EMPTY: tuple[object, ...] = (None, "", False)
_ENTRY_FIELDS = frozenset(f.name for f in dataclasses.fields(Entry))
_KINDS: dict[str, EntryKind] = {k.value: k for k in EntryKind}
_REF_FIELDS = frozenset(f.name for f in dataclasses.fields(AttachmentRef))


class ThreadStatus(enum.StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


@dataclass
class LadderState:
    """The per-thread ladder counters the engine enforces."""

    redirects: int = 0
    warned: bool = False
    #: The turn in which the warning was posted; an abuse end is allowed only in a later turn.
    warned_turn: int = -1
    at_risk: bool = False
    crisis_posted: bool = False
    #: Number of turns committed so far in this thread.
    turn: int = 0


@dataclass
class ThreadState:
    """What the store knows about one thread."""

    thread: ThreadRef
    status: ThreadStatus = ThreadStatus.ACTIVE
    ladder: LadderState = field(default_factory=LadderState)
    branch_of: str | None = None
    ended_reason: str | None = None
    ended_category: str | None = None
    case_id: int | None = None
    jump_url: str | None = None


class ReplyKind(enum.StrEnum):
    ANSWER = "answer"
    WARNING = "warning"
    CRISIS = "crisis"
    FREEZE_NOTICE = "freeze_notice"
    FROZEN_REMINDER = "frozen_reminder"
    CONFIRM = "confirm"
    INFO = "info"
    ERROR = "error"
    #: In an ended shared thread: the bystanders it names may continue their part in a conversation of
    #: their own (adapters add the button or say the command).
    BRANCH_OFFER = "branch_offer"


#: What the ladder posts: new posts in the order produced, right after their answer, never behind its updates.
SAFETY_NOTICES = frozenset({ReplyKind.WARNING, ReplyKind.CRISIS, ReplyKind.FREEZE_NOTICE})


@dataclass(frozen=True)
class Reply:
    """One message the adapter should post, in order.

    ``ephemeral`` replies go only to the author where the platform can (Slack ephemeral messages,
    Discord interaction responses); elsewhere they are posted normally. ``to``: the members it is
    addressed to in a shared thread (their ids), mentioned before the text where the platform can.
    """

    kind: ReplyKind
    text: str
    ephemeral: bool = False
    to: tuple[str, ...] = ()


@dataclass(frozen=True)
class Participant:
    """A member who wrote in a thread. ``role``: their part in it, comma-separated (``starter``,
    ``redirected``, ``bystander``; see ``bot.participants``), empty in cases filed before roles were kept;
    ``redirected``: how many of their requests the model redirected."""

    id: str
    name: str
    role: str = ""
    redirected: int = 0


@dataclass
class Case:
    """A numbered moderator case. ``action`` is ``end`` for an ended thread; moderator actions
    (``reopen``, ``note``, ``mistaken``, ``delete``) are cases of their own that refer to it."""

    case_id: int
    community: str
    platform: str
    thread: str
    channel: str
    action: str = "end"
    reason: str | None = None
    category: str | None = None
    summary: str = ""
    redirect_count: int = 0
    warned: bool = False
    at_risk: bool = False
    ended_at: str = ""
    ended_by: str = ""
    participants: list[Participant] = field(default_factory=list)
    transcript: list[Entry] = field(default_factory=list)
    jump_url: str | None = None
    branch_of: str | None = None
    branches: list[str] = field(default_factory=list)
    refers_to: int | None = None
    moderator: str | None = None
    note: str | None = None
    actions: list[int] = field(default_factory=list)
    #: Idempotency key of the end that produced this case (``<thread key>#<end number>``).
    case_ref: str = ""

    @property
    def self_harm_marker(self) -> str | None:
        """What moderators are told about an end filed under self-harm (older versions allowed it)."""
        if self.action != "end" or self.category != "self_harm":
            return None
        return SELF_HARM_MARKER

    @property
    def ladder_timeline(self) -> list[Entry]:
        return [e for e in self.transcript if e.kind in LADDER_KINDS]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["transcript"] = [json.loads(e.to_json()) for e in self.transcript]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Case:
        data = dict(data)
        data["participants"] = [Participant(**{k: v for k, v in p.items() if k in _PARTICIPANT_FIELDS})
                                for p in data.get("participants", [])]
        data["transcript"] = [Entry.from_dict(dict(e)) for e in data.get("transcript", [])]
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_json(cls, raw: str | bytes) -> Case:
        return cls.from_dict(json.loads(raw))


_PARTICIPANT_FIELDS = frozenset(f.name for f in dataclasses.fields(Participant))


def iso(ts: float) -> str:
    """An ISO 8601 UTC timestamp for epoch seconds."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


@dataclass
class Outcome:
    """What the engine decided for one event; the adapter carries it out and decides nothing."""

    thread: ThreadRef
    replies: list[Reply] = field(default_factory=list)
    status: ThreadStatus = ThreadStatus.ACTIVE
    #: The event was already handled (platform redelivery): post nothing.
    duplicate: bool = False
    #: Accepted into the thread's inbox; another process answers it through its platform's delivery sink.
    queued: bool = False
    #: Not addressed to the bot (a Slack reply in a thread it takes no part in): post nothing.
    ignored: bool = False
    #: The message arrived in a thread that was already ended (no model call was made).
    frozen: bool = False
    model_called: bool = False
    #: Set when this event ended the thread: the filed case (post it to the mod-log channel).
    case: Case | None = None
    #: Set when an edit opened a branch: the new thread the conversation continues in.
    branch: ThreadRef | None = None
    #: Set when a moderator action (reopen) was filed as its own case.
    action: Case | None = None
    #: The answer text was already delivered through the stream sink given to the engine.
    streamed: bool = False
    #: Set when this turn first flagged risk and the community wants risk alerts: the alert's case
    #: (post it privately to the mod-log).
    alert: Case | None = None
    #: Set when this turn took the community's daily spend past 80% or 100% of its ceiling: one mod-log
    #: line each (once per level and day, across workers).
    spend_alerts: list[str] = field(default_factory=list)
    #: The turn's commit kept the thread's lease for the posts still to be made (its answer, warning, crisis
    #: resources, freeze notice): the pipeline hands the thread on only once they are out.
    held: bool = False

    @property
    def has_safety_notice(self) -> bool:
        return any(r.kind in SAFETY_NOTICES for r in self.replies)

    @property
    def ended_now(self) -> bool:
        return self.case is not None


@dataclass
class ThreadNotice:
    """Something to carry out in a thread from another process (a dashboard reopen for the Discord bot)."""

    thread: ThreadRef
    action: str
    replies: list[Reply]
    case_id: int | None = None
    at: float = field(default_factory=time.time)
    #: Set when the notice is for one member (an appeal decision): platforms address them in the thread.
    member: str | None = None

    def to_json(self) -> str:
        replies = [{"kind": r.kind.value, "text": r.text, "ephemeral": r.ephemeral} for r in self.replies]
        return json.dumps({"thread": self.thread.key, "action": self.action, "case_id": self.case_id,
                           "at": self.at, "member": self.member, "replies": replies}, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> ThreadNotice:
        data = json.loads(raw)
        replies = [Reply(ReplyKind(r["kind"]), r["text"], bool(r.get("ephemeral"))) for r in data["replies"]]
        return cls(ThreadRef.from_key(data["thread"]), data["action"], replies, data.get("case_id"),
                   float(data.get("at", 0)), data.get("member") or None)


class TextSink(Protocol):
    """Receives the answer text while the model streams it (adapters edit a message with it)."""

    async def __call__(self, delta: str) -> None: ...


#: Creates the platform thread a branch continues in; called by the engine with the branch's first
#: (edited) text, returns where the new conversation lives.
BranchOpener = Callable[[str], Awaitable[ThreadRef]]
