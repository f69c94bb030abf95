"""Two engine instances on one real Redis: serialized turns, exact counts, exactly one end and one case.

A message accepted by the engine that does not own its thread is answered by the owner, which hands the
outcome to the platform's delivery sink; both engines register a collecting sink here.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio

from bot.bootstrap import build_runtime
from bot.types import Author, IncomingMessage, ReplyKind, ThreadRef, ThreadStatus
from config.communities import Communities, CommunityConfig
from config.settings import EngineSettings, PipelineSettings, RedisSettings, Settings, StoreSettings
from tests.integration.engine_helpers import CollectingSink
from tests.integration.scripted_model import ScriptedModel

T = ThreadRef("slack", "T1", "C1", "1700000000.000100")


def two_engines(redis_server, model, threshold=20):
    runtimes = []
    for _ in range(2):
        client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
        settings = Settings(redis=RedisSettings(url=None), engine=EngineSettings(lock_wait_seconds=60),
                            pipeline=PipelineSettings(max_inbox=60))
        rt = build_runtime(settings, model=model, redis=client,
                           communities=Communities(CommunityConfig(threshold=threshold)))
        rt.sink = CollectingSink()
        rt.pipeline.register_sink("slack", rt.sink)
        runtimes.append(rt)
    return runtimes


async def everything(runtimes, outcomes):
    """The outcomes returned to callers plus those delivered through the sinks, once all turns ran."""
    for rt in runtimes:
        assert await rt.pipeline.idle(30)
    return [o for o in outcomes if not o.queued] + [o for rt in runtimes for o in rt.sink.outcomes]


@pytest.fixture
async def pair(redis_server, redis_client):
    holder = {}

    def make(model, threshold=20):
        holder["rts"] = two_engines(redis_server, model, threshold)
        return holder["rts"]

    yield make
    for rt in holder.get("rts", []):
        await rt.store.health.aclose()


def msg(i: int, thread: ThreadRef = T, text: str = "bad request", event: str | None = None) -> IncomingMessage:
    return IncomingMessage(thread, Author(f"u{i % 3}", f"user{i % 3}"), f"{text} {i}", message_id=f"m{i}",
                           event_id=event)


async def test_fifty_messages_into_one_thread_never_overlap_and_count_exactly(pair):
    model = ScriptedModel(lambda text: [ScriptedModel.tool(model, "record_redirection", category="harassment",
                                                            note="n"), ], delay=0.003)
    a, b = pair(model)
    outcomes = await asyncio.gather(*((a if i % 2 else b).member_actions.handle_message(msg(i)) for i in range(50)))
    outcomes = await everything([a, b], outcomes)
    assert len(outcomes) == 50
    assert all(o.replies and o.replies[0].kind is ReplyKind.ANSWER for o in outcomes)
    warnings = [r for o in outcomes for r in o.replies if r.kind is ReplyKind.WARNING]
    assert len(warnings) == 1 and "20 times" in warnings[0].text
    assert model.max_in_flight == 1
    state, log = await a.store.turns.load(T)
    assert state.ladder.redirects == 50 and state.ladder.turn == 50
    kinds = [e.kind.value for e in log]
    assert kinds.count("user") == 50 and kinds.count("assistant") == 50 and kinds.count("redirection") == 50
    assert sorted(e.message_id for e in log if e.kind.value == "user") == sorted(f"m{i}" for i in range(50))


async def test_racing_ends_give_exactly_one_freeze_and_one_case(pair):
    model = ScriptedModel(lambda text: [ScriptedModel.tool(model, "end_conversation", reason="user_requested",
                                                            category="other", summary="asked")])
    a, b = pair(model)
    author = Author("u0", "user0")
    jobs = [(a if i % 2 else b).member_actions.handle_message(msg(i)) for i in range(30)]
    jobs += [a.member_actions.end_by_user(T, author), b.member_actions.end_by_user(T, author)]
    outcomes = await everything([a, b], await asyncio.gather(*jobs))
    notices = [r for o in outcomes for r in o.replies if r.kind is ReplyKind.FREEZE_NOTICE]
    cases = [o.case for o in outcomes if o.case is not None]
    assert len(notices) == 1 and len(cases) == 1
    assert await a.cases.count("T1") == 1
    assert (await a.member_actions.thread_state(T)).status is ThreadStatus.ENDED
    assert await a.store.cases.threads_with_pending_cases() == []
    # every model call happened before the end; none after
    assert model.calls <= 1


async def test_redelivered_event_is_answered_once(pair):
    model = ScriptedModel(lambda text: [])
    a, b = pair(model)
    first = msg(1, event="Ev123")
    redelivery = IncomingMessage(T, first.author, first.text, message_id="m1", event_id="Ev123")
    outcomes = await asyncio.gather(a.member_actions.handle_message(first), b.member_actions.handle_message(redelivery),
                                    a.member_actions.handle_message(redelivery))
    assert sum(not o.duplicate for o in outcomes) == 1
    assert model.calls == 1
    _, log = await a.store.turns.load(T)
    assert [e.message_id for e in log if e.kind.value == "user"] == ["m1"]


async def test_a_turn_with_tool_rounds_longer_than_the_lock_ttl_keeps_its_lock(redis_client):
    model = ScriptedModel(lambda text: [ScriptedModel.tool(model, "record_redirection", category="other", note="n")],
                          delay=0.25)
    settings = Settings(redis=RedisSettings(url=None), store=StoreSettings(lock_ttl_seconds=0.4))
    rt = build_runtime(settings, model=model, redis=redis_client)
    outcome = await rt.member_actions.handle_message(msg(1))
    assert model.calls == 2  # the tool round and the answer: 0.5 s in all, past the 0.4 s TTL
    assert [r.kind for r in outcome.replies] == [ReplyKind.ANSWER]
    assert (await rt.member_actions.thread_state(T)).ladder.redirects == 1
