"""Editing an earlier message of an ended thread branches; moderators reopen; unexpected errors stay hidden."""

from __future__ import annotations

import pytest

from bot.bootstrap import build_runtime
from bot.types import Author, EditedMessage, EntryKind, IncomingMessage, ReplyKind, ThreadRef, ThreadStatus
from config.communities import Communities, CommunityConfig
from config.settings import AnthropicSettings, RedisSettings, Settings
from tests.integration.scripted_model import ScriptedModel

OLD = ThreadRef("discord", "g", "c", "old")
ANN = Author("ann", "Ann")
BAD = "how do I build a bomb"


@pytest.fixture
async def runtime(redis_client):
    rt = build_runtime(Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None)),
                       redis=redis_client, communities=Communities(CommunityConfig(threshold=2)))
    yield rt
    await rt.aclose()


async def ended_thread(members) -> list[str]:
    texts = ["hi", BAD, BAD, BAD]  # threshold 2: warned in turn 2, ended in turn 3
    for i, text in enumerate(texts):
        o = await members.handle_message(IncomingMessage(OLD, ANN, text, message_id=f"old-{i}",
                                                        jump_url="https://chat/old"))
    assert o.status is ThreadStatus.ENDED
    return [f"old-{i}" for i in range(len(texts))]


async def test_edit_in_ended_thread_branches_with_the_prefix_ladder(runtime):
    members = runtime.member_actions
    ids = await ended_thread(members)
    opened: list[str] = []

    async def open_branch(first_text: str) -> ThreadRef:
        opened.append(first_text)
        return ThreadRef("discord", "g", "c", "branch-1")

    # edit the 3rd message (after one redirection, before the warning)
    o = await members.handle_edit(EditedMessage(OLD, ANN, ids[2], "tell me about rockets instead"), open_branch)
    assert o.branch == ThreadRef("discord", "g", "c", "branch-1") and opened == ["tell me about rockets instead"]
    assert [r.kind for r in o.replies] == [ReplyKind.ANSWER] and "rockets" in o.replies[0].text
    state, log = await runtime.store.turns.load(o.branch)
    assert state.branch_of == OLD.key and state.ladder.redirects == 1 and not state.ladder.warned
    assert [e.text for e in log if e.kind is EntryKind.USER] == ["hi", BAD, "tell me about rockets instead"]
    assert any(e.kind is EntryKind.BRANCH for e in log)
    case = await runtime.cases.get("g", 1)
    assert case.branches == [o.branch.key] and case.jump_url == "https://chat/old"
    # the same edit delivered again does not branch twice
    again = await members.handle_edit(EditedMessage(OLD, ANN, ids[2], "tell me about rockets instead"), open_branch)
    assert again.duplicate and len(opened) == 1
    # the old thread stays ended
    assert (await members.thread_state(OLD)).status is ThreadStatus.ENDED


async def test_branch_after_the_warning_keeps_the_warning(runtime):
    members = runtime.member_actions
    ids = await ended_thread(members)

    async def open_branch(_: str) -> ThreadRef:
        return ThreadRef("discord", "g", "c", "branch-2")

    o = await members.handle_edit(EditedMessage(OLD, ANN, ids[3], BAD), open_branch)
    # the prefix held the warning from an earlier turn: persisting ends the branch at once
    assert o.status is ThreadStatus.ENDED and o.case is not None and o.case.branch_of == OLD.key


async def test_edits_that_do_not_branch(runtime):
    members = runtime.member_actions

    async def never(_: str) -> ThreadRef:
        raise AssertionError("no branch expected")

    await members.handle_message(IncomingMessage(OLD, ANN, "hi", message_id="a1"))
    active = await members.handle_edit(EditedMessage(OLD, ANN, "a1", "hello"), never)
    assert active.status is ThreadStatus.ACTIVE and active.replies == [] and active.branch is None
    await members.end_by_user(OLD, ANN)
    other = await members.handle_edit(EditedMessage(OLD, Author("bob", "Bob"), "a1", "mine now"), never)
    assert [r.kind for r in other.replies] == [ReplyKind.INFO] and "couldn't find" in other.replies[0].text
    empty = await members.handle_edit(EditedMessage(OLD, ANN, "a1", "   "), never)
    assert [r.kind for r in empty.replies] == [ReplyKind.INFO] and "empty" in empty.replies[0].text


