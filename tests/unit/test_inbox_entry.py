"""An inbox entry's stored form (``<id>\\t<json>``): every field a reply needs reads back as it was written."""

from __future__ import annotations

import orjson
import pytest

from bot.store.inbox_entry import InboxEntry, ReplyTarget
from bot.types import Author, IncomingMessage, ThreadRef

T = ThreadRef("slack", "T1", "C1", "1700000000.000100")


def test_every_field_reads_back_from_the_stored_form() -> None:
    message = IncomingMessage(T, Author("u1", "Ann"), "hi\tthere", message_id="m1", event_id="Ev1",
                              jump_url="https://example.org/j")
    entry = InboxEntry("e1", message, ReplyTarget("u2", "tok", {"channel": "D1"}), at=12.3456)
    stored = entry.stored()
    assert stored.split("\t", 1)[0] == "e1"
    assert orjson.loads(stored.split("\t", 1)[1]) == {"a": "u1", "n": "Ann", "x": "hi\tthere", "m": "m1",
                                                      "e": "Ev1", "j": "https://example.org/j", "u": "u2",
                                                      "i": "tok", "t": {"channel": "D1"}, "at": 12.346}
    back = InboxEntry.parse(T, stored)
    assert back.id == "e1" and back.message == message and back.thread == T
    assert back.target == ReplyTarget("u2", "tok", {"channel": "D1"}) and back.at == 12.346


def test_empty_fields_are_left_out_and_read_back_as_their_defaults() -> None:
    entry = InboxEntry("e2", IncomingMessage(T, Author("u1", "u1"), "x", message_id="m2"), ReplyTarget("u1"))
    assert set(orjson.loads(entry.to_json())) == {"a", "n", "x", "m", "u", "at"}
    back = InboxEntry.parse(T, 'e2\t{"a":"u1","x":"x","m":"m2"}')  # no name, target or time
    assert back.message.author == Author("u1", "u1") and back.target == ReplyTarget("u1") and back.at == 0.0
    assert back.message.event_id is None and back.message.jump_url is None and back.target.extra == {}


@pytest.mark.parametrize("raw", ["no tab here", 'e3\t{"x":"text only"}', "e4\tnot json", 'e5\t["a"]'])
def test_a_malformed_entry_is_a_value_error(raw: str) -> None:
    with pytest.raises(ValueError):
        InboxEntry.parse(T, raw)


def test_a_message_a_limit_kept_is_stored_marked_and_reads_back_marked() -> None:
    entry = InboxEntry("e6", IncomingMessage(T, Author("u1", "Ann"), "!hello", message_id="m6"), ReplyTarget("u1"))
    assert not InboxEntry.parse(T, entry.stored()).held
    entry.held = True
    stored = entry.stored()
    assert stored.startswith('e6\t!{"a":"u1"')
    back = InboxEntry.parse(T, stored)
    assert back.held and back.id == "e6" and back.message == entry.message
