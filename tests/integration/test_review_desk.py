"""The review desk on every store (server, cluster, in-process): review state, appeals once per member,
decisions queued for the member's platform, members' end history and the opt-in repeat policy."""

from __future__ import annotations

import asyncio

import pytest

from bot.bootstrap import build_runtime
from bot.moderation import Decision
from bot.review import AppealResult, ReviewState
from bot.types import Author, EntryKind, IncomingMessage, ReplyKind, ThreadRef, ThreadStatus
from config.communities import Communities, CommunityConfig
from config.settings import AnthropicSettings, RedisSettings, Settings

BAD = "how do I build a bomb"
ANN = Author("ann", "Ann")
EVE = Author("eve", "Eve")
MOD = Author("dashboard:mod", "mod")


def runtime_on(client, **config):
    settings = Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None))
    default = CommunityConfig(threshold=2, **config)
    return build_runtime(settings, redis=client, communities=Communities(default))


async def end_thread(members, thread: ThreadRef, author: Author = ANN) -> int:
    for i, text in enumerate(["hi", BAD, BAD, BAD]):
        outcome = await members.handle_message(IncomingMessage(thread, author, text, message_id=f"{thread.thread}-{i}"))
    assert outcome.status is ThreadStatus.ENDED and outcome.case is not None
    return outcome.case.case_id


@pytest.fixture
async def runtime(any_redis):
    rt = runtime_on(any_redis)
    yield rt
    await rt.aclose()


async def test_review_state_moves_from_unreviewed_to_in_review_to_reviewed(runtime):
    desk, moderation = runtime.review, runtime.moderation
    n = await end_thread(runtime.member_actions, ThreadRef("discord", "g", "c", "t1"))
    assert (await desk.review("g", n)).state is ReviewState.UNREVIEWED
    assert await moderation.take("g", n, MOD) == "ok"
    review = await desk.review("g", n)
    assert review.state is ReviewState.IN_REVIEW and review.assignee == "mod"
    assert await moderation.take("g", n, Author("dashboard:other", "other")) == "taken"
    assert await moderation.take("g", n, Author("dashboard:other", "other"), take_over=True) == "ok"
    await moderation.conclude("g", n, "upheld", MOD, "fair ending")
    review = await desk.review("g", n)
    assert review.state is ReviewState.REVIEWED and review.outcome == "upheld"
    assert await moderation.take("g", n, MOD) == "reviewed"
    case = await runtime.cases.get("g", n)
    actions = [await runtime.cases.get("g", a) for a in case.actions]
    assert [a.action for a in actions] == ["assign", "assign", "review"]  # audit entries, nested by refers_to
    assert all(a.refers_to == n for a in actions)


async def test_an_appeal_is_filed_once_per_member_and_the_decision_goes_to_the_member(runtime):
    desk, members = runtime.review, runtime.member_actions
    thread = ThreadRef("slack", "T1", "C1", "1700000000.000100")
    n = await end_thread(members, thread)
    first = await desk.file_appeal("T1", n, ANN, "I was asking about a chemistry class")
    again = await desk.file_appeal("T1", n, ANN, "please")
    stranger = await desk.file_appeal("T1", n, EVE, "me too")
    assert (first.result, again.result, stranger.result) == (
        AppealResult.FILED, AppealResult.DUPLICATE, AppealResult.NOT_PARTICIPANT)
    assert (await desk.file_appeal("T1", 999, ANN, "")).result is AppealResult.NOT_APPEALABLE
    queue = await desk.open_appeals(["T1"])
    assert [(a.case_id, a.member_id, a.text) for a in queue] == [(n, "ann", "I was asking about a chemistry class")]

    assert await runtime.moderation.decide_appeal("T1", n, "ann", "reopen", MOD) is Decision.DECIDED
    assert await runtime.moderation.decide_appeal("T1", n, "ann", "uphold", MOD) is not Decision.DECIDED  # once
    assert await desk.open_appeals(["T1"]) == []
    assert (await members.thread_state(thread)).status is ThreadStatus.ACTIVE
    [notice] = await runtime.notices.pop_notices("slack")
    assert notice.action == "reopen" and notice.member == "ann" and notice.case_id == n
    assert any("reopened" in r.text.lower() or "open again" in r.text for r in notice.replies)
    review = await desk.review("T1", n)
    assert review.state is ReviewState.REVIEWED and review.outcome == "reopened"
    [appeal] = await desk.appeals_of("T1", n)
    assert appeal.status == "reopened" and appeal.decided_by == "mod"


async def test_an_upheld_appeal_keeps_the_thread_ended_and_tells_the_member(runtime):
    desk, members = runtime.review, runtime.member_actions
    thread = ThreadRef("discord", "g", "c", "t2")
    n = await end_thread(members, thread)
    assert (await desk.file_appeal("g", n, ANN, "")).result is AppealResult.FILED
    assert await runtime.moderation.decide_appeal("g", n, "ann", "uphold", MOD) is Decision.DECIDED
    assert (await members.thread_state(thread)).status is ThreadStatus.ENDED
    [notice] = await runtime.notices.pop_notices("discord")
    assert notice.action == "appeal" and notice.member == "ann"
    assert [r.kind for r in notice.replies] == [ReplyKind.INFO] and "upheld" in notice.replies[0].text


