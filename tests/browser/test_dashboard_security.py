"""The dashboard is safe to expose: user-written HTML stays inert, communities are isolated, signed-out
requests and forged POSTs are refused (headless Chromium, real engine, real Redis)."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from bot.types import ThreadStatus
from tests.browser.conftest import IMG_PAYLOAD, MALLORY, SCRIPT_PAYLOAD, LiveDashboard, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(60)]


def _status(live: LiveDashboard, name: str) -> ThreadStatus:
    thread = live.seeded.threads[name]
    return live.call(lambda: live.runtime.member_actions.thread_state(thread)).status


def _case(live: LiveDashboard, community: str, number: int):
    return live.call(lambda: live.runtime.cases.get(community, number))


def _csrf(page: Page) -> str:
    return page.locator("input[name=csrf]").first.get_attribute("value") or ""


def test_user_written_html_renders_inert(page: Page, live: LiveDashboard):
    s = live.seeded
    sign_in(page, live, "mod-a")
    for path in (f"/cases/guild-a/{s.abuse}", "/cases", "/cases?participant=mallory"):
        response = page.goto(live.url + path)
        assert response.status == 200
        assert "script-src 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        page.hover("body")
        assert page.locator("script").count() == 0
        assert page.locator("img").count() == 0
        assert page.evaluate("document.querySelectorAll('[onerror],[onmouseover]').length") == 0
    page.goto(f"{live.url}/cases/guild-a/{s.abuse}")
    texts = page.locator("#transcript .text").all_inner_texts()
    assert any(SCRIPT_PAYLOAD in t for t in texts)
    assert any(IMG_PAYLOAD in t for t in texts)
    expect(page.locator("#participants")).to_contain_text(MALLORY.name)  # shown as text, not markup
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_a_moderator_cannot_reach_another_communitys_cases(page: Page, live: LiveDashboard):
    s = live.seeded
    before = len(_case(live, "guild-a", s.user_end).actions)
    sign_in(page, live, "mod-b")
    rows = page.locator("tr.case-row")
    assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.community)")) == {"guild-b"}
    for path in (f"/cases/guild-a/{s.user_end}", "/cases?community=guild-a", "/chart?community=guild-a",
                 "/export.jsonl?community=guild-a", "/export.csv?community=guild-a"):
        assert page.request.get(live.url + path, max_redirects=0).status == 404, path
    everything = page.request.get(f"{live.url}/export.jsonl").text()
    assert {json.loads(line)["community"] for line in everything.splitlines()} == {"guild-b"}
    page.goto(f"{live.url}/cases/guild-b/{s.other}")
    token = _csrf(page)
    for action in ("reopen", "note", "mistaken"):
        response = page.request.post(f"{live.url}/cases/guild-a/{s.user_end}/{action}",
                                     form={"csrf": token, "note": "x"}, max_redirects=0)
        assert response.status == 404, action
    assert _status(live, "user_end") is ThreadStatus.ENDED
    assert len(_case(live, "guild-a", s.user_end).actions) == before


def test_an_admin_sees_every_community(page: Page, live: LiveDashboard):
    sign_in(page, live, "root")
    page.goto(f"{live.url}/cases?action=end")
    exported = page.request.get(f"{live.url}/export.jsonl?action=end").text().splitlines()
    assert {json.loads(line)["community"] for line in exported} == {"guild-a", "guild-b"}
    assert page.goto(f"{live.url}/cases/guild-b/{live.seeded.other}").status == 200


def test_signed_out_requests_are_refused(page: Page, live: LiveDashboard):
    s = live.seeded
    for path in ("/cases", f"/cases/guild-a/{s.user_end}", "/chart", "/export.csv"):
        page.goto(live.url + path)
        expect(page).to_have_url(re.compile(r"/login$"))
        response = page.request.get(live.url + path, max_redirects=0)
        assert response.status == 303 and response.headers["location"] == "/login"
    post = page.request.post(f"{live.url}/cases/guild-a/{s.user_end}/reopen", form={"csrf": "x"},
                             max_redirects=0)
    assert post.status == 403
    sign_in(page, live, "mod-a", password="wrong password!")
    expect(page.locator("#login-error")).to_be_visible()
    assert page.request.post(f"{live.url}/login", form={"name": "mod-a", "password": "correct horse battery"},
                             max_redirects=0).status == 403  # no sign-in CSRF token
    assert _status(live, "user_end") is ThreadStatus.ENDED


def test_forged_posts_are_refused(page: Page, context: BrowserContext, live: LiveDashboard):
    s = live.seeded
    target = f"{live.url}/cases/guild-a/{s.user_end}/reopen"
    sign_in(page, live, "mod-a")
    page.goto(f"{live.url}/cases/guild-a/{s.user_end}")
    token = _csrf(page)
    assert page.request.post(target, form={}, max_redirects=0).status == 403
    assert page.request.post(target, form={"csrf": "0" * 64}, max_redirects=0).status == 403
    assert page.request.post(target, form={"csrf": token}, headers={"Origin": "http://evil.example"},
                             max_redirects=0).status == 403
    # a page on another site submits a form to the dashboard while the moderator is signed in
    attacker = context.new_page()
    attacker.route("http://attacker.test/**", lambda route: route.fulfill(content_type="text/html", body=(
        f'<form method="post" action="{target}"><input name="csrf" value="{token}">'
        '<button id="go">win a prize</button></form>')))
    attacker.goto("http://attacker.test/")
    with attacker.expect_navigation():
        attacker.click("#go")
    assert "Not available" in attacker.content()
    assert _status(live, "user_end") is ThreadStatus.ENDED
    assert _case(live, "guild-a", s.user_end).actions == []


def test_sign_out_ends_the_session_on_the_server(page: Page, context: BrowserContext, live: LiveDashboard):
    sign_in(page, live, "mod-a")
    cookie = next(c for c in context.cookies() if c["name"] == "tg_session")
    page.click("text=Sign out")
    expect(page).to_have_url(re.compile(r"/login$"))
    context.add_cookies([cookie])  # replaying the old cookie does not work any more
    page.goto(f"{live.url}/cases")
    expect(page).to_have_url(re.compile(r"/login$"))