async def test_moderator_reopen(runtime):
    members = runtime.member_actions
    await ended_thread(members)
    mod = Author("mod-1", "Mia")
    o = await runtime.moderation.reopen("g", 1, mod)
    assert o.status is ThreadStatus.ACTIVE and o.thread == OLD and o.action.action == "reopen"
    assert [r.kind for r in o.replies] == [ReplyKind.INFO] and "reopened" in o.replies[0].text
    state = await members.thread_state(OLD)
    assert state.status is ThreadStatus.ACTIVE and state.ladder.redirects == 0
    answer = await members.handle_message(IncomingMessage(OLD, ANN, "thanks", message_id="after"))
    assert [r.kind for r in answer.replies] == [ReplyKind.ANSWER]
    case = await runtime.cases.get("g", 1)
    assert case.actions == [2]
    action = await runtime.cases.get("g", 2)
    assert (action.action, action.refers_to, action.ended_by) == ("reopen", 1, "moderator:mod-1")
    twice = await runtime.moderation.reopen("g", 1, mod)
    assert "not ended" in twice.replies[0].text and twice.action is None
    not_an_end = await runtime.moderation.reopen("g", 2, mod)
    assert "not an ended thread" in not_an_end.replies[0].text


async def test_unexpected_errors_are_hidden_and_release_the_thread(redis_client):
    def boom(text: str):
        raise RuntimeError("secret internal detail")

    model = ScriptedModel(boom)
    rt = build_runtime(Settings(redis=RedisSettings(url=None)), model=model, redis=redis_client)
    o = await rt.member_actions.handle_message(IncomingMessage(OLD, ANN, "hi", message_id="x1"))
    assert [r.kind for r in o.replies] == [ReplyKind.ERROR] and "secret" not in o.replies[0].text
    model.decide = lambda text: []
    o = await rt.member_actions.handle_message(IncomingMessage(OLD, ANN, "hi", message_id="x1"))
    assert [r.kind for r in o.replies] == [ReplyKind.ANSWER]


async def test_new_conversation_in_a_place_without_threads(runtime):
    members = runtime.member_actions
    dm = ThreadRef("discord", "dm", "dm-chan", "dm-chan")
    assert await members.conversation_in(dm) == dm
    await members.handle_message(IncomingMessage(dm, ANN, "hi", message_id="d1"))
    await members.end_by_user(dm, ANN)
    frozen = await members.handle_message(IncomingMessage(dm, ANN, "hello?", message_id="d2"))
    assert frozen.frozen
    fresh = await members.new_conversation_in(dm)
    assert fresh != dm and await members.conversation_in(dm) == fresh
    o = await members.handle_message(IncomingMessage(fresh, ANN, "hello again", message_id="d3"))
    assert [r.kind for r in o.replies] == [ReplyKind.ANSWER]
    assert (await members.thread_state(dm)).status is ThreadStatus.ENDED
    assert await members.new_conversation_in(dm) != fresh


async def test_only_participants_can_end_a_conversation(runtime):
    members = runtime.member_actions
    await members.handle_message(IncomingMessage(OLD, ANN, "hi", message_id="p1"))
    stranger = await members.end_by_user(OLD, Author("mallory", "Mallory"))
    assert [r.kind for r in stranger.replies] == [ReplyKind.INFO] and "taking part" in stranger.replies[0].text
    assert (await members.thread_state(OLD)).status is ThreadStatus.ACTIVE
    own = await members.end_by_user(OLD, ANN)
    assert own.status is ThreadStatus.ENDED and own.case.ended_by == "user:ann"


async def test_notices_for_another_process_are_handed_out_once_in_order(runtime):
    members = runtime.member_actions
    await ended_thread(members)
    reopened = await runtime.moderation.reopen("g", 1, Author("mod", "Mod"))
    await runtime.notices.queue_notice(reopened, "reopen", case_id=1)
    await runtime.store.notices.push_notice("discord", "{not json")
    other = ThreadRef("slack", "T", "C", "1.2")
    await runtime.notices.queue_notice(type(reopened)(other, replies=reopened.replies), "reopen", case_id=9)
    got = await runtime.notices.pop_notices("discord")
    assert [(n.thread, n.action, n.case_id) for n in got] == [(OLD, "reopen", 1)]
    assert got[0].replies == reopened.replies
    assert await runtime.notices.pop_notices("discord") == []
    assert [n.thread for n in await runtime.notices.pop_notices("slack")] == [other]
