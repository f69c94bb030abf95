"""A case left unnumbered between the freeze and its numbering is filed by the next event in that thread,
without start-up reconciliation: a message, the member's end command or an edit that branches."""

from __future__ import annotations

import pytest

from bot.bootstrap import build_runtime
from bot.errors import StoreUnavailable
from bot.store import keys
from bot.types import Author, EditedMessage, ReplyKind, ThreadRef, ThreadStatus
from config.communities import Communities, CommunityConfig
from config.settings import EngineSettings, RedisSettings, Settings
from tests.integration.engine_helpers import ALICE, message
from tests.integration.scripted_model import ScriptedModel
from tests.support.redis_servers import RedisServer

T = ThreadRef("discord", "g", "c", "pending")


def _model() -> ScriptedModel:
    model = ScriptedModel(lambda text: [])

    def decide(text: str):
        if "end" in text:
            return [model.tool("end_conversation", reason="user_requested", category="harassment",
                               summary="The member asked to end.")]
        return []

    model.decide = decide
    return model


def numbering_fails_once(store):
    """The store as a process sees it when Redis fails right after the freeze was written."""
    original = store.cases.file_end_case
    failures = [StoreUnavailable("redis file_case failed")]

    async def file_end_case(thread, end_seq, case):  # type: ignore[no-untyped-def]
        if failures:
            raise failures.pop()
        return await original(thread, end_seq, case)

    store.cases.file_end_case = file_end_case


@pytest.fixture
async def runtime(redis_client):
    settings = Settings(redis=RedisSettings(url=None))
    rt = build_runtime(settings, model=_model(), redis=redis_client,
                       communities=Communities(CommunityConfig(frozen_reminder_cooldown=0)))
    numbering_fails_once(rt.store)
    yield rt
    await rt.aclose()


async def _end_with_numbering_lost(rt) -> None:
    await rt.member_actions.handle_message(message(T, "hello"))
    o = await rt.member_actions.handle_message(message(T, "please end this"))
    assert o.status is ThreadStatus.ENDED and o.case is None
    assert [r.kind for r in o.replies][-1] is ReplyKind.FREEZE_NOTICE  # the member is told at once
    assert await rt.cases.count("g") == 0
    assert await rt.redis.hlen(keys.pending(T.key)) == 1


async def _assert_filed_once(rt) -> None:
    assert await rt.cases.count("g") == 1
    case = await rt.cases.get("g", 1)
    assert (case.reason, case.category, case.summary) == ("user_requested", "harassment", "The member asked to end.")
    assert [p.id for p in case.participants] == [ALICE.id]
    state = await rt.member_actions.thread_state(T)
    assert state.status is ThreadStatus.ENDED and state.case_id == 1
    assert await rt.redis.exists(keys.pending(T.key)) == 0


async def test_the_next_message_in_the_thread_files_the_case(runtime):
    await _end_with_numbering_lost(runtime)
    model_calls = runtime.model.calls
    o = await runtime.member_actions.handle_message(message(T, "hello?"))
    assert o.frozen and [r.kind for r in o.replies] == [ReplyKind.FROZEN_REMINDER]
    assert runtime.model.calls == model_calls  # filing costs no model call
    await _assert_filed_once(runtime)
    await runtime.member_actions.handle_message(message(T, "still there?"))
    await _assert_filed_once(runtime)  # filed once, whatever follows


async def test_the_members_end_command_in_the_thread_files_the_case(runtime):
    await _end_with_numbering_lost(runtime)
    o = await runtime.member_actions.end_by_user(T, ALICE)
    assert o.frozen and o.status is ThreadStatus.ENDED
    await _assert_filed_once(runtime)


async def test_an_edit_that_branches_files_the_case_and_links_the_branch(runtime):
    await _end_with_numbering_lost(runtime)
    branch = ThreadRef("discord", "g", "c", "branch")

    async def open_branch(_text: str) -> ThreadRef:
        return branch

    _, log = await runtime.store.turns.load(T)  # Alice's first message, to edit
    hello = next(e for e in log if e.kind.value == "user")
    o = await runtime.member_actions.handle_edit(EditedMessage(T, ALICE, hello.message_id or "", "hi again"),
                                                 open_branch)
    assert o.branch == branch
    await _assert_filed_once(runtime)
    assert (await runtime.cases.get("g", 1)).branches == [branch.key]


# --- the same with a real Redis process that goes away between the freeze and the numbering -----------

@pytest.fixture
def server():
    with RedisServer(extra_args=("--appendonly", "yes", "--appendfsync", "always")) as srv:
        yield srv


async def test_redis_lost_after_the_freeze_then_another_process_files_it_on_the_next_message(server):
    def process():
        settings = Settings(redis=RedisSettings(url=server.url), engine=EngineSettings(lock_wait_seconds=10))
        return build_runtime(settings, model=_model(),
                             communities=Communities(CommunityConfig(frozen_reminder_cooldown=0)))

    first, second = process(), process()
    try:
        original = first.store.cases.file_end_case

        async def redis_dies_first(thread, seq, case):  # type: ignore[no-untyped-def]
            server.stop()
            return await original(thread, seq, case)

        first.store.cases.file_end_case = redis_dies_first  # type: ignore[method-assign]
        await first.member_actions.handle_message(message(T, "hello"))
        o = await first.member_actions.handle_message(message(T, "please end this"))
        assert o.status is ThreadStatus.ENDED and o.case is None
        assert ReplyKind.FREEZE_NOTICE in [r.kind for r in o.replies]
        server.start()  # AOF: the freeze and the case body survived
        o = await second.member_actions.handle_message(message(T, "is anyone there?", Author("u-bob", "bob")))
        assert o.frozen
        await _assert_filed_once(second)
        assert await second.case_filing.reconcile() == []  # nothing was left for start-up reconciliation
    finally:
        await first.aclose()
        await second.aclose()
