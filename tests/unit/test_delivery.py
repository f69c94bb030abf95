"""Outcome delivery, written once for every platform (``adapters.delivery``): the order of what a member
sees, the stream settled, private replies, the freeze notice's appeal button, a closed thread, the
mod-log, and queued notices. A recording surface and stream stand in for Discord and Slack (their real
surfaces run under the e2e tests)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapters.delivery import Delivery
from bot.types import Case, Outcome, Reply, ReplyKind, ThreadNotice, ThreadRef, ThreadStatus

THREAD = ThreadRef("test", "c1", "ch", "t1")


class Surface:
    """Records every call, in order."""

    def __init__(self, *, private: bool, refuse: bool = False) -> None:
        self.private_replies = private
        self.refuse = refuse
        self.calls: list[tuple[Any, ...]] = []

    async def post(self, thread: ThreadRef, reply: Reply, *, appeal: Case | None = None) -> bool:
        self.calls.append(("post", reply.text, appeal.case_id if appeal else None))
        return not self.refuse

    async def post_privately(self, thread: ThreadRef, member: str, reply: Reply) -> None:
        self.calls.append(("private", member, reply.text))

    async def post_to_member(self, thread: ThreadRef, member: str, reply: Reply) -> bool:
        self.calls.append(("to_member", member, reply.text))
        return not self.refuse

    async def close(self, thread: ThreadRef) -> None:
        self.calls.append(("close",))

    async def reopen(self, thread: ThreadRef) -> None:
        self.calls.append(("reopen",))

    async def close_again(self, thread: ThreadRef) -> None:
        self.calls.append(("close_again",))

    async def log_case(self, case: Case) -> None:
        self.calls.append(("log_case", case.case_id))

    async def log_alert(self, case: Case) -> None:
        self.calls.append(("log_alert", case.case_id))

    async def log_line(self, community: str, text: str) -> None:
        self.calls.append(("log_line", text))


class Stream:
    def __init__(self, calls: list[tuple[Any, ...]], started: bool = True) -> None:
        self.calls = calls
        self.started = started

    async def finish_behind(self) -> None:
        self.calls.append(("finish_behind",))

    async def finish(self) -> None:
        self.calls.append(("finish",))

    async def replace(self, text: str) -> None:
        self.calls.append(("replace", text))

    async def discard(self) -> None:
        self.calls.append(("discard",))


def case(n: int) -> Case:
    return Case(case_id=n, community="c1", platform="test", thread=THREAD.key, channel="ch", action="end")


def run(coro: Any) -> None:
    asyncio.run(coro)


@pytest.mark.parametrize("private", [True, False])
def test_a_streamed_answer_stands_before_its_notices_and_gets_its_last_update_after(private: bool) -> None:
    surface = Surface(private=private)
    outcome = Outcome(THREAD, replies=[Reply(ReplyKind.WARNING, "warned"), Reply(ReplyKind.CRISIS, "call 988")],
                      streamed=True)
    run(Delivery(surface).outcome(outcome, "m1", Stream(surface.calls)))
    assert surface.calls == [("finish_behind",), ("post", "warned", None), ("post", "call 988", None), ("finish",)]


def test_the_last_update_may_run_after_the_delivery() -> None:
    surface = Surface(private=True)
    later: list[str] = []
    delivery = Delivery(surface, later=lambda work, name: later.append(name))
    run(delivery.outcome(Outcome(THREAD, streamed=True), "m1", Stream(surface.calls)))
    assert surface.calls == [("finish_behind",)] and later == [f"finish {THREAD.key}"]


@pytest.mark.parametrize("private", [True, False])
def test_the_engines_final_answer_takes_the_place_of_a_stream_it_did_not_keep(private: bool) -> None:
    surface = Surface(private=private)
    outcome = Outcome(THREAD, replies=[Reply(ReplyKind.ANSWER, "I can't help with that."),
                                       Reply(ReplyKind.WARNING, "warned")])
    run(Delivery(surface).outcome(outcome, "m1", Stream(surface.calls)))
    assert surface.calls == [("replace", "I can't help with that."), ("post", "warned", None)]


def test_an_error_after_a_started_stream_is_private_where_it_can_be_and_stands_in_its_place_where_not() -> None:
    error = Outcome(THREAD, replies=[Reply(ReplyKind.ERROR, "try again", ephemeral=True)])
    slack_like, discord_like = Surface(private=True), Surface(private=False)
    run(Delivery(slack_like).outcome(error, "m1", Stream(slack_like.calls)))
    run(Delivery(discord_like).outcome(error, "m1", Stream(discord_like.calls)))
    assert slack_like.calls == [("discard",), ("private", "m1", "try again")]
    assert discord_like.calls == [("replace", "try again")]


def test_a_stream_that_showed_nothing_is_left_alone_and_every_reply_posted() -> None:
    surface = Surface(private=True)
    outcome = Outcome(THREAD, replies=[Reply(ReplyKind.ANSWER, "hello")])
    run(Delivery(surface).outcome(outcome, "m1", Stream(surface.calls, started=False)))
    assert surface.calls == [("post", "hello", None)]


def test_an_end_posts_the_freeze_notice_with_its_appeal_then_closes_the_thread_then_files_the_mod_log() -> None:
    surface = Surface(private=True)
    outcome = Outcome(THREAD, status=ThreadStatus.ENDED, case=case(7), alert=case(8), spend_alerts=["80% spent"],
                      replies=[Reply(ReplyKind.ANSWER, "bye"), Reply(ReplyKind.FREEZE_NOTICE, "ended"),
                               Reply(ReplyKind.INFO, "only you", ephemeral=True)])
    run(Delivery(surface).outcome(outcome, "m1"))
    assert surface.calls == [("post", "bye", None), ("post", "ended", 7), ("private", "m1", "only you"),
                             ("close",), ("log_case", 7), ("log_alert", 8), ("log_line", "80% spent")]


def test_nothing_is_posted_for_a_duplicate_a_queued_or_an_ignored_message() -> None:
    surface = Surface(private=True)
    for flags in ({"duplicate": True}, {"queued": True}, {"ignored": True}):
        run(Delivery(surface).outcome(Outcome(THREAD, replies=[Reply(ReplyKind.INFO, "x")], **flags), "m1"))
    assert surface.calls == []


def test_a_reopen_notice_opens_the_thread_first_and_skips_private_replies() -> None:
    surface = Surface(private=False)
    notice = ThreadNotice(THREAD, "reopen", [Reply(ReplyKind.INFO, "reopened"),
                                             Reply(ReplyKind.INFO, "nobody", ephemeral=True)], 3)
    run(Delivery(surface).notice(notice))
    assert surface.calls == [("reopen",), ("post", "reopened", None)]


@pytest.mark.parametrize("refuse", [False, True])
def test_an_appeal_decision_is_addressed_to_the_member_and_closes_the_thread_again_once_posted(refuse: bool) -> None:
    surface = Surface(private=True, refuse=refuse)
    notice = ThreadNotice(THREAD, "appeal", [Reply(ReplyKind.INFO, "upheld")], 3, member="m1")
    run(Delivery(surface).notice(notice))
    assert surface.calls == [("to_member", "m1", "upheld"), *([] if refuse else [("close_again",)])]
