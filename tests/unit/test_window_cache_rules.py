"""What a process keeps of history windows, without Redis: the window read on top of what was held, the
bound, and a reply that fits nothing held (never sent so) dropping what was held."""

from __future__ import annotations

import pytest

from bot.errors import StoreUnavailable
from bot.store.window import WindowCache
from bot.types import Entry, EntryKind


def _json(*texts: str) -> list[str]:
    return [Entry(EntryKind.USER, t, at=1.0 + i).to_json() for i, t in enumerate(texts)]


def test_a_window_is_read_on_top_of_what_was_held_from_its_start_on():
    cache = WindowCache(max_threads=128)
    a, b, c, d = _json("a", "b", "c", "d")
    first = cache.window("t", None, f"[{a},{b}]", c, win=0, base=0, length=3, gen="0")
    assert [e.text for e in first] == ["a", "b", "c"]
    held = cache.held("t")
    assert held is not None and (held.start, held.end, held.last) == (0, 3, c)
    # the start moved to 1 and one entry was added: sent from the end of what was held
    later = cache.window("t", held, "[]", d, win=1, base=3, length=4, gen="0")
    assert [e.text for e in later] == ["b", "c", "d"] and cache.held("t").start == 1
    # nothing added: the last entry held stays what the scripts compare with
    same = cache.window("t", cache.held("t"), "[]", None, win=1, base=4, length=4, gen="0")
    assert [e.text for e in same] == ["b", "c", "d"] and cache.held("t").last == d
    assert (cache.hits, cache.full) == (2, 1)


def test_a_reply_that_fits_nothing_held_drops_it_and_asks_for_a_new_start():
    cache = WindowCache(max_threads=128)
    a, b = _json("a", "b")
    cache.window("t", None, f"[{a}]", b, win=0, base=0, length=2, gen="0")
    with pytest.raises(StoreUnavailable):
        cache.window("t", None, "[]", b, win=0, base=2, length=3, gen="0")
    assert cache.held("t") is None


def test_only_the_threads_used_last_are_kept():
    cache = WindowCache(max_threads=2)
    (a,) = _json("a")
    for t in ("t1", "t2", "t3"):
        cache.window(t, None, "[]", a, win=0, base=0, length=1, gen="0")
    cache.window("t2", cache.held("t2"), "[]", None, win=0, base=1, length=1, gen="0")
    cache.window("t4", None, "[]", a, win=0, base=0, length=1, gen="0")
    assert len(cache) == 2 and cache.held("t2") is not None and cache.held("t4") is not None


def test_the_windows_held_stay_within_the_byte_bound_letting_the_least_recent_go():
    one = WindowCache(max_threads=1000)
    a, b = _json("x" * 3000, "y" * 3000)
    one.window("t0", None, f"[{a}]", b, win=0, base=0, length=2, gen="0")
    size = one.bytes
    assert size > 6000  # both texts and what holds them
    cache = WindowCache(max_threads=1000, max_bytes=3 * size + size // 2)
    for n in range(5):
        cache.window(f"t{n}", None, f"[{a}]", b, win=0, base=0, length=2, gen="0")
    assert len(cache) == 3 and cache.bytes == 3 * size <= cache.max_bytes
    assert [cache.held(f"t{n}") is not None for n in range(5)] == [False, False, True, True, True]
    tiny = WindowCache(max_threads=1000, max_bytes=size - 1)  # a window larger than the bound is not kept
    tiny.window("t", None, f"[{a}]", b, win=0, base=0, length=2, gen="0")
    assert len(tiny) == 0 and tiny.bytes == 0
