"""The moderators' dashboard in headless Chromium, on cases the real engine filed in a real Redis:
signing in, the list and its filters, the case page, the actions, exports and the chart."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from bot.types import EntryKind, ThreadStatus
from tests.browser.conftest import SCRIPT_PAYLOAD, LiveDashboard, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]


def _status(live: LiveDashboard, name: str) -> ThreadStatus:
    thread = live.seeded.threads[name]
    return live.call(lambda: live.runtime.member_actions.thread_state(thread)).status


def _case(live: LiveDashboard, community: str, number: int):
    return live.call(lambda: live.runtime.cases.get(community, number))


def _csrf(page: Page) -> str:
    return page.locator("input[name=csrf]").first.get_attribute("value") or ""


def test_sign_in_sets_a_strict_http_only_session_and_the_list_shows_only_own_cases(
        page: Page, context: BrowserContext, live: LiveDashboard):
    response = page.goto(f"{live.url}/login")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert "script-src 'none'" in response.headers["content-security-policy"]
    sign_in(page, live, "mod-a")
    expect(page).to_have_url(re.compile(r"/cases$"))
    session = next(c for c in context.cookies() if c["name"] == "tg_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"

    page.goto(f"{live.url}/cases?action=end")
    rows = page.locator("tr.case-row")
    expect(rows).to_have_count(2)  # page size 2: newest first
    first = [int(n) for n in rows.evaluate_all("rs => rs.map(r => r.dataset.case)")]
    page.click("#next-page")
    expect(rows).to_have_count(1)
    last = int(rows.first.get_attribute("data-case"))
    s = live.seeded
    assert [*first, last] == [s.risk, s.user_end, s.abuse]
    assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.community)")) == {"guild-a"}


def test_filters_narrow_the_list(page: Page, live: LiveDashboard):
    s = live.seeded
    sign_in(page, live, "mod-a")
    page.select_option("select[name=reason]", "user_requested")
    page.select_option("select[name=action]", "end")
    page.click("#filters button[type=submit]")
    rows = page.locator("tr.case-row")
    expect(rows).to_have_count(2)
    page.fill("input[name=participant]", "bob")
    page.click("#filters button[type=submit]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-case", str(s.user_end))

    page.goto(f"{live.url}/cases?category=weapons_of_mass_harm&platform=discord")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-case", str(s.abuse))
    page.goto(f"{live.url}/cases?since=2000-01-01&until=2000-01-31")
    expect(page.locator("#no-cases")).to_be_visible()
    page.goto(f"{live.url}/cases?platform=slack")
    expect(page.locator("#no-cases")).to_be_visible()  # guild-b's slack case is not mod-a's


def test_case_page_marks_the_ladder_in_the_transcript(page: Page, live: LiveDashboard):
    s = live.seeded
    sign_in(page, live, "mod-a")
    page.goto(f"{live.url}/cases?reason=persistent_abuse&action=end")
    page.click(f"tr.case-row[data-case='{s.abuse}'] a.case-link")
    expect(page.locator("h1")).to_contain_text(f"Case #{s.abuse}")
    markers = page.locator("#transcript .marker").all_inner_texts()
    assert [m.lower() for m in markers] == ["redirection 1", "redirection 2", "redirection 3", "warning", "end"]
    expect(page.locator("#case-reason")).to_have_text("persistent abuse")
    expect(page.locator("#case-category")).to_have_text("Weapons of mass harm")
    expect(page.locator("#participants")).to_contain_text("alice")
    expect(page.locator("#jump-link")).to_have_attribute("href", re.compile(r"^https://discord\.com/"))
    expect(page.locator("#thread-status")).to_have_text("thread ended")
    # the warning comes after the third redirection and before the end, as the engine posted them
    kinds = page.locator("#transcript li.ladder").evaluate_all("ls => ls.map(l => l.dataset.kind)")
    assert kinds == ["redirection", "redirection", "redirection", "warning", "end"]

    page.goto(f"{live.url}/cases/guild-a/{s.risk}")
    risk_markers = page.locator("#transcript .marker").all_inner_texts()
    assert [m.lower() for m in risk_markers] == ["risk flag", "crisis resources", "end"]


def test_reopen_unfreezes_the_thread_in_the_engine_and_tells_the_thread(page: Page, live: LiveDashboard):
    s = live.seeded
    assert _status(live, "abuse") is ThreadStatus.ENDED
    sign_in(page, live, "mod-a")
    page.goto(f"{live.url}/cases/guild-a/{s.abuse}")
    page.click("#reopen")
    expect(page.locator("#flash")).to_contain_text("reopened")
    expect(page.locator("#thread-status")).to_have_text("thread active")
    expect(page.locator("#reopen")).to_have_count(0)
    expect(page.locator("#action-log")).to_contain_text("reopen by mod-a")

    assert _status(live, "abuse") is ThreadStatus.ACTIVE
    case = _case(live, "guild-a", s.abuse)
    action = _case(live, "guild-a", case.actions[-1])
    assert action.action == "reopen" and action.refers_to == s.abuse and "mod-a" in action.moderator
    platform = live.seeded.threads["abuse"].platform
    queued = live.call(lambda: live.runtime.notices.pop_notices(platform))
    assert queued[-1].action == "reopen" and queued[-1].case_id == s.abuse
    assert queued[-1].thread == live.seeded.threads["abuse"]
    assert "reopened" in queued[-1].replies[0].text

    from bot.types import IncomingMessage
    from tests.browser.conftest import ALICE

    outcome = live.call(lambda: live.runtime.member_actions.handle_message(
        IncomingMessage(live.seeded.threads["abuse"], ALICE, "thanks, and what about fractions?", "after-reopen")))
    assert not outcome.frozen and outcome.model_called
    _, log = live.call(lambda: live.runtime.store.turns.load(live.seeded.threads["abuse"]))
    assert EntryKind.REOPEN in {e.kind for e in log}


def test_notes_and_mistaken_marks_are_their_own_cases(page: Page, live: LiveDashboard):
    s = live.seeded
    sign_in(page, live, "mod-a")
    page.goto(f"{live.url}/cases/guild-a/{s.risk}")
    page.fill("textarea[name=note]", "Checked in with the member. <script>alert(5)</script>")
    page.click("#add-note")
    expect(page.locator("#flash")).to_contain_text("note was added")
    page.fill("#actions input[name=note]", "they asked to end, fine")
    page.click("#mark-mistaken")
    expect(page.locator("#flash")).to_contain_text("mistaken")
    log = page.locator("#action-log li")
    expect(log).to_have_count(2)
    expect(log.nth(0)).to_contain_text("<script>alert(5)</script>")
    assert page.locator("script").count() == 0
    actions = [_case(live, "guild-a", n) for n in _case(live, "guild-a", s.risk).actions]
    assert [a.action for a in actions] == ["note", "mistaken"]
    assert all("mod-a" in (a.moderator or "") and a.ended_at for a in actions)
    assert _status(live, "risk") is ThreadStatus.ENDED  # notes do not reopen


def test_export_jsonl_and_csv_of_the_filtered_list(page: Page, live: LiveDashboard):
    s = live.seeded
    sign_in(page, live, "mod-a")
    page.goto(f"{live.url}/cases?action=end&reason=persistent_abuse")
    with page.expect_download() as jsonl_download:
        page.click("#export-jsonl")
    lines = Path(jsonl_download.value.path()).read_text(encoding="utf-8").splitlines()
    exported = [json.loads(line) for line in lines]
    assert [(c["community"], c["case_id"]) for c in exported] == [("guild-a", s.abuse)]
    assert any(SCRIPT_PAYLOAD in e.get("text", "") for e in exported[0]["transcript"])

    page.goto(f"{live.url}/cases?action=end")
    with page.expect_download() as csv_download:
        page.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(Path(csv_download.value.path()).read_text(encoding="utf-8"))))
    assert {int(r["case_id"]) for r in rows} == {s.abuse, s.user_end, s.risk}
    assert {r["community"] for r in rows} == {"guild-a"}
    assert jsonl_download.value.suggested_filename.endswith(".jsonl")


def test_chart_of_ended_threads_per_day_by_reason(page: Page, live: LiveDashboard):
    sign_in(page, live, "mod-a")
    page.click("text=Chart")
    chart = page.locator("svg#chart")
    expect(chart).to_be_visible()
    assert page.locator("svg#chart rect.bar").count() >= 1
    expect(page.locator("#chart-title")).to_contain_text("3 in all")  # guild-a only
    legend = page.locator(".legend").inner_text()
    assert "Persistent abuse: 1" in legend and "User requested: 2" in legend
