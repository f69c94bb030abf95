"""The store contract, run on a real redis-server, a 3-node Redis Cluster and the in-process Redis."""

from __future__ import annotations

import asyncio

import pytest

from bot.store import BeginStatus, CommitStatus, TurnCommit
from bot.store import keys as k
from bot.store.redis_store import RedisConversationStore
from bot.types import Case, Entry, EntryKind, LadderState, ThreadRef, ThreadState, ThreadStatus

T = ThreadRef("discord", "g1", "c1", "t1")


@pytest.fixture
def store(any_redis) -> RedisConversationStore:
    return RedisConversationStore(any_redis, lock_ttl_ms=2_000, idle_ttl_ms=60_000, ended_ttl_ms=120_000)


def user(text: str, turn: int = 0, mid: str = "m") -> Entry:
    return Entry(EntryKind.USER, text, turn=turn, author_id="u1", author_name="ann", message_id=mid, in_history=True)


def end_case(thread: ThreadRef = T) -> Case:
    return Case(case_id=0, community=thread.community, platform=thread.platform, thread=thread.key,
                channel=thread.channel, reason="persistent_abuse", category="harassment", summary="s")


async def test_first_turn_starts_empty_then_commits(store):
    start = await store.begin_turn(T, "e1", reminder_cooldown=60)
    assert start.status is BeginStatus.OK and start.token
    assert start.state.status is ThreadStatus.ACTIVE and start.state.ladder == LadderState()
    assert start.log == []
    res = await store.commit_turn(T, start.token, TurnCommit([user("hi")], redirects=1, jump_url="https://j/1"))
    assert res.status is CommitStatus.OK
    state, log = await store.load(T)
    assert state.ladder.redirects == 1 and state.ladder.turn == 1 and state.jump_url == "https://j/1"
    assert [e.text for e in log] == ["hi"]
    # the conversation keys carry the idle TTL
    assert 0 < await store.client.pttl(k.state(T.key)) <= 60_000


async def test_duplicate_event_and_busy_thread(store):
    start = await store.begin_turn(T, "e1", reminder_cooldown=60)
    again = await store.begin_turn(T, "e1", reminder_cooldown=60)
    assert again.status is BeginStatus.DUPLICATE
    other = await store.begin_turn(T, "e2", reminder_cooldown=60)
    assert other.status is BeginStatus.BUSY
    await store.commit_turn(T, start.token, TurnCommit([user("a")]))
    assert (await store.begin_turn(T, "e2", reminder_cooldown=60)).status is BeginStatus.OK


async def test_abandon_releases_lock_and_forgets_event(store):
    start = await store.begin_turn(T, "e1", reminder_cooldown=60)
    await store.abandon_turn(T, start.token, "e1")
    retry = await store.begin_turn(T, "e1", reminder_cooldown=60)
    assert retry.status is BeginStatus.OK
    state, log = await store.load(T)
    assert log == [] and state.ladder.turn == 0


async def test_commit_with_a_stale_token_changes_nothing(store):
    start = await store.begin_turn(T, "e1", reminder_cooldown=60)
    res = await store.commit_turn(T, "not-the-token", TurnCommit([user("x")], redirects=5))
    assert res.status is CommitStatus.LOST_LOCK
    state, log = await store.load(T)
    assert log == [] and state.ladder.redirects == 0
    await store.abandon_turn(T, start.token, None)


async def test_end_freezes_and_files_exactly_one_case(store):
    start = await store.begin_turn(T, "e1", reminder_cooldown=60)
    res = await store.commit_turn(T, start.token, TurnCommit([user("x")], end_case=end_case()))
    assert res.status is CommitStatus.ENDED and res.end_seq == 1
    # before numbering the case body waits in the thread's pending hash (a crash here loses nothing)
    assert [t.key for t in await store.threads_with_pending_cases()] == [T.key]
    filed = await store.file_pending_cases(T)
    assert [c.case_id for c in filed] == [1]
    again = await store.file_end_case(T, 1, end_case())  # a retry of the same end is idempotent
    assert again.case_id == 1
    assert await store.count_cases("g1") == 1
    assert await store.threads_with_pending_cases() == []
    state, _ = await store.load(T)
    assert state.status is ThreadStatus.ENDED and state.case_id == 1 and state.ended_reason == "persistent_abuse"
    case = await store.get_case("g1", 1)
    assert case.case_ref == f"{T.key}#1" and case.reason == "persistent_abuse"
    assert await store.communities() == ["g1"]


async def test_frozen_thread_answers_in_one_round_trip_with_reminder_cooldown(store):
    start = await store.begin_turn(T, "e1", reminder_cooldown=60)
    await store.commit_turn(T, start.token, TurnCommit([user("x")], end_case=end_case()))
    before = store.round_trips
    first = await store.begin_turn(T, "e2", reminder_cooldown=60)
    assert store.round_trips - before == 1
    second = await store.begin_turn(T, "e3", reminder_cooldown=60)
    assert (first.status, first.remind, first.pending_cases) == (BeginStatus.FROZEN, True, 1)
    assert (second.status, second.remind) == (BeginStatus.FROZEN, False)
    assert (await store.begin_turn(T, "e3", reminder_cooldown=60)).status is BeginStatus.DUPLICATE


