"""The inbox record: one accepted message waiting in a thread's inbox, as the store keeps it.

Stored as ``<entry id>\\t<JSON>`` in ``tg:{t:T}:inbox`` (and ``:parked``); the accepting script appends
``InboxEntry.stored()``, the turn owner and retention read it back with ``InboxEntry.parse``. A message a
limit keeps to be answered when it resets is stored marked, ``<entry id>\\t!<JSON>`` (``held``).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from bot.types import AttachmentRef, Author, IncomingMessage, ThreadRef


class UnknownThread(enum.StrEnum):
    """What accepting a message does when the bot takes no part in its thread yet (the values are what the
    accepting script reads)."""

    #: Take it: this message starts the bot's part (a mention, a DM, a command, the console).
    ACCEPT = ""
    #: Leave it: a Slack reply in a thread the bot is not in.
    IGNORE = "1"
    #: Keep it a short while: a young Slack reply that may have overtaken its thread's opening mention.
    PARK = "park"


@dataclass(frozen=True)
class ReplyTarget:
    """Where the answer to an inbox entry goes, beyond the thread itself: the member (for notices only
    they see) and, where the platform has one, the interaction token to answer through."""

    user: str
    interaction: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class InboxEntry:
    """One accepted message waiting in a thread's inbox (stored as JSON in Redis)."""

    id: str
    message: IncomingMessage
    target: ReplyTarget
    at: float = field(default_factory=time.time)
    #: Kept by a limit to be answered when it resets: its limits are checked again before its turn.
    held: bool = False

    @property
    def thread(self) -> ThreadRef:
        return self.message.thread

    def to_json(self) -> str:
        m, t = self.message, self.target
        data: dict[str, Any] = {"a": m.author.id, "n": m.author.name, "x": m.text, "m": m.message_id,
                                "e": m.event_id, "j": m.jump_url, "u": t.user, "i": t.interaction,
                                "t": t.extra or None, "at": round(self.at, 3),
                                "f": [f.to_dict() for f in m.files] or None}
        return orjson.dumps({k: v for k, v in data.items() if v is not None}).decode()

    def stored(self) -> str:
        """The stored form ``parse`` reads (what the ingest script appends: id, a tab, the JSON)."""
        return f"{self.id}\t{'!' if self.held else ''}{self.to_json()}"

    @classmethod
    def parse(cls, thread: ThreadRef, raw: str) -> InboxEntry:
        """An entry from its stored form, ``<id>\\t<json>``; ``ValueError`` when it is not one."""
        entry_id, sep, body = raw.partition("\t")
        if not sep:
            raise ValueError("an inbox entry without an id")
        held = body.startswith("!")
        try:
            d = orjson.loads(body[1:] if held else body)
            files = tuple(AttachmentRef.from_dict(f) for f in d.get("f") or ())
            message = IncomingMessage(thread, Author(str(d["a"]), str(d.get("n") or d["a"])), str(d["x"]),
                                      message_id=str(d["m"]), event_id=d.get("e"), jump_url=d.get("j"), files=files)
            target = ReplyTarget(str(d.get("u") or d["a"]), d.get("i"), dict(d.get("t") or {}))
        except (AttributeError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            raise ValueError("a malformed inbox entry") from exc
        return cls(entry_id, message, target, float(d.get("at") or 0.0), held)

