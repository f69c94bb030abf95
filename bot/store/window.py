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

The windows are kept for the threads used most recently, at most ``max_threads`` of them and at most
``max_bytes`` of memory in all (each window's size is estimated from its entries: ``window_bytes``).
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from dataclasses import dataclass, fields

from bot.errors import StoreUnavailable
from bot.types import Entry

#: Memory of one ``Entry`` beside its strings: the object, its attribute dict and the float.
_ENTRY_BYTES = 360
_ENTRY_STRINGS = tuple(f.name for f in fields(Entry) if f.name not in ("kind", "at", "turn", "in_history"))


def entry_bytes(entry: Entry) -> int:
    """An entry's memory, estimated (CPython: a string's size holds its characters at their width)."""
    return _ENTRY_BYTES + sum(sys.getsizeof(value) for name in _ENTRY_STRINGS
                              if isinstance(value := getattr(entry, name), str))


@dataclass(frozen=True)
class HeldWindow:
    """The log of one thread from ``start`` up to ``end`` (exclusive), as read at generation ``gen``."""

    start: int
    end: int
    gen: str
    #: The stored entry at ``end - 1``, byte for byte: the script compares it with what Redis holds there.
    last: str
    entries: tuple[Entry, ...]

    def size(self) -> int:
        """The window's memory, estimated: its entries, the stored last entry and the tuple."""
        return sum(entry_bytes(e) for e in self.entries) + sys.getsizeof(self.last) + sys.getsizeof(self.entries)

    @property
    def have(self) -> str:
        """What the turn-start scripts are told the caller holds (``"<start> <end> <gen>"``)."""
        return f"{self.start} {self.end} {self.gen}"


class WindowCache:
    """The latest window of each of the ``max_threads`` threads used most recently (0: none kept), within
    ``max_bytes`` in all (``None``: no bound but the threads'); a window larger than that is not kept.

    Entries are shared between the turns of a thread: they must not be changed in place.
    """

    def __init__(self, max_threads: int, max_bytes: int | None = None) -> None:
        self.max_threads = max_threads
        self.max_bytes = max_bytes
        #: The estimated memory of the windows held (``HeldWindow.size``).
        self.bytes = 0
        self._held: OrderedDict[str, tuple[HeldWindow, int]] = OrderedDict()
        #: Turn starts that read only the entries after what was held, and those that read the whole window.
        self.hits = 0
        self.full = 0

    def __len__(self) -> int:
        return len(self._held)

    def held(self, thread_key: str) -> HeldWindow | None:
        found = self._held.get(thread_key)
        return None if found is None else found[0]

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
                self._drop(thread_key)
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

    def _drop(self, thread_key: str) -> None:
        found = self._held.pop(thread_key, None)
        if found is not None:
            self.bytes -= found[1]

    def _keep(self, thread_key: str, window: HeldWindow | None) -> None:
        self._drop(thread_key)
        if window is None:
            return
        size = window.size()
        if self.max_bytes is not None and size > self.max_bytes:
            return
        self._held[thread_key] = (window, size)
        self.bytes += size
        while len(self._held) > self.max_threads or (self.max_bytes is not None and self.bytes > self.max_bytes):
            _, (_, dropped) = self._held.popitem(last=False)
            self.bytes -= dropped