async def test_seed_branch_once_and_link(store):
    b = ThreadRef("discord", "g1", "c1", "t2")
    seeded = await store.seed_branch(b, [user("a"), Entry(EntryKind.REDIRECTION, turn=0)],
                                     ThreadState(b, ladder=LadderState(redirects=1, turn=1), branch_of=T.key))
    assert seeded
    assert not await store.seed_branch(b, [], ThreadState(b))
    state, log = await store.load(b)
    assert state.branch_of == T.key and state.ladder.redirects == 1 and state.ladder.turn == 1 and len(log) == 2
    start = await store.begin_turn(T, "e1", reminder_cooldown=0)
    await store.commit_turn(T, start.token, TurnCommit([user("x")], end_case=end_case()))
    case = (await store.file_pending_cases(T))[0]
    await store.link_branch("g1", case.case_id, b.key)
    assert (await store.get_case("g1", case.case_id)).branches == [b.key]


async def test_reopen_and_actions(store):
    start = await store.begin_turn(T, "e1", reminder_cooldown=60)
    await store.commit_turn(T, start.token, TurnCommit([user("x")], redirects=3, warned_turn=0,
                                                       end_case=end_case()))
    case = (await store.file_pending_cases(T))[0]
    assert await store.reopen(T, Entry(EntryKind.REOPEN, "by mod"))
    assert not await store.reopen(T, Entry(EntryKind.REOPEN, "twice"))
    state, log = await store.load(T)
    assert state.status is ThreadStatus.ACTIVE and state.ladder.redirects == 0 and not state.ladder.warned
    assert log[-1].kind is EntryKind.REOPEN
    action = Case(case_id=0, community="g1", platform="discord", thread=T.key, channel="c1", action="reopen",
                  refers_to=case.case_id)
    filed = await store.file_action(action)
    assert filed.case_id == 2
    assert (await store.get_case("g1", 1)).actions == [2]
    assert [c.case_id for c in await store.list_cases("g1", 0, 10)] == [2, 1]
    # the thread can end again: a second end is a second case
    start = await store.begin_turn(T, "e9", reminder_cooldown=60)
    res = await store.commit_turn(T, start.token, TurnCommit([user("y")], end_case=end_case()))
    assert res.end_seq == 2
    assert [c.case_id for c in await store.file_pending_cases(T)] == [3]


async def test_concurrent_begins_grant_one_lock(store):
    starts = await asyncio.gather(*(store.begin_turn(T, f"e{i}", reminder_cooldown=60) for i in range(20)))
    assert sum(s.status is BeginStatus.OK for s in starts) == 1
    assert sum(s.status is BeginStatus.BUSY for s in starts) == 19


async def test_lock_expires_after_a_crashed_turn(store):
    store.lock_ttl_ms = 100
    await store.begin_turn(T, "e1", reminder_cooldown=60)
    await asyncio.sleep(0.2)
    assert (await store.begin_turn(T, "e2", reminder_cooldown=60)).status is BeginStatus.OK


async def test_keys_of_a_thread_share_one_hash_tag():
    from redis.cluster import key_slot

    names = [k.state(T.key), k.log(T.key), k.lock(T.key), k.seen(T.key, "x"), k.remind(T.key), k.pending(T.key)]
    assert len({key_slot(n.encode()) for n in names}) == 1
    c = [k.case_seq("g1"), k.case_refs("g1"), k.case_index("g1"), k.case("g1", 7), k.case_links("g1", 7)]
    assert len({key_slot(n.encode()) for n in c}) == 1


async def test_extend_lock_only_for_the_holder(store):
    store.lock_ttl_ms = 300
    start = await store.begin_turn(T, "e1", reminder_cooldown=60)
    await asyncio.sleep(0.2)
    assert await store.extend_lock(T, start.token)
    assert not await store.extend_lock(T, "other-token")
    await asyncio.sleep(0.2)  # past the first TTL, within the extended one
    assert (await store.begin_turn(T, "e2", reminder_cooldown=60)).status is BeginStatus.BUSY
    assert (await store.commit_turn(T, start.token, TurnCommit([user("x")]))).status is CommitStatus.OK


async def test_conversation_numbers_in_a_place_without_threads(store):
    dm = ThreadRef("discord", "dm", "d1", "d1")
    assert await store.current_conversation(dm) == 0
    assert [await store.next_conversation(dm) for _ in range(3)] == [1, 2, 3]
    assert await store.current_conversation(dm) == 3
    assert 0 < await store.client.pttl(k.current(dm.key)) <= 120_000
