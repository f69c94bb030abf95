"""What members saw, and when: every change of the Slack stand-in's bot messages, timed.

Every handler of the stand-in that shows text (``chat.postMessage``, ``chat.update``, the streaming methods)
writes ``SlackStandin.bot_messages[ts] = text``, and deleting a message removes its ts. A ``TextTimeline``
is that dict, recording each write and removal with ``time.monotonic()``, so what a method did to the
visible text is captured whichever method did it:

    timeline = TextTimeline()
    standin = SlackStandin(bot_messages=timeline)
    ...
    timeline.visible_at({"t1": "the whole answer"})   # {"t1": when it was first shown in full, or None}
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

K = TypeVar("K")
_MISSING: Any = object()


@dataclass(frozen=True)
class Change:
    """At ``at`` (``time.monotonic()``), the message ``ts`` showed ``text`` (None: it was deleted)."""

    at: float
    ts: str
    text: str | None


class TextTimeline(dict[str, str]):
    """``bot_messages`` that remembers every change. Whatever mutates it (item assignment, ``update``,
    ``setdefault``, ``del``, ``pop``) is recorded."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.changes: list[Change] = []

    # --- recording ---------------------------------------------------------------------------

    def __setitem__(self, ts: str, text: str) -> None:
        super().__setitem__(ts, text)
        self.changes.append(Change(self.clock(), ts, text))

    def __delitem__(self, ts: str) -> None:
        super().__delitem__(ts)
        self.changes.append(Change(self.clock(), ts, None))

    def update(self, *args: Any, **kwargs: Any) -> None:
        for ts, text in dict(*args, **kwargs).items():
            self[ts] = text

    def setdefault(self, ts: str, text: str = "") -> str:
        if ts not in self:
            self[ts] = text
        return self[ts]

    def pop(self, ts: str, default: Any = _MISSING) -> Any:
        if ts in self:
            text = self[ts]
            del self[ts]
            return text
        if default is _MISSING:
            raise KeyError(ts)
        return default

    def popitem(self) -> tuple[str, str]:
        ts = next(reversed(self))
        return ts, self.pop(ts)

    def clear(self) -> None:
        for ts in list(self):
            del self[ts]

    # --- reading -----------------------------------------------------------------------------

    def history(self, ts: str) -> list[Change]:
        return [c for c in self.changes if c.ts == ts]

    def holding(self, needle: str) -> list[str]:
        """The messages that show ``needle`` now (deleted ones do not)."""
        return [ts for ts, text in self.items() if needle in text]

    def first_showing(self, needle: str) -> Change | None:
        """The first change after which some message showed ``needle``."""
        return next((c for c in self.changes if c.text is not None and needle in c.text), None)

    def visible_at(self, texts: Mapping[K, str]) -> dict[K, float | None]:
        """For each key, when its text was first shown in full by some message (None: never)."""
        found: dict[K, float | None] = dict.fromkeys(texts)
        pending = dict(texts)
        for change in self.changes:
            if change.text is None or not pending:
                continue
            for key in [k for k, wanted in pending.items() if wanted in change.text]:
                found[key] = change.at
                del pending[key]
        return found

    def settled_at(self, ts: str) -> float | None:
        """When ``ts`` last changed (None: never shown)."""
        return next((c.at for c in reversed(self.changes) if c.ts == ts), None)

    def writes(self, keys: Iterable[str] | None = None) -> int:
        """Changes recorded (of the given messages only, when named)."""
        if keys is None:
            return len(self.changes)
        wanted = set(keys)
        return sum(1 for c in self.changes if c.ts in wanted)
