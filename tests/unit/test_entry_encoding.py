"""A log entry's stored form: compact, byte-stable across versions, and read back as it was written."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bot.types import Case, Entry, EntryKind


def _reference_json(entry: Entry) -> str:
    """How entries were always written: every field but the empty ones, in field order."""
    data = {k: v for k, v in dataclasses.asdict(entry).items() if v not in (None, "", False)}
    data["kind"] = entry.kind.value
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


ENTRIES = [
    Entry(EntryKind.USER, "Grüße, «quoted» \"text\"\n\ttab", at=1.5, turn=3, author_id="u1", author_name="Ann",
          message_id="m1", in_history=True),
    Entry(EntryKind.ASSISTANT, "An answer.", at=2.0, turn=0, in_history=True),
    Entry(EntryKind.REDIRECTION, "", at=3.25, turn=7, category="harassment"),
    Entry(EntryKind.NOTICE, "0", at=0.0),
    Entry(EntryKind.END, "summary", at=1_796_000_000.123456, turn=12, category="other", author_id=""),
]


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.kind.value)
def test_an_entry_is_written_byte_for_byte_as_before(entry: Entry) -> None:
    # stored logs are compared by their JSON (retention's compare-and-set): the form must not drift
    assert entry.to_json() == _reference_json(entry)


@pytest.mark.parametrize("entry", ENTRIES[:3] + ENTRIES[4:], ids=lambda e: e.kind.value)
def test_an_entry_reads_back_as_it_was_written(entry: Entry) -> None:
    back = Entry.from_json(entry.to_json())
    assert back == dataclasses.replace(entry, author_id=entry.author_id or None)
    assert back.kind is entry.kind and type(back.kind) is EntryKind


def test_a_window_sent_as_one_array_reads_as_its_entries() -> None:
    raw = "[" + ",".join(e.to_json() for e in ENTRIES[:3]) + "]"
    assert Entry.many_from_json(raw) == ENTRIES[:3]
    assert Entry.many_from_json("[]") == []


def test_fields_a_newer_version_wrote_are_left_out_and_an_unknown_kind_is_refused() -> None:
    entry = Entry.from_json('{"kind":"user","text":"hi","at":1.0,"reactions":3}')
    assert entry == Entry(EntryKind.USER, "hi", at=1.0)
    with pytest.raises(ValueError):
        Entry.from_json('{"kind":"shout","text":"hi","at":1.0}')


def test_a_case_transcript_round_trips_without_touching_the_decoded_dict() -> None:
    case = Case(case_id=1, community="g", platform="discord", thread="discord:g:c:t", channel="c",
                transcript=ENTRIES[:2])
    data = case.to_dict()
    again = Case.from_dict(data)
    assert again.transcript == ENTRIES[:2]
    assert type(data["transcript"][0]["kind"]) is str  # the caller's dict is left as it was


def test_any_text_and_time_are_written_as_the_standard_library_writes_them() -> None:
    import random

    rng = random.Random(11)
    alphabet = ([chr(c) for c in range(0x20)] + list("\"\\/ aZ09{}[]:,") + ["é", "ß", "€", "\u2028", "\u2029",
                "\u200d", "\u202e", "\x7f", "\x85", "\ufeff", "😀", "👩‍👩‍👧", "\U0010fffd"])
    for _ in range(2_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        at = rng.choice([rng.uniform(0, 4e9), round(rng.uniform(1e9, 2e9), 3), float(rng.randrange(0, 10**10)),
                         rng.uniform(0.0001, 1), 10 ** rng.uniform(-4, 15.9)])
        entry = Entry(rng.choice(list(EntryKind)), text, at=at, turn=rng.randrange(0, 3000),
                      author_id=rng.choice([None, "", "u1", text]), in_history=rng.random() < 0.5)
        assert entry.to_json() == _reference_json(entry)
        assert Entry.from_json(entry.to_json()).to_json() == entry.to_json()
