"""The exports cell by cell: every column a user or the model can write, starting with each character a
spreadsheet runs as a formula, comes out quoted; everything else comes out exactly as stored."""

from __future__ import annotations

import csv
import io
import json

import pytest

from adapters.dashboard.export import CSV_COLUMNS, csv_row, to_csv, to_jsonl
from bot.types import Case, Entry, EntryKind, Participant

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: Columns whose text comes from members, the model, moderators or the platform.
WRITTEN = ("community", "action", "platform", "thread", "channel", "reason", "category", "summary",
           "ended_at", "ended_by", "participants", "jump_url", "branch_of", "branches", "moderator", "note")


def _every_text(start: str) -> Case:
    def t(name: str) -> str:
        return f"{start}{name} 1+1"

    return Case(7, t("community"), t("platform"), t("thread"), t("channel"), action=t("action"),
                reason=t("reason"), category=t("category"), summary=t("summary"), ended_at=t("ended_at"),
                ended_by=t("ended_by"), participants=[Participant(t("id"), t("participants"))],
                jump_url=t("jump_url"), branch_of=t("branch_of"), branches=[t("branches")],
                moderator=t("moderator"), note=t("note"))


@pytest.mark.parametrize("start", FORMULA_STARTS, ids=["equals", "plus", "minus", "at", "tab", "cr"])
def test_every_written_column_starting_like_a_formula_is_quoted(start):
    row = dict(zip(CSV_COLUMNS, csv_row(_every_text(start)), strict=True))
    for name in WRITTEN:
        assert row[name].startswith(f"'{start}{name}"), name
    # and the file a spreadsheet opens carries the quote too, after the CSV quoting
    parsed = next(csv.DictReader(io.StringIO(to_csv([_every_text(start)]))))
    assert all(not parsed[name].startswith(FORMULA_STARTS) for name in CSV_COLUMNS)
    assert parsed["summary"] == f"'{start}summary 1+1"


def test_plain_text_and_formula_characters_inside_a_cell_are_left_alone():
    row = dict(zip(CSV_COLUMNS, csv_row(_every_text("")), strict=True))
    for name in WRITTEN:
        assert not row[name].startswith("'"), name
    assert row["summary"] == "summary 1+1"
    case = Case(1, "g", "discord", "t", "c", summary="a=b, -c, @d", note="x\t=y")
    row = dict(zip(CSV_COLUMNS, csv_row(case), strict=True))
    assert (row["summary"], row["note"]) == ("a=b, -c, @d", "x\t=y")


def test_every_column_in_order_with_lists_numbers_flags_and_empty_values():
    case = Case(12, "g", "slack", "slack:g:C1:1.2", "C1", reason="persistent_abuse", category="hate",
                summary="s", redirect_count=3, warned=True, at_risk=False, ended_at="2026-12-01T10:00:00+00:00",
                ended_by="model", participants=[Participant("U1", "ann"), Participant("U2", "=bob")],
                transcript=[Entry(EntryKind.USER, "hi"), Entry(EntryKind.ASSISTANT, "hello")],
                branches=["slack:g:C1:3.4", "slack:g:C1:5.6"], actions=[13, 14])
    assert csv_row(case) == [
        "g", "12", "end", "slack", "slack:g:C1:1.2", "C1", "persistent_abuse", "hate", "s",
        "3", "yes", "no", "2026-12-01T10:00:00+00:00", "model", "ann (U1); =bob (U2)", "", "",
        "slack:g:C1:3.4 slack:g:C1:5.6", "", "", "", "13 14", "2"]


def test_the_csv_file_has_a_header_and_crlf_rows():
    text = to_csv([Case(1, "g", "discord", "t", "c"), Case(2, "g", "discord", "t2", "c")])
    lines = text.split("\r\n")
    assert lines[0] == ",".join(CSV_COLUMNS) and lines[-1] == "" and len(lines) == 4
    assert to_csv([]) == ",".join(CSV_COLUMNS) + "\r\n"


def test_jsonl_is_one_line_per_case_with_text_kept_as_written():
    odd = "caf\u00e9 \u2028 next\u2029 \x85 \"quoted\" \n newline"
    cases = [Case(1, "g", "discord", "t", "c", summary=odd,
                  transcript=[Entry(EntryKind.USER, odd, author_name="\u00e9lodie")]),
             Case(2, "g", "discord", "t2", "c", summary="plain")]
    body = to_jsonl(cases)
    assert body.endswith("\n") and body.count("\n") == 2 and len(body.splitlines()) == 2
    assert "caf\u00e9" in body and "\\u00e9" not in body  # readable UTF-8, not ASCII escapes
    first, second = (json.loads(line) for line in body.splitlines())
    assert first["summary"] == odd and first["transcript"][0]["text"] == odd
    assert first["transcript"][0]["author_name"] == "\u00e9lodie"
    assert second["summary"] == "plain" and first["case_id"] == 1 and second["case_id"] == 2
    assert to_jsonl([]) == ""
