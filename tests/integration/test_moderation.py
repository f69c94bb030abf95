"""The moderators' use cases through the real dashboard app on a real Redis: a reopen concludes the
case's review and its waiting appeals, after which the ending can no longer be upheld and no longer counts
on its members' record (the record moderators read and the one the repeat policy reads agree); taking a
case you already hold changes nothing."""

from __future__ import annotations

import pytest

from bot.review import ReviewState
from bot.store.review import RedisReviewStore
from bot.types import IncomingMessage, ThreadRef, ThreadStatus
from tests.integration.dashboard_client import dashboard
from tests.integration.test_pending_case_next_event import numbering_fails_once
from tests.integration.test_review_desk import ANN, BAD, EVE, end_thread, runtime_on

G = "g"


@pytest.fixture
async def runtime(redis_client):
    rt = runtime_on(redis_client)
    yield rt
    await rt.aclose()


async def shared_end(runtime, name: str) -> int:
    """A thread where eve said hello and ann was abusive until it ended: both took part."""
    thread = ThreadRef("discord", G, "c", name)
    await runtime.member_actions.handle_message(IncomingMessage(thread, EVE, "hello", message_id=f"{name}-eve"))
    return await end_thread(runtime.member_actions, thread)


async def policy_record(runtime, member: str) -> int:
    """The ends the repeat policy counts against ``member``."""
    policy = RedisReviewStore(runtime.redis, retention_s=runtime.settings.store.retention_s)
    return await policy.ends_since(G, member, 0)


async def appeal_statuses(runtime, case_id: int) -> dict[str, str]:
    return {a.member_id: a.status for a in await runtime.review.appeals_of(G, case_id)}


async def test_a_dashboard_reopen_concludes_the_waiting_appeals_and_the_end_stops_counting(runtime):
    n = await shared_end(runtime, "t-dash")
    await runtime.review.file_appeal(G, n, ANN, "I was asking about a chemistry class")
    async with dashboard(runtime, [G], "mod-a", "mod-b") as (mod_a, mod_b):
        assert await mod_a.strikes(G, ANN.id) == 1 and await policy_record(runtime, ANN.id) == 1
        assert await mod_a.case_action(G, n, "reopen") == "reopened"
        assert await appeal_statuses(runtime, n) == {ANN.id: "reopened"}
        assert await runtime.review.open_appeals([G]) == []
        # a second moderator, on an appeals page loaded before the reopen, upholds: nothing changes
        assert await mod_b.decide(G, n, ANN.id, "uphold") == "not_open"
        review = await runtime.review.review(G, n)
        assert (review.state, review.outcome) == (ReviewState.REVIEWED, "reopened")
        for member in (ANN.id, EVE.id):
            assert await mod_a.strikes(G, member) == 0
            assert await policy_record(runtime, member) == 0
    [notice] = await runtime.notices.pop_notices("discord")  # the reopen notice; nothing says "upheld"
    assert notice.action == "reopen" and notice.member is None


async def test_an_appeal_decision_reopens_for_everyone_who_appealed(runtime):
    n = await shared_end(runtime, "t-appeal")
    for member in (ANN, EVE):
        await runtime.review.file_appeal(G, n, member, "")
    async with dashboard(runtime, [G], "mod-a", "mod-b") as (mod_a, mod_b):
        assert await mod_a.decide(G, n, EVE.id, "reopen") == "decided"
        assert await appeal_statuses(runtime, n) == {ANN.id: "reopened", EVE.id: "reopened"}
        assert await mod_b.decide(G, n, ANN.id, "uphold") == "not_open"
        assert (await runtime.review.review(G, n)).outcome == "reopened"
        for member in (ANN.id, EVE.id):
            assert await mod_a.strikes(G, member) == 0
            assert await policy_record(runtime, member) == 0
    [notice] = await runtime.notices.pop_notices("discord")
    assert notice.action == "reopen" and notice.member == EVE.id


async def test_an_ending_whose_thread_was_reopened_can_no_longer_be_upheld(runtime):
    n = await shared_end(runtime, "t-upheld")
    case = await runtime.cases.get(G, n)
    async with dashboard(runtime, [G], "mod-a") as (mod,):
        assert await mod.case_action(G, n, "reopen") == "reopened"
        # the appeal button was still under the old notice: ann appeals after the reopen
        await runtime.review.file_appeal(G, n, ANN, "please look again")
        await runtime.notices.pop_notices("discord")
        assert await mod.decide(G, n, ANN.id, "uphold") == "already_reopened"
        assert await appeal_statuses(runtime, n) == {ANN.id: "reopened"}
        assert await mod.case_action(G, n, "conclude", outcome="upheld") == "already_reopened"
        review = await runtime.review.review(G, n)
        assert (review.state, review.outcome) == (ReviewState.REVIEWED, "reopened")
        assert await mod.strikes(G, ANN.id) == 0 and await policy_record(runtime, ANN.id) == 0
    assert await runtime.notices.pop_notices("discord") == []  # nobody is told "the ending was upheld"
    assert (await runtime.member_actions.thread_state(ThreadRef.from_key(case.thread))).status is ThreadStatus.ACTIVE


async def test_an_upheld_review_counts_the_ending_again_on_both_records(runtime):
    n = await shared_end(runtime, "t-again")
    async with dashboard(runtime, [G], "mod-a") as (mod,):
        assert await mod.case_action(G, n, "mistaken") == "marked"
        assert await mod.strikes(G, ANN.id) == 0 and await policy_record(runtime, ANN.id) == 0
        assert await mod.case_action(G, n, "conclude", outcome="upheld") == "concluded"
        assert await mod.strikes(G, ANN.id) == 1 and await policy_record(runtime, ANN.id) == 1


async def test_taking_a_case_you_already_hold_changes_nothing(runtime):
    n = await shared_end(runtime, "t-take")
    async with dashboard(runtime, [G], "mod-a") as (mod,):
        assert await mod.case_action(G, n, "assign") == "assigned"
        first = await runtime.review.review(G, n)
        for action in ("assign", "take"):  # a double click, or a page loaded before the first click
            assert await mod.case_action(G, n, action) == "assigned"
        again = await runtime.review.review(G, n)
    assert (again.state, again.assignee, again.at) == (ReviewState.IN_REVIEW, "mod-a", first.at)
    case = await runtime.cases.get(G, n)
    assert [(await runtime.cases.get(G, a)).action for a in case.actions] == ["assign"]



async def test_an_ending_numbered_late_counts_on_both_records(runtime):
    """A failure between the freeze and its numbering leaves the case pending; numbered later, it counts
    on the member record and for the repeat policy alike."""
    numbering_fails_once(runtime.store)
    thread = ThreadRef("discord", G, "c", "t-late")
    for i, text in enumerate(["hi", BAD, BAD, BAD]):
        outcome = await runtime.member_actions.handle_message(
            IncomingMessage(thread, ANN, text, message_id=f"late-{i}"))
    assert outcome.status is ThreadStatus.ENDED and outcome.case is None
    [case] = await runtime.case_filing.reconcile()
    assert case.reason == "persistent_abuse"
    async with dashboard(runtime, [G], "mod-a") as (mod,):
        assert await mod.strikes(G, ANN.id) == 1 and await policy_record(runtime, ANN.id) == 1
