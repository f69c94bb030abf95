"""Pure parts of the dashboard: password hashing, CSRF tokens, filters, exports, the chart, link safety."""

from __future__ import annotations

import csv
import io
import json

import pytest
from pydantic import ValidationError

from adapters.dashboard.auth import Accounts, Moderator, hash_password, verify_password
from adapters.dashboard.chart import build_chart
from adapters.dashboard.export import to_csv, to_jsonl
from adapters.dashboard.query import CaseFilter
from adapters.dashboard.views import _safe_url
from bot.types import Case, Entry, EntryKind, Participant
from config.dashboard import DashboardSettings


def _case(n: int, *, day: str = "2025-03-02", reason: str = "persistent_abuse", action: str = "end",
          community: str = "g", category: str = "harassment", **kw: object) -> Case:
    return Case(n, community, "discord", f"discord:{community}:c:{n}", "c", action=action, reason=reason,
                category=category, ended_at=f"{day}T10:00:00+00:00", **kw)  # type: ignore[arg-type]


def test_passwords_are_salted_scrypt_hashes_checked_in_constant_time():
    encoded = hash_password("correct horse battery")
    assert encoded.startswith("scrypt$") and "correct horse" not in encoded
    assert encoded != hash_password("correct horse battery")  # salted
    assert verify_password("correct horse battery", encoded)
    assert not verify_password("correct horse batterY", encoded)
    assert not verify_password("x", "garbage")


def test_csrf_tokens_are_bound_to_the_session_and_the_purpose():
    accounts = Accounts(client=None, secret=b"s" * 32)
    token = accounts.csrf_token("session-1")
    assert accounts.csrf_ok("session-1", token)
    assert not accounts.csrf_ok("session-2", token)
    assert not accounts.csrf_ok("session-1", accounts.csrf_token("session-1", "login"))
    assert not accounts.csrf_ok(None, token) and not accounts.csrf_ok("session-1", None)
    assert Accounts(None, secret=b"t" * 32).csrf_token("session-1") != token


def test_moderators_see_only_their_communities():
    mod = Moderator("m", frozenset({"a"}))
    assert mod.visible(["a", "b"]) == ["a"] and not mod.may_see("b")
    assert Moderator("root", frozenset(), admin=True).visible(["b", "a"]) == ["a", "b"]


def test_filters_drop_malformed_values_and_match_cases():
    wanted = CaseFilter.from_query({"reason": "user_requested", "platform": "irc", "since": "2025-03-01",
                                    "until": "2025-03-31'; DROP", "participant": "ALI"})
    assert wanted.platform == "" and wanted.until == ""
    assert wanted.as_query() == {"reason": "user_requested", "participant": "ALI", "since": "2025-03-01",
                                 "review": "all"}  # other filters given: every review state
    alice = [Participant("u-1", "alice")]
    assert wanted.matches(_case(1, reason="user_requested", participants=alice))
    assert not wanted.matches(_case(2, reason="persistent_abuse", participants=alice))
    assert not wanted.matches(_case(3, reason="user_requested", day="2025-02-28", participants=alice))
    assert CaseFilter(participant="u-1").matches(_case(4, participants=alice))


def test_csv_export_neutralises_formulas_and_jsonl_keeps_everything():
    case = _case(1, summary="=HYPERLINK(\"http://evil\")", participants=[Participant("u", "+cmd")],
                 transcript=[Entry(EntryKind.USER, "<script>alert(1)</script>", author_id="u")])
    rows = list(csv.DictReader(io.StringIO(to_csv([case]))))
    assert rows[0]["summary"].startswith("'=") and rows[0]["participants"].startswith("'+")
    assert rows[0]["transcript_entries"] == "1"
    line = json.loads(to_jsonl([case]))
    assert line["transcript"][0]["text"] == "<script>alert(1)</script>"


def test_chart_counts_ended_threads_per_day_by_reason():
    cases = [_case(1, day="2025-03-01"), _case(2, day="2025-03-01", reason="user_requested"),
             _case(3, day="2025-03-03"), _case(4, day="2025-03-03", action="note")]
    chart = build_chart(cases)
    assert chart.days == ["2025-03-01", "2025-03-02", "2025-03-03"]
    assert chart.series == {"persistent_abuse": [1, 0, 1], "user_requested": [1, 0, 0]}
    assert chart.total == 3 and len(chart.bars) == 3
    assert build_chart([]).total == 0


def test_only_http_links_are_rendered_as_links():
    assert _safe_url("https://discord.com/channels/1/2") == "https://discord.com/channels/1/2"
    for bad in ("javascript:alert(1)", "data:text/html,x", "//evil", None, ""):
        assert _safe_url(bad) is None


def test_dashboard_settings_require_a_long_session_secret(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DASHBOARD_SESSION_SECRET", raising=False)
    with pytest.raises(ValidationError):
        DashboardSettings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        DashboardSettings(session_secret="short", _env_file=None)  # type: ignore[call-arg]
    settings = DashboardSettings(session_secret="x" * 40, _env_file=None)  # type: ignore[call-arg]
    assert settings.cookie_secure and "x" * 40 not in repr(settings)

