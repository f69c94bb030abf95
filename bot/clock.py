"""The time the limits count in: the system clock, or one a test moves (a file holding an offset in
seconds, read again when it changes), so worker processes can be taken to the next UTC day without
sleeping."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Epoch seconds."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class OffsetFileClock:
    """The system clock moved by the number of seconds in ``path`` (missing or unreadable: 0)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: float | None = None
        self._offset = 0.0

    def now(self) -> float:
        try:
            changed = os.stat(self.path).st_mtime
        except OSError:
            return time.time()
        if changed != self._seen:
            try:
                self._offset = float(self.path.read_text(encoding="utf-8").strip() or 0)
            except (OSError, ValueError):
                self._offset = 0.0
            self._seen = changed
        return time.time() + self._offset
