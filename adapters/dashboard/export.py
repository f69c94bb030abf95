"""Cases as JSON lines (everything, transcript included) and as CSV (one row per case, no transcript).

CSV cells that a spreadsheet would run as a formula (starting with ``= + - @``, a tab or a CR) are
prefixed with a quote: summaries, notes and names are written by users.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable

from bot.participants import listed
from bot.types import Case

CSV_COLUMNS = (
    "community", "case_id", "action", "platform", "thread", "channel", "reason", "category", "summary",
    "redirect_count", "warned", "at_risk", "ended_at", "ended_by", "participants", "jump_url",
    "branch_of", "branches", "refers_to", "moderator", "note", "actions", "transcript_entries",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


#: Characters that some line readers (``str.splitlines``, older JavaScript) take for a line break; inside
#: JSON they only ever occur in strings, where their escapes mean the same.
_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def to_jsonl(cases: Iterable[Case]) -> str:
    """One case per line, whatever its texts hold."""
    return "".join(json.dumps(c.to_dict(), ensure_ascii=False).translate(_LINE_BREAKS) + "\n" for c in cases)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_row(case: Case) -> list[str]:
    values: dict[str, object] = {
        "community": case.community, "case_id": case.case_id, "action": case.action,
        "platform": case.platform, "thread": case.thread, "channel": case.channel, "reason": case.reason,
        "category": case.category, "summary": case.summary, "redirect_count": case.redirect_count,
        "warned": case.warned, "at_risk": case.at_risk, "ended_at": case.ended_at, "ended_by": case.ended_by,
        "participants": listed(case.participants, lambda p: f"{p.name} ({p.id})", "; "),
        "jump_url": case.jump_url, "branch_of": case.branch_of, "branches": " ".join(case.branches),
        "refers_to": case.refers_to, "moderator": case.moderator, "note": case.note,
        "actions": " ".join(str(a) for a in case.actions), "transcript_entries": len(case.transcript),
    }
    return [_cell(values[name]) for name in CSV_COLUMNS]


def _csv(rows: Iterable[Iterable[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


def csv_header() -> str:
    return _csv([CSV_COLUMNS])


def csv_rows(cases: Iterable[Case]) -> str:
    """The rows of ``cases`` without the header (a streamed export writes them a batch at a time)."""
    return _csv(csv_row(case) for case in cases)


def to_csv(cases: Iterable[Case]) -> str:
    return csv_header() + csv_rows(cases)
