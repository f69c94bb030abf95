"""The history windows this process last read, so a turn start reads only what was appended since.

A thread's turn-start script (``scripts.inbox.INGEST`` and ``CLAIM``, ``scripts.turns.COMMIT_TURN`` and
``DROP_HEAD`` for the next turn) is told what the caller holds: the log from index ``start`` up to ``end``
(exclusive), read at log generation ``gen``, and the entry at ``end - 1`` itself. When that is still the log
(the same generation, the log at least that long, the same entry at ``end - 1``) and the window starts
inside it, the script sends only the entries from ``end`` on; otherwise the whole window, as it always did.
So whatever happened in between (turns another process committed, a reopen, the window start moving, entries
rewritten in place by forget-user, which moves the generation on, the thread deleted and begun anew, a Redis
restart that lost the last writes), a turn sees the log Redis holds: the cache saves reading and decoding,
never decides.

The windows are kept for the threads used most recently, at most ``max_threads`` of them.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from bot.errors import StoreUnavailable
from bot.types import Entry


@dataclass(frozen=True)
class HeldWindow:
    """The log of one thread from ``start`` up to ``end`` (exclusive), as read at generation ``gen``."""

    start: int
    end: int
    gen: str
    #: The stored entry at ``end - 1``, byte for byte: the script compares it with what Redis holds there.
    last: str
    entries: tuple[Entry, ...]

    @property
    def have(self) -> str:
        """What the turn-start scripts are told the caller holds (``"<start> <end> <gen>"``)."""
        return f"{self.start} {self.end} {self.gen}"


class WindowCache:
    """The latest window of each of the ``max_threads`` threads used most recently (0: none kept).

    Entries are shared between the turns of a thread: they must not be changed in place.
    """

    def __init__(self, max_threads: int) -> None:
        self.max_threads = max_threads
        self._held: OrderedDict[str, HeldWindow] = OrderedDict()
        #: Turn starts that read only the entries after what was held, and those that read the whole window.
        self.hits = 0
        self.full = 0

    def __len__(self) -> int:
        return len(self._held)

    def held(self, thread_key: str) -> HeldWindow | None:
        return self._held.get(thread_key)

    def window(self, thread_key: str, held: HeldWindow | None, tail: str, last: str | None, win: int, base: int,
               length: int, gen: str) -> list[Entry]:
        """The window from a turn-start reply: ``tail`` holds the entries from ``base`` up to the last one,
        ``last`` the last one (``None`` when it is not after ``base``). ``base`` is the window start
        ``win``, or the end of ``held`` when the script found it still valid. Keeps the new window."""
        fresh = Entry.many_from_json(tail)
        if last is not None:
            fresh.append(Entry.from_json(last))
        if base != win:  # the entries after what we hold
            if held is None or held.end != base or not held.start <= win <= base:  # never sent so: read anew
                self._held.pop(thread_key, None)
                raise StoreUnavailable(f"thread {thread_key}: a window sent from {base} fits nothing held")
            entries = held.entries[win - held.start:] + tuple(fresh)
            last = held.last if last is None else last
            self.hits += 1
        else:
            entries = tuple(fresh)
            self.full += 1
        self._keep(thread_key, None if last is None or not self.max_threads else
                   HeldWindow(win, length, gen, last, entries))
        return list(entries)

    def _keep(self, thread_key: str, window: HeldWindow | None) -> None:
        if window is None:
            self._held.pop(thread_key, None)
            return
        self._held[thread_key] = window
        self._held.move_to_end(thread_key)
        while len(self._held) > self.max_threads:
            self._held.popitem(last=False)
