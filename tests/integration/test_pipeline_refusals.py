"""What a message that gets no turn gets instead, at once, through the engine on a real redis-server: a
full inbox asks the member to slow down (only them), a thread at its length limit asks for a new
conversation, a redelivered event is a duplicate, a reply in a thread the bot takes no part in is
ignored or kept for its opening mention, and an ended thread reminds once per cooldown."""

from __future__ import annotations

import asyncio

from bot import notices
from bot.bootstrap import build_runtime
from bot.store import keys
from bot.store.inbox_entry import InboxEntry, ReplyTarget, UnknownThread
from bot.types import Author, IncomingMessage, Reply, ReplyKind, ThreadRef, ThreadStatus
from config.communities import Communities, CommunityConfig
from config.settings import PipelineSettings, RedisSettings, Settings
from tests.integration.scripted_model import ScriptedModel

ANN = Author("u-ann", "Ann")
T = ThreadRef("slack", "T1", "C1", "1700000000.000300")


def runtime(client, model, **pipeline):
    settings = Settings(redis=RedisSettings(url=None), pipeline=PipelineSettings(**pipeline))
    return build_runtime(settings, model=model, redis=client,
                         communities=Communities(CommunityConfig(frozen_reminder_cooldown=600)))


class Unreadable(InboxEntry):
    """An entry whose stored form no version of the bot could read: no text."""

    def to_json(self) -> str:
        return '{"a":"u-ann"}'


def msg(n: int, text: str = "hello", event: str | None = None) -> IncomingMessage:
    return IncomingMessage(T, ANN, f"{text} {n}", message_id=f"m{n}", event_id=event)


async def test_a_full_inbox_asks_only_that_member_to_slow_down(redis_client):
    model = ScriptedModel(lambda text: [], delay=0.5)
    rt = runtime(redis_client, model, max_inbox=2)
    try:
        first = asyncio.create_task(rt.member_actions.handle_message(msg(1)))
        while not rt.pipeline.is_draining(T.key):
            await asyncio.sleep(0.01)
        second = asyncio.create_task(rt.member_actions.handle_message(msg(2)))
        await asyncio.sleep(0.05)
        full = await rt.member_actions.handle_message(msg(3))
        assert full.replies == [Reply(ReplyKind.INFO, notices.slow_down(), ephemeral=True)] and full.thread == T
        assert not full.frozen and not full.duplicate and not full.queued
        assert [o.replies[0].kind for o in await asyncio.gather(first, second)] == [ReplyKind.ANSWER] * 2
        assert model.calls == 2
    finally:
        await rt.aclose()


async def test_a_thread_at_its_length_limit_asks_for_a_new_conversation(redis_client):
    rt = runtime(redis_client, ScriptedModel(lambda text: []), max_thread_turns=2)
    try:
        for n in (1, 2):
            assert (await rt.member_actions.handle_message(msg(n))).replies[0].kind is ReplyKind.ANSWER
        limit = await rt.member_actions.handle_message(msg(3))
        assert limit.replies == [Reply(ReplyKind.INFO, notices.thread_too_long())]  # for the whole thread
        assert limit.thread == T
        assert (await rt.member_actions.thread_state(T)).ladder.turn == 2
    finally:
        await rt.aclose()


async def test_duplicates_unknown_threads_and_parked_replies_get_no_turn(redis_client):
    model = ScriptedModel(lambda text: [])
    rt = runtime(redis_client, model)
    try:
        unknown = await rt.member_actions.accept(msg(1, event="Ev1"), unknown=UnknownThread.IGNORE)
        assert unknown.thread == T and (await unknown.result()).ignored and (await unknown.result()).thread == T
        parked = await rt.member_actions.accept(msg(2, event="Ev2"), unknown=UnknownThread.PARK)
        assert parked.accepted and parked.thread == T
        assert (await parked.result()).queued and (await parked.result()).thread == T
        assert model.calls == 0
        opening = await rt.member_actions.handle_message(msg(3, event="Ev3"))
        assert opening.replies[0].kind is ReplyKind.ANSWER
        assert await rt.pipeline.idle(10)
        assert model.calls == 2  # the opening, then the reply kept for it
        ticket = await rt.member_actions.accept(msg(3, event="Ev3"))
        again = await ticket.result()
        assert again.duplicate and not again.replies and model.calls == 2
        assert ticket.thread == again.thread == T and not ticket.accepted and not ticket.pending_cases
    finally:
        await rt.aclose()


async def test_an_ended_thread_reminds_once_per_cooldown_without_a_model_call(redis_client):
    model = ScriptedModel(lambda text: [])
    model.decide = lambda text: [model.tool("end_conversation", reason="user_requested", category="other",
                                            summary="asked")]
    rt = runtime(redis_client, model)
    try:
        assert (await rt.member_actions.handle_message(msg(1, "please end"))).status is ThreadStatus.ENDED
        calls = model.calls
        first, second = [await rt.member_actions.handle_message(msg(n)) for n in (2, 3)]
        assert first.frozen and first.status is ThreadStatus.ENDED and first.thread == T
        assert [(r.kind, r.ephemeral) for r in first.replies] == [(ReplyKind.FROZEN_REMINDER, True)]
        assert "ended" in first.replies[0].text
        assert second.frozen and second.replies == [] and model.calls == calls
    finally:
        await rt.aclose()


async def test_a_malformed_inbox_entry_is_dropped_and_the_next_one_answered(redis_client):
    from tests.integration.engine_helpers import CollectingSink

    model = ScriptedModel(lambda text: [])
    rt = runtime(redis_client, model)
    sink = CollectingSink()
    rt.pipeline.register_sink("slack", sink)
    try:
        # an entry no version of the bot could read (no text), then a good one, both left by a dead process
        bad = Unreadable("bad", msg(0), ReplyTarget(ANN.id))
        await rt.store.inbox.ingest(bad, reminder_cooldown=0, unknown=UnknownThread.ACCEPT, take_lease=False,
                                    max_inbox=10, max_turns=100)
        good = await rt.member_actions.accept(msg(1), wait=False)
        assert good.accepted and rt.pipeline.is_draining(T.key)  # owned here, from the bad head on
        assert await rt.pipeline.idle(10)
        assert [o.replies[0].kind for o in sink.outcomes] == [ReplyKind.ANSWER] and model.calls == 1
        assert await rt.redis.llen(keys.inbox(T.key)) == 0
        state = await rt.member_actions.thread_state(T)
        assert state.ladder.turn == 1
    finally:
        await rt.aclose()