async def test_the_repeat_policy_warns_a_member_with_recent_ends_at_the_first_redirection(any_redis):
    rt = runtime_on(any_redis, repeat_ends=2, repeat_days=30)
    try:
        members = rt.member_actions
        fresh = ThreadRef("discord", "g", "c", "fresh")
        await end_thread(members, ThreadRef("discord", "g", "c", "e1"))
        # one end so far: the ordinary threshold (2) applies
        o = await members.handle_message(IncomingMessage(fresh, ANN, BAD, message_id="f-1"))
        assert ReplyKind.WARNING not in [r.kind for r in o.replies]
        await end_thread(members, ThreadRef("discord", "g", "c", "e2"))
        newer = ThreadRef("discord", "g", "c", "newer")
        o = await members.handle_message(IncomingMessage(newer, ANN, BAD, message_id="n-1"))
        assert ReplyKind.WARNING in [r.kind for r in o.replies]
        _, log = await rt.store.turns.load(newer)
        assert [e.kind for e in log if e.kind in (EntryKind.REDIRECTION, EntryKind.WARNING)] == [
            EntryKind.REDIRECTION, EntryKind.WARNING]
        # another member starts from zero
        o = await members.handle_message(IncomingMessage(ThreadRef("discord", "g", "c", "eve"), EVE, BAD,
                                                        message_id="e-1"))
        assert ReplyKind.WARNING not in [r.kind for r in o.replies]
    finally:
        await rt.aclose()


async def test_the_repeat_policy_is_off_by_default(runtime):
    members = runtime.member_actions
    for t in ("a", "b", "c"):
        await end_thread(members, ThreadRef("discord", "g", "c", t))
    o = await members.handle_message(IncomingMessage(ThreadRef("discord", "g", "c", "d"), ANN, BAD, message_id="d"))
    assert ReplyKind.WARNING not in [r.kind for r in o.replies]


async def test_forget_user_removes_the_members_appeal_words_and_end_history(runtime, any_redis):
    from bot.store.retention import Retention
    from bot.store.review import REMOVED, ends_key

    n = await end_thread(runtime.member_actions, ThreadRef("discord", "g", "c", "forget"))
    await runtime.review.file_appeal("g", n, ANN, "my own words")
    assert await any_redis.exists(ends_key("g", "ann"))
    report = await Retention(any_redis, case_retention_days=365, idle_ttl_days=30).forget_user("discord", "ann")
    assert report.appeals_changed == 1
    [appeal] = await runtime.review.appeals_of("g", n)
    assert (appeal.text, appeal.member_name, appeal.status) == (REMOVED, REMOVED, "open")
    assert not await any_redis.exists(ends_key("g", "ann"))


async def test_only_abuse_endings_that_stand_count_towards_the_repeat_policy(any_redis):
    rt = runtime_on(any_redis, repeat_ends=2, repeat_days=30)
    try:
        members, desk = rt.member_actions, rt.review
        for t in ("u1", "u2"):  # the member asked to end: no strike
            thread = ThreadRef("discord", "g", "c", t)
            await members.handle_message(IncomingMessage(thread, ANN, "hi", f"{t}-1"))
            await members.end_by_user(thread, ANN)
        o = await members.handle_message(IncomingMessage(ThreadRef("discord", "g", "c", "x"), ANN, BAD, "x-1"))
        assert ReplyKind.WARNING not in [r.kind for r in o.replies]
        first = await end_thread(members, ThreadRef("discord", "g", "c", "a1"))
        await end_thread(members, ThreadRef("discord", "g", "c", "a2"))
        assert await desk.threshold_for("g", ANN.id, 2) == 1
        await rt.moderation.conclude("g", first, "mistaken", MOD)  # a mistaken ending no longer counts
        assert await desk.threshold_for("g", ANN.id, 2) == 2
    finally:
        await rt.aclose()


async def test_two_moderators_deciding_one_appeal_at_once_make_one_decision(runtime):
    desk, members, moderation = runtime.review, runtime.member_actions, runtime.moderation
    thread = ThreadRef("discord", "g", "c", "t-race")
    n = await end_thread(members, thread)
    assert (await desk.file_appeal("g", n, ANN, "")).result is AppealResult.FILED
    other = Author("dashboard:other", "other")
    decided = await asyncio.gather(moderation.decide_appeal("g", n, "ann", "uphold", MOD),
                                   moderation.decide_appeal("g", n, "ann", "reopen", other))
    assert sorted(decided) == [Decision.DECIDED, Decision.NOT_OPEN]
    assert len(await runtime.notices.pop_notices("discord")) == 1  # the member hears one decision
    assert [a.status for a in await desk.appeals_of("g", n)] in (["upheld"], ["reopened"])
