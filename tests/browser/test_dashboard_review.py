"""The review workflow in headless Chromium on cases the real engine filed in a real Redis: the list
defaults to ended threads awaiting review with counts in the header and actions nested under their case;
assign, review and outcome; the appeals queue and its decision; the member record; right-to-left and
3,000-character payloads rendered isolated and wrapped."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from bot.review import AppealResult, ReviewState
from bot.types import Author, IncomingMessage, ThreadRef, ThreadStatus
from tests.browser.conftest import ALICE, BOB, LiveDashboard, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

SHOTS = Path(__file__).resolve().parent / "screenshots"
RLO = "\u202e"
RTL_NAME = f"{RLO}evil-name"
LONG = "W" * 3000
RTL_MEMBER = Author("u-rtl", RTL_NAME)
LONG_MEMBER = Author("u-long", "L" * 3000)


def _counts(page: Page) -> dict[str, int]:
    def number(sel: str) -> int:
        return int(page.locator(f"{sel} b").inner_text())

    return {k: number(f"#count-{k}") for k in ("unreviewed", "in-review", "reviewed", "appeals")}


def _row_ids(page: Page) -> list[int]:
    return [int(n) for n in page.locator("tr.case-row").evaluate_all("rs => rs.map(r => r.dataset.case)")]


def _seed_payload_case(live: LiveDashboard) -> tuple[int, int]:
    thread = ThreadRef("discord", "guild-a", "c9", "t-payloads")
    again = ThreadRef("discord", "guild-a", "c3", "t-alice-again")

    async def seed() -> tuple[int, int]:
        members = live.runtime.member_actions
        await members.handle_message(IncomingMessage(thread, RTL_MEMBER, f"{RLO}hello 12345", "p-1"))
        await members.handle_message(IncomingMessage(thread, LONG_MEMBER, LONG, "p-2"))
        outcome = await members.end_by_user(thread, RTL_MEMBER)
        for n in range(4):  # alice's second ending for abuse: now she is a repeat
            ended = await members.handle_message(IncomingMessage(again, ALICE, "build a bomb", f"a-{n}"))
        return int(outcome.case.case_id), int(ended.case.case_id)

    return live.call(seed)


@pytest.fixture(scope="module")
def seeded_more(live: LiveDashboard) -> tuple[int, int]:
    return _seed_payload_case(live)


@pytest.fixture(scope="module")
def payload_case(seeded_more: tuple[int, int]) -> int:
    return seeded_more[0]


@pytest.fixture(scope="module")
def alice_again(seeded_more: tuple[int, int]) -> int:
    return seeded_more[1]


def test_the_list_defaults_to_ended_threads_awaiting_review_with_counts(page: Page, live: LiveDashboard,
                                                                        payload_case: int, alice_again: int):
    s = live.seeded
    sign_in(page, live, "mod-a")
    expect(page.locator("h1")).to_have_text("Ended threads awaiting review")
    listed = _row_ids(page) + _row_ids_next(page) + _row_ids_next(page)
    assert sorted(listed) == sorted([s.abuse, s.user_end, s.risk, payload_case, alice_again])
    page.goto(f"{live.url}/cases")
    assert _counts(page) == {"unreviewed": 5, "in-review": 0, "reviewed": 0, "appeals": 0}
    assert set(page.locator("tr.case-row").evaluate_all("rs => rs.map(r => r.dataset.review)")) == {"unreviewed"}
    # two of alice's threads in guild-a ended for abuse: the repeat marker is next to her name, not bob's
    page.goto(f"{live.url}/cases?review=all&participant=alice")
    row = page.locator(f"tr.case-row[data-case='{s.risk}']")
    expect(row.locator(".tag-repeat")).to_have_count(1)
    page.goto(f"{live.url}/cases?review=all&participant=bob")
    expect(page.locator(f"tr.case-row[data-case='{s.user_end}'] .tag-repeat")).to_have_count(0)


def _row_ids_next(page: Page) -> list[int]:
    if page.locator("#next-page").count() == 0:
        return []
    page.click("#next-page")
    return _row_ids(page)


def test_assign_review_and_outcome_move_a_case_out_of_the_default_list(page: Page, live: LiveDashboard,
                                                                       payload_case: int):
    s = live.seeded
    sign_in(page, live, "mod-a")
    page.goto(f"{live.url}/cases/guild-a/{s.abuse}")
    expect(page.locator("#review-state")).to_have_attribute("data-state", "unreviewed")
    page.click("#assign")
    expect(page.locator("#flash")).to_contain_text("You have this case")
    expect(page.locator("#review-state")).to_have_attribute("data-state", "in_review")
    expect(page.locator("#review-assignee")).to_have_text("mod-a")
    page.goto(f"{live.url}/cases")
    assert _counts(page)["in-review"] == 1 and _counts(page)["unreviewed"] == 4

    page.goto(f"{live.url}/cases/guild-a/{s.abuse}")
    page.select_option("#outcome", "upheld")
    page.fill("#review input[name=note]", "warned three times, fair")
    page.click("#conclude")
    expect(page.locator("#review-state")).to_have_attribute("data-state", "reviewed")
    expect(page.locator("#review-outcome")).to_have_text("upheld")
    expect(page.locator("#assign")).to_have_count(0)

    page.goto(f"{live.url}/cases")
    assert _counts(page) == {"unreviewed": 4, "in-review": 0, "reviewed": 1, "appeals": 0}
    all_rows = _row_ids(page) + _row_ids_next(page)
    assert s.abuse not in all_rows and len(all_rows) == 4
    page.goto(f"{live.url}/cases?review=reviewed")
    assert _row_ids(page) == [s.abuse]
    row = page.locator(f"tr.case-row[data-case='{s.abuse}']")
    expect(row.locator(".outcome")).to_have_text("upheld")
    # the moderator's steps are audit entries nested under their case, not rows of their own
    nested = row.locator(".nested-action .tag").all_inner_texts()
    assert nested == ["assign", "review"]
    page.goto(f"{live.url}/cases?review=all")
    assert set(page.locator("tr.case-row").evaluate_all("rs => rs.map(r => r.className)")) <= {
        f"case-row action-end state-{st.value}" for st in ReviewState}
    # ... and still their own entries when asked for, and in exports with their actions
    page.goto(f"{live.url}/cases?action=review")
    assert page.locator("tr.case-row").count() == 1
    review = live.call(lambda: live.runtime.review.review("guild-a", s.abuse))
    assert review.state is ReviewState.REVIEWED and review.outcome == "upheld" and review.by == "mod-a"
    page.goto(f"{live.url}/cases?review=reviewed")
    with page.expect_download() as download:
        page.click("#export-csv-actions")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert (rows[0]["case_id"], rows[0]["action"]) == (str(s.abuse), "end")
    assert [r["action"] for r in rows[1:]] == ["assign", "review"]  # the case, then its two actions
    SHOTS.mkdir(exist_ok=True)
    page.goto(f"{live.url}/cases?review=all")
    page.screenshot(path=str(SHOTS / "review-list.png"), full_page=True)


def test_another_moderator_takes_over_a_case_in_review(page: Page, live: LiveDashboard):
    s = live.seeded
    live.call(lambda: live.runtime.moderation.take("guild-a", s.user_end, Author("dashboard:mod-a", "mod-a")))
    sign_in(page, live, "root")
    page.goto(f"{live.url}/cases/guild-a/{s.user_end}")
    expect(page.locator("#assign")).to_have_text("Take over this case")
    page.click("#assign")
    expect(page.locator("#review-assignee")).to_have_text("root")


def test_the_appeals_queue_and_the_decision_reach_the_case_and_the_member(page: Page, live: LiveDashboard):
    s = live.seeded
    answer = live.call(lambda: live.runtime.review.file_appeal("guild-a", s.risk, ALICE, "I needed help, not an end"))
    assert answer.result is AppealResult.FILED
    again = live.call(lambda: live.runtime.review.file_appeal("guild-a", s.risk, ALICE, "again"))
    assert again.result is AppealResult.DUPLICATE
    sign_in(page, live, "mod-a")
    assert _counts(page)["appeals"] == 1
    page.click("#nav-appeals")
    rows = page.locator("tr.appeal-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-case", str(s.risk))
    expect(rows.first.locator(".appeal-text")).to_have_text("I needed help, not an end")
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "appeals-queue.png"), full_page=True)
    page.goto(f"{live.url}/cases/guild-a/{s.risk}")
    expect(page.locator("#appeals .appeal-open")).to_have_count(1)
    page.goto(f"{live.url}/appeals")
    rows.first.locator(".decide-reopen").click()
    expect(page.locator("#flash")).to_contain_text("on its way to the member")
    expect(page.locator("#no-appeals")).to_be_visible()

    thread = s.threads["risk"]
    assert live.call(lambda: live.runtime.member_actions.thread_state(thread)).status is ThreadStatus.ACTIVE
    notices = live.call(lambda: live.runtime.notices.pop_notices("discord"))
    decision = [n for n in notices if n.member == ALICE.id]
    assert len(decision) == 1 and decision[0].action == "reopen" and decision[0].case_id == s.risk
    assert any("appeal" in r.text for r in decision[0].replies)
    page.goto(f"{live.url}/cases/guild-a/{s.risk}")
    expect(page.locator("#appeals .appeal-reopened")).to_have_count(1)
    expect(page.locator("#review-outcome")).to_have_text("reopened")
    # a second decision on the same appeal changes nothing
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    response = page.request.post(f"{live.url}/appeals/guild-a/{s.risk}/{ALICE.id}/uphold", form={"csrf": csrf},
                                 headers={"Origin": live.url})
    assert response.ok and "already decided" in response.text()


def test_the_member_page_lists_every_ended_thread_of_the_member(page: Page, live: LiveDashboard,
                                                                alice_again: int):
    s = live.seeded
    sign_in(page, live, "mod-a")
    page.goto(f"{live.url}/cases/guild-a/{s.abuse}")
    page.locator("#participants a.member-link", has_text="alice").click()
    expect(page).to_have_url(re.compile(r"/members/guild-a/u-alice$"))
    expect(page.locator("#repeat-marker")).to_contain_text("2 endings for abuse")
    assert sorted(_row_ids(page)) == sorted([s.abuse, s.risk, alice_again])  # her own /end too
    expect(page.locator("#member-ends")).to_contain_text("3 threads across 3 channels")
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "member-page.png"), full_page=True)
    page.goto(f"{live.url}/members/guild-a/{BOB.id}")
    expect(page.locator("#repeat-marker")).to_have_count(0)
    # one of alice's abuse endings reviewed as mistaken: no longer a repeat
    live.call(lambda: live.runtime.moderation.conclude("guild-a", alice_again, "mistaken", Author("d:mod-a", "mod-a")))
    page.goto(f"{live.url}/members/guild-a/u-alice")
    expect(page.locator("#repeat-marker")).to_have_count(0)
    assert page.goto(f"{live.url}/members/guild-b/{BOB.id}").status == 404  # not mod-a's community


def test_rtl_and_3000_character_payloads_render_isolated_and_wrapped(page: Page, live: LiveDashboard,
                                                                     payload_case: int):
    sign_in(page, live, "mod-a")
    for path in ("/cases?review=all&participant=u-rtl", f"/cases/guild-a/{payload_case}",
                 "/members/guild-a/u-rtl"):
        page.goto(live.url + path)
        # every member-supplied name sits in its own <bdi>: the override cannot reach what follows
        names = page.locator("bdi", has_text=RLO + "evil-name")
        assert names.count() >= 1
        assert names.evaluate_all(f"bs => bs.every(b => b.textContent.startsWith('{RLO}'))")
        wide = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 0, f"{path}: the page scrolls sideways by {wide}px"
    page.goto(f"{live.url}/cases/guild-a/{payload_case}")
    # the ids after the RTL name still read left to right
    participants = page.locator("#participants")
    assert "(u-rtl)" in participants.inner_text()
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    text = page.locator("#transcript .text", has_text=LONG[:100]).first
    assert text.get_attribute("dir") == "auto"
    box = text.bounding_box()
    assert box is not None and box["width"] <= 1280
    page.goto(f"{live.url}/members/guild-a/u-long")
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    page.goto(f"{live.url}/cases?review=all&participant=u-long")
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "rtl-and-long.png"), full_page=True)
