"""Redis restarted in the middle of a conversation: users are told, the bot recovers, no case is lost."""

from __future__ import annotations

import threading

import pytest

from bot.bootstrap import build_runtime
from bot.errors import StoreUnavailable
from bot.types import ReplyKind, ThreadRef, ThreadStatus
from config.communities import Communities, CommunityConfig
from config.settings import EngineSettings, RedisSettings, Settings, StoreSettings
from tests.integration.engine_helpers import message
from tests.integration.scripted_model import ScriptedModel
from tests.support.redis_servers import RedisServer

T1 = ThreadRef("discord", "g", "c", "ended-thread")
T2 = ThreadRef("discord", "g", "c", "live-thread")


@pytest.fixture
def server():
    with RedisServer(extra_args=("--appendonly", "yes", "--appendfsync", "always")) as srv:
        yield srv


@pytest.fixture
async def runtime(server):
    def decide(text):
        if "end" in text:
            return [model.tool("end_conversation", reason="user_requested", category="other", summary="asked")]
        return []

    model = ScriptedModel(decide)
    settings = Settings(redis=RedisSettings(url=server.url),
                        engine=EngineSettings(lock_wait_seconds=10), store=StoreSettings(lock_ttl_seconds=1.0))
    rt = build_runtime(settings, model=model, communities=Communities(CommunityConfig()))
    yield rt
    await rt.aclose()


async def test_restart_between_turns(runtime, server):
    o = await runtime.member_actions.handle_message(message(T1, "please end"))
    assert o.case is not None and o.case.case_id == 1
    await runtime.member_actions.handle_message(message(T2, "hello"))
    server.stop()
    down = await runtime.member_actions.handle_message(message(T2, "are you there?"))
    assert [r.kind for r in down.replies] == [ReplyKind.ERROR]
    assert "storage" in down.replies[0].text and "again" in down.replies[0].text
    server.start()
    up = await runtime.member_actions.handle_message(message(T2, "are you there now?"))
    assert [r.kind for r in up.replies] == [ReplyKind.ANSWER]
    assert (await runtime.cases.get("g", 1)).reason == "user_requested"
    state, log = await runtime.store.turns.load(T2)
    assert state.ladder.turn == 2 and [e.text for e in log if e.kind.value == "user"] == [
        "hello", "are you there now?"]


async def test_restart_during_a_turn_commits_it_once_redis_is_back(runtime, server):
    await runtime.member_actions.handle_message(message(T2, "hello"))

    restarts: list[threading.Timer] = []

    def crash(text):
        if not restarts:  # Redis goes away while the model is answering, and comes back a second later
            server.stop()
            restarts.append(threading.Timer(1.0, server.start))
            restarts[0].start()
        return []

    runtime.model.decide = crash
    try:
        o = await runtime.member_actions.handle_message(message(T2, "second"))
    finally:
        for timer in restarts:  # never leave a restart running into the next test's teardown
            timer.join(30)
    assert len(restarts) == 1 and server.running
    # the finished turn's commit is retried until Redis answers: the member gets the answer, once
    assert [r.kind for r in o.replies] == [ReplyKind.ANSWER]
    runtime.model.decide = lambda text: []
    o = await runtime.member_actions.handle_message(message(T2, "third"))
    assert [r.kind for r in o.replies] == [ReplyKind.ANSWER]
    _, log = await runtime.store.turns.load(T2)
    assert [e.text for e in log if e.kind.value == "user"] == ["hello", "second", "third"]


async def test_restart_between_freeze_and_case_numbering_loses_no_case(runtime, server):
    original = runtime.store.cases.file_end_case

    async def crash_then_file(thread, seq, case):
        server.stop()
        return await original(thread, seq, case)

    runtime.store.cases.file_end_case = crash_then_file
    o = await runtime.member_actions.handle_message(message(T1, "please end"))
    # the thread did end: the member gets the notice (the adapter freezes it); the case waits for its number
    assert [r.kind for r in o.replies] == [ReplyKind.FREEZE_NOTICE]
    assert o.status is ThreadStatus.ENDED and o.case is None
    runtime.store.cases.file_end_case = original
    with pytest.raises(StoreUnavailable):
        await runtime.cases.communities()
    server.start()
    # the freeze was written atomically with the case body; start-up reconciliation numbers the case
    filed = await runtime.case_filing.reconcile()
    assert [c.case_id for c in filed] == [1]
    assert (await runtime.member_actions.thread_state(T1)).status is ThreadStatus.ENDED
    assert await runtime.case_filing.reconcile() == []
    assert await runtime.cases.count("g") == 1
    assert (await runtime.cases.get("g", 1)).reason == "user_requested"
