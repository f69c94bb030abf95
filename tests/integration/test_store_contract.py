"""The store contract, run on a real redis-server, a 3-node Redis Cluster and the in-process Redis."""

from __future__ import annotations

import asyncio

import pytest

from bot.store import ClaimStatus, CommitStatus, IngestStatus, Store, TurnCommit
from bot.store import keys as k
from bot.store.inbox_entry import InboxEntry, ReplyTarget, UnknownThread
from bot.store.redis_store import build_store
from bot.types import (
    Author,
    Case,
    Entry,
    EntryKind,
    IncomingMessage,
    LadderState,
    ThreadRef,
    ThreadState,
    ThreadStatus,
)
from config.settings import DAY_MS, StoreSettings

T = ThreadRef("discord", "g1", "c1", "t1")


def store_on(client, *, lease_ms: int = 2_000) -> Store:
    """Every part of the store on ``client``: a lease of ``lease_ms``, idle threads kept a minute, ended ones
    two."""
    return build_store(client, StoreSettings(lock_ttl_seconds=lease_ms / 1000, idle_ttl_days=60_000 / DAY_MS,
                                             case_retention_days=120_000 / DAY_MS))


@pytest.fixture
def store(any_redis) -> Store:
    return store_on(any_redis)


@pytest.fixture
def short_lease_store(any_redis) -> Store:
    return store_on(any_redis, lease_ms=100)


def user(text: str, turn: int = 0, mid: str = "m") -> Entry:
    return Entry(EntryKind.USER, text, turn=turn, author_id="u1", author_name="ann", message_id=mid, in_history=True)


def end_case(thread: ThreadRef = T) -> Case:
    return Case(case_id=0, community=thread.community, platform=thread.platform, thread=thread.key,
                channel=thread.channel, reason="persistent_abuse", category="harassment", summary="s")


async def ingest(store, event: str, *, cooldown: int = 60, take: bool = True,
                 known: UnknownThread = UnknownThread.ACCEPT, max_inbox: int = 30, max_turns: int = 100):
    entry = InboxEntry(event, IncomingMessage(T, Author("u1", "u1"), f"text of {event}", event), ReplyTarget("u1"))
    return await store.inbox.ingest(entry, reminder_cooldown=cooldown, unknown=known, take_lease=take,
                                    max_inbox=max_inbox, max_turns=max_turns)


async def begin(store, event: str, **kw):
    """Accept a message into a free thread: this store instance becomes its owner."""
    res = await ingest(store, event, **kw)
    assert res.status is IngestStatus.OWNER, res
    return res.start


async def test_first_turn_starts_empty_then_commits(store):
    start = await begin(store, "e1")
    assert start.token and start.head.startswith("e1\t")
    assert start.state.status is ThreadStatus.ACTIVE and start.state.ladder == LadderState()
    assert start.log == [] and start.window_start == 0
    res = await store.turns.commit_turn(T, start.token, TurnCommit([user("hi")], redirects=1, jump_url="https://j/1",
                                                             entry_id="e1"))
    assert res.status is CommitStatus.OK and res.next is None
    state, log = await store.turns.load(T)
    assert state.ladder.redirects == 1 and state.ladder.turn == 1 and state.jump_url == "https://j/1"
    assert [e.text for e in log] == ["hi"]
    assert await store.health.client.llen(k.inbox(T.key)) == 0 and not await store.health.client.exists(k.lock(T.key))
    # the conversation keys carry the idle TTL
    assert 0 < await store.health.client.pttl(k.state(T.key)) <= 60_000


async def test_duplicate_event_and_queue_behind_the_owner(store):
    start = await begin(store, "e1")
    assert (await ingest(store, "e1")).status is IngestStatus.DUPLICATE
    queued = await ingest(store, "e2")
    assert (queued.status, queued.queued) == (IngestStatus.QUEUED, 2)
    res = await store.turns.commit_turn(T, start.token, TurnCommit([user("a")], entry_id="e1"))
    # the owner keeps the lease and gets the next entry with the window, in one step
    assert res.next is not None and res.next.head.startswith("e2\t") and res.next.token == start.token
    assert [e.text for e in res.next.log] == ["a"]
    res = await store.turns.commit_turn(T, start.token, TurnCommit([user("b")], entry_id="e2"), go_on=True)
    assert res.next is None and not await store.health.client.exists(k.lock(T.key))


async def test_a_model_failure_drops_the_entry_and_forgets_the_event(store):
    start = await begin(store, "e1")
    res = await store.turns.drop_head(T, start.token, "e1", go_on=True, reminder_cooldown=None, forget=True)
    assert res.status is CommitStatus.OK and res.next is None
    retry = await ingest(store, "e1")
    assert retry.status is IngestStatus.OWNER
    state, log = await store.turns.load(T)
    assert log == [] and state.ladder.turn == 0


async def test_commit_with_a_stale_token_changes_nothing(store):
    start = await begin(store, "e1")
    res = await store.turns.commit_turn(T, "not-the-token", TurnCommit([user("x")], redirects=5, entry_id="e1"))
    assert res.status is CommitStatus.LOST_LOCK
    state, log = await store.turns.load(T)
    assert log == [] and state.ladder.redirects == 0
    assert await store.health.client.llen(k.inbox(T.key)) == 1
    await store.inbox.release(T, start.token)


async def test_a_newer_owner_fences_out_the_old_one(short_lease_store):
    store = short_lease_store
    old = await begin(store, "e1")
    await asyncio.sleep(0.2)  # the old owner's lease runs out: a recovering worker takes the thread over
    new = await store.inbox.claim(T)
    assert new.status is ClaimStatus.OWNER and new.start.head.startswith("e1\t") and new.start.token != old.token
    stale = await store.turns.commit_turn(T, old.token, TurnCommit([user("old")], entry_id="e1"))
    assert stale.status is CommitStatus.LOST_LOCK and not await store.inbox.renew(T, old.token)
    assert (await store.turns.commit_turn(T, new.start.token, TurnCommit([user("new")], entry_id="e1"))).status \
        is CommitStatus.OK
    _, log = await store.turns.load(T)
    assert [e.text for e in log] == ["new"]


async def test_an_old_owner_is_refused_after_the_new_owner_answered_the_same_message(short_lease_store):
    store = short_lease_store
    old = await begin(store, "e1")
    await asyncio.sleep(0.2)  # the old owner's lease runs out: a recovering worker takes the thread over
    new = await store.inbox.claim(T)
    assert new.status is ClaimStatus.OWNER and new.start.token != old.token
    assert (await store.turns.commit_turn(T, new.start.token, TurnCommit([user("new")], entry_id="e1"))).status \
        is CommitStatus.OK
    # the old owner's commit (or drop) of the message the new owner answered is no replay of its own
    late = await store.turns.commit_turn(T, old.token, TurnCommit([user("old")], entry_id="e1"))
    assert late.status is CommitStatus.LOST_LOCK
    dropped = await store.turns.drop_head(T, old.token, "e1", go_on=True, reminder_cooldown=None)
    assert dropped.status is CommitStatus.LOST_LOCK
    _, log = await store.turns.load(T)
    assert [e.text for e in log] == ["new"]


async def test_an_expired_lease_nobody_took_still_commits(short_lease_store):
    store = short_lease_store
    start = await begin(store, "e1")
    await asyncio.sleep(0.2)
    res = await store.turns.commit_turn(T, start.token, TurnCommit([user("x")], entry_id="e1"))
    assert res.status is CommitStatus.OK


async def test_claim_reports_empty_held_and_the_due_set(store):
    assert (await store.inbox.claim(T)).status is ClaimStatus.EMPTY
    start = await begin(store, "e1")
    held = await store.inbox.claim(T)
    assert held.status is ClaimStatus.HELD and 0 < held.lease_left_ms <= 2_000
    due = await store.inbox.due_threads("discord", 2**50, 10)
    assert [key for key, _ in due] == [T.key]
    await store.turns.commit_turn(T, start.token, TurnCommit([user("x")], entry_id="e1"))
    ((_, score),) = due
    await ingest(store, "e2", take=False)  # a newer message re-registers the thread with a new score
    await store.inbox.forget_due(T, score)
    assert [key for key, _ in await store.inbox.due_threads("discord", 2**50, 10)] == [T.key]


async def test_inbox_and_thread_length_limits(store):
    await begin(store, "e0")
    for i in range(1, 3):
        assert (await ingest(store, f"e{i}", max_inbox=3)).status is IngestStatus.QUEUED
    assert (await ingest(store, "e3", max_inbox=3)).status is IngestStatus.FULL
    assert (await ingest(store, "e4", max_inbox=10, max_turns=3)).status is IngestStatus.TOO_LONG


async def test_replies_in_unknown_threads_are_ignored_or_wait_for_the_mention(store):
    assert (await ingest(store, "r0", known=UnknownThread.IGNORE)).status is IngestStatus.UNKNOWN
    assert (await ingest(store, "r1", known=UnknownThread.PARK)).status is IngestStatus.PARKED
    assert (await ingest(store, "r2", known=UnknownThread.PARK)).status is IngestStatus.PARKED
    opening = await begin(store, "m0")  # the mention arrives last; the parked replies follow it
    assert opening.head.startswith("m0\t")
    inbox = await store.health.client.lrange(k.inbox(T.key), 0, -1)
    assert [e.split("\t")[0] for e in inbox] == ["m0", "r1", "r2"]
    assert (await ingest(store, "r3", known=UnknownThread.IGNORE)).status is IngestStatus.QUEUED
    # the reply first refused as unknown was not marked seen: delivered again, it is taken now
    assert (await ingest(store, "r0", known=UnknownThread.IGNORE)).status is IngestStatus.QUEUED
    assert (await ingest(store, "r0", known=UnknownThread.IGNORE)).status is IngestStatus.DUPLICATE


async def test_end_freezes_and_files_exactly_one_case(store):
    start = await begin(store, "e1")
    res = await store.turns.commit_turn(T, start.token, TurnCommit([user("x")], end_case=end_case(), entry_id="e1"))
    assert res.status is CommitStatus.ENDED and res.end_seq == 1
    # before numbering the case body waits in the thread's pending hash (a crash here loses nothing)
    assert [t.key for t in await store.cases.threads_with_pending_cases()] == [T.key]
    filed = await store.cases.file_pending_cases(T)
    assert [c.case_id for c in filed] == [1]
    again = await store.cases.file_end_case(T, 1, end_case())  # a retry of the same end is idempotent
    assert again.case_id == 1
    assert await store.cases.count_cases("g1") == 1
    assert await store.cases.threads_with_pending_cases() == []
    state, _ = await store.turns.load(T)
    assert state.status is ThreadStatus.ENDED and state.case_id == 1 and state.ended_reason == "persistent_abuse"
    case = await store.cases.get_case("g1", 1)
    assert case.case_ref == f"{T.key}#1" and case.reason == "persistent_abuse"
    assert await store.cases.communities() == ["g1"]


async def test_frozen_thread_answers_in_one_round_trip_with_reminder_cooldown(store):
    start = await begin(store, "e1")
    await store.turns.commit_turn(T, start.token, TurnCommit([user("x")], end_case=end_case(), entry_id="e1"))
    before = store.health.round_trips
    first = await ingest(store, "e2")
    assert store.health.round_trips - before == 1
    second = await ingest(store, "e3")
    assert (first.status, first.remind) == (IngestStatus.FROZEN, True)
    assert (second.status, second.remind) == (IngestStatus.FROZEN, False)
    assert (await ingest(store, "e3")).status is IngestStatus.DUPLICATE


async def test_the_window_start_is_kept_in_the_thread_state(store):
    start = await begin(store, "e1")
    entries = [user(f"line {i}") for i in range(6)]
    await store.turns.commit_turn(T, start.token, TurnCommit(entries, entry_id="e1", window_start=4))
    nxt = await begin(store, "e2")
    assert nxt.window_start == 4 and [e.text for e in nxt.log] == ["line 4", "line 5"]


async def test_seed_branch_once_and_link(store):
    b = ThreadRef("discord", "g1", "c1", "t2")
    seeded = await store.turns.seed_branch(b, [user("a"), Entry(EntryKind.REDIRECTION, turn=0)],
                                     ThreadState(b, ladder=LadderState(redirects=1, turn=1), branch_of=T.key))
    assert seeded
    assert not await store.turns.seed_branch(b, [], ThreadState(b))
    state, log = await store.turns.load(b)
    assert state.branch_of == T.key and state.ladder.redirects == 1 and state.ladder.turn == 1 and len(log) == 2
    start = await begin(store, "e1", cooldown=0)
    await store.turns.commit_turn(T, start.token, TurnCommit([user("x")], end_case=end_case(), entry_id="e1"))
    case = (await store.cases.file_pending_cases(T))[0]
    await store.cases.link_branch("g1", case.case_id, b.key)
    assert (await store.cases.get_case("g1", case.case_id)).branches == [b.key]


async def test_reopen_and_actions(store):
    start = await begin(store, "e1")
    await store.turns.commit_turn(T, start.token, TurnCommit([user("x")], redirects=3, warned_turn=0,
                                                       end_case=end_case(), entry_id="e1"))
    case = (await store.cases.file_pending_cases(T))[0]
    assert await store.turns.reopen(T, Entry(EntryKind.REOPEN, "by mod"))
    assert not await store.turns.reopen(T, Entry(EntryKind.REOPEN, "twice"))
    state, log = await store.turns.load(T)
    assert state.status is ThreadStatus.ACTIVE and state.ladder.redirects == 0 and not state.ladder.warned
    assert log[-1].kind is EntryKind.REOPEN
    action = Case(case_id=0, community="g1", platform="discord", thread=T.key, channel="c1", action="reopen",
                  refers_to=case.case_id)
    filed = await store.cases.file_action(action)
    assert filed.case_id == 2
    assert (await store.cases.get_case("g1", 1)).actions == [2]
    assert [c.case_id for c in await store.cases.list_cases("g1", 0, 10)] == [2, 1]
    # the thread can end again: a second end is a second case
    start = await begin(store, "e9")
    res = await store.turns.commit_turn(T, start.token, TurnCommit([user("y")], end_case=end_case(), entry_id="e9"))
    assert res.end_seq == 2
    assert [c.case_id for c in await store.cases.file_pending_cases(T)] == [3]


async def test_a_page_of_cases_is_read_in_two_requests_with_links_and_actions(store):
    for n in range(12):
        filed = await store.cases.file_action(Case(case_id=0, community="g1", platform="discord", thread=f"t{n}",
                                             channel="c1", action="note", refers_to=None))
        assert filed.case_id == n + 1
    await store.cases.link_branch("g1", 3, "branch-of-3")
    await store.health.client.delete(k.case("g1", 5))  # a body gone missing is skipped, not an error
    before = store.health.round_trips
    page = await store.cases.list_cases("g1", 0, 12)
    assert store.health.round_trips - before == 2  # the ids, then every case of the page in one pipeline
    assert sorted(c.case_id for c in page) == [n for n in range(1, 13) if n != 5]
    ids = [int(i) for i in await store.health.client.zrevrange(k.case_index("g1"), 0, -1)]
    assert page == [c for c in [await store.cases.get_case("g1", i) for i in ids] if c is not None]
    assert all(c.community == "g1" and c.thread == f"t{c.case_id - 1}" for c in page)
    assert await store.cases.list_cases("g1", 3, 4) == [c for c in page if c.case_id in ids[3:7]]
    [three] = [c for c in page if c.case_id == 3]
    assert three.branches == ["branch-of-3"]
    assert await store.cases.list_cases("g1", 50, 10) == []


async def test_concurrent_ingests_grant_one_lease_and_keep_every_message(store):
    results = await asyncio.gather(*(ingest(store, f"e{i}") for i in range(20)))
    assert sum(r.status is IngestStatus.OWNER for r in results) == 1
    assert sum(r.status is IngestStatus.QUEUED for r in results) == 19
    assert await store.health.client.llen(k.inbox(T.key)) == 20


async def test_lease_runs_out_after_a_crashed_owner(short_lease_store):
    store = short_lease_store
    await begin(store, "e1")
    assert (await store.inbox.claim(T)).status is ClaimStatus.HELD
    await asyncio.sleep(0.2)
    assert (await store.inbox.claim(T)).status is ClaimStatus.OWNER


async def test_keys_of_a_thread_share_one_hash_tag():
    from redis.cluster import key_slot

    names = [k.state(T.key), k.log(T.key), k.lock(T.key), k.seen(T.key, "x"), k.remind(T.key), k.pending(T.key),
             k.inbox(T.key), k.parked(T.key)]
    assert len({key_slot(n.encode()) for n in names}) == 1
    c = [k.case_seq("g1"), k.case_refs("g1"), k.case_index("g1"), k.case("g1", 7), k.case_links("g1", 7)]
    assert len({key_slot(n.encode()) for n in c}) == 1


async def test_renew_only_for_the_owner(any_redis):
    store = store_on(any_redis, lease_ms=300)
    start = await begin(store, "e1")
    await asyncio.sleep(0.2)
    assert await store.inbox.renew(T, start.token)
    assert not await store.inbox.renew(T, "other-token")
    await asyncio.sleep(0.2)  # past the first TTL, within the renewed one
    assert (await store.inbox.claim(T)).status is ClaimStatus.HELD
    committed = await store.turns.commit_turn(T, start.token, TurnCommit([user("x")], entry_id="e1"))
    assert committed.status is CommitStatus.OK


async def test_conversation_numbers_in_a_place_without_threads(store):
    dm = ThreadRef("discord", "dm", "d1", "d1")
    assert await store.conversations.current_conversation(dm) == 0
    assert [await store.conversations.next_conversation(dm) for _ in range(3)] == [1, 2, 3]
    assert await store.conversations.current_conversation(dm) == 3
    assert 0 < await store.health.client.pttl(k.current(dm.key)) <= 120_000


async def test_a_commit_sent_again_after_its_reply_was_lost_is_answered_as_before(store):
    start = await begin(store, "e1")
    await ingest(store, "e2")
    commit = TurnCommit([user("a")], redirects=1, entry_id="e1")
    first = await store.turns.commit_turn(T, start.token, commit)
    again = await store.turns.commit_turn(T, start.token, commit)  # what the client's retry does
    assert first.status is again.status is CommitStatus.OK
    assert again.next is not None and again.next.head.startswith("e2\t")
    state, log = await store.turns.load(T)
    assert [e.text for e in log] == ["a"] and state.ladder.redirects == 1
    ended = await store.turns.commit_turn(T, start.token, TurnCommit([user("b")], end_case=end_case(), entry_id="e2"))
    replay = await store.turns.commit_turn(T, start.token, TurnCommit([user("b")], end_case=end_case(), entry_id="e2"))
    assert (ended.status, ended.end_seq) == (replay.status, replay.end_seq) == (CommitStatus.ENDED, 1)
    _, log = await store.turns.load(T)
    assert [e.text for e in log] == ["a", "b"]


async def test_a_held_commit_keeps_the_thread_until_its_posts_are_out(store):
    """``hold``: the commit keeps the lease even with an empty inbox, so a message arriving while the turn's
    notices are posted waits behind them; ``pass_on`` then goes on with it, or hands the lease back."""
    start = await begin(store, "e1")
    res = await store.turns.commit_turn(T, start.token, TurnCommit([user("a")], entry_id="e1"), hold=True)
    assert res.status is CommitStatus.OK and res.next is None
    assert await store.health.client.get(k.lock(T.key)) == start.token
    later = await ingest(store, "e2")  # another process: the thread is still held
    assert later.status is IngestStatus.QUEUED
    passed = await store.turns.pass_on(T, start.token)
    assert passed.status is CommitStatus.OK and passed.next is not None
    assert passed.next.head.startswith("e2\t") and passed.next.token == start.token
    assert [e.text for e in passed.next.log] == ["a"]
    res = await store.turns.commit_turn(T, start.token, TurnCommit([user("b")], entry_id="e2"), hold=True)
    assert (await store.turns.pass_on(T, start.token)).next is None
    assert not await store.health.client.exists(k.lock(T.key))
    assert (await ingest(store, "e3")).status is IngestStatus.OWNER


async def test_pass_on_with_a_stale_token_changes_nothing(store):
    start = await begin(store, "e1")
    await store.turns.commit_turn(T, start.token, TurnCommit([user("a")], entry_id="e1"), hold=True)
    await store.health.client.delete(k.lock(T.key))  # the lease ran out; another process took the thread
    newer = await begin(store, "e2")
    assert (await store.turns.pass_on(T, start.token)).status is CommitStatus.LOST_LOCK
    assert await store.health.client.get(k.lock(T.key)) == newer.token


async def test_the_inbox_head_is_owned_by_its_whole_entry_id_not_a_prefix(store):
    start = await begin(store, "e10")
    # the owner's token with an id that is a prefix of the head's: neither a commit nor a drop takes e10
    commit = await store.turns.commit_turn(T, start.token, TurnCommit([user("x")], redirects=1, entry_id="e1"))
    assert commit.status is CommitStatus.LOST_LOCK
    drop = await store.turns.drop_head(T, start.token, "e1", go_on=True, reminder_cooldown=None)
    assert drop.status is CommitStatus.LOST_LOCK
    state, log = await store.turns.load(T)
    assert log == [] and state.ladder.redirects == 0 and state.ladder.turn == 0
    assert [e.split("\t")[0] for e in await store.health.client.lrange(k.inbox(T.key), 0, -1)] == ["e10"]
    done = await store.turns.commit_turn(T, start.token, TurnCommit([user("y")], entry_id="e10"))
    assert done.status is CommitStatus.OK


async def test_a_drop_sent_again_after_its_reply_was_lost_is_answered_as_before(store):
    start = await begin(store, "e1")
    await ingest(store, "e2")
    first = await store.turns.drop_head(T, start.token, "e1", go_on=True, reminder_cooldown=None)
    again = await store.turns.drop_head(T, start.token, "e1", go_on=True, reminder_cooldown=None)  # the client's retry
    assert first.status is again.status is CommitStatus.OK
    assert first.next is not None and again.next is not None
    assert first.next.head.startswith("e2\t") and again.next.head.startswith("e2\t")
    assert [e.split("\t")[0] for e in await store.health.client.lrange(k.inbox(T.key), 0, -1)] == ["e2"]  # e2 stays
    res = await store.turns.commit_turn(T, start.token, TurnCommit([user("b")], entry_id="e2"))
    assert res.status is CommitStatus.OK and res.next is None


async def test_a_thread_stays_in_the_pending_case_index_while_any_of_its_ends_waits(store):
    start = await begin(store, "e1")
    assert (await store.turns.commit_turn(T, start.token, TurnCommit([user("x")], end_case=end_case(),
                                                               entry_id="e1"))).end_seq == 1
    assert await store.turns.reopen(T, Entry(EntryKind.REOPEN, "by mod"))
    start = await begin(store, "e2")
    assert (await store.turns.commit_turn(T, start.token, TurnCommit([user("y")], end_case=end_case(),
                                                               entry_id="e2"))).end_seq == 2
    assert [t.key for t in await store.cases.threads_with_pending_cases()] == [T.key]
    # two processes number them, the later end first: the earlier end still waits
    latest = await store.cases.file_end_case(T, 2, end_case())
    assert [t.key for t in await store.cases.threads_with_pending_cases()] == [T.key]
    await store.cases.file_end_case(T, 1, end_case())
    assert await store.cases.threads_with_pending_cases() == []
    state, _ = await store.turns.load(T)
    assert state.case_id == latest.case_id == 1  # the thread names the case of its latest end


async def test_the_end_command_waits_for_a_running_turn(store):
    start = await begin(store, "e1")
    assert (await store.inbox.lease_for_end(T)).status is ClaimStatus.BUSY
    await store.turns.commit_turn(T, start.token, TurnCommit([user("x")], entry_id="e1"))
    taken = await store.inbox.lease_for_end(T)
    assert taken.status is ClaimStatus.OWNER and [e.text for e in taken.start.log] == ["x"]


async def test_a_turn_queued_behind_an_end_is_committed_as_already_ended(store):
    start = await begin(store, "e1")
    await ingest(store, "e2")
    ended = await store.turns.commit_turn(T, start.token, TurnCommit([user("x")], end_case=end_case(), entry_id="e1"))
    assert ended.status is CommitStatus.ENDED and ended.next is not None  # e2 still waits
    late = await store.turns.commit_turn(T, start.token, TurnCommit([user("y")], redirects=2, entry_id="e2"))
    assert late.status is CommitStatus.ALREADY_ENDED
    state, log = await store.turns.load(T)
    assert [e.text for e in log] == ["x"] and state.ladder.redirects == 0 and state.ladder.turn == 1
    assert state.status is ThreadStatus.ENDED and await store.health.client.llen(k.inbox(T.key)) == 0


async def test_a_commit_sent_again_after_a_newer_owner_took_over_leaves_its_lease_alone(short_lease_store):
    store = short_lease_store
    old = await begin(store, "e1")
    await ingest(store, "e2")
    commit = TurnCommit([user("a")], entry_id="e1")
    assert (await store.turns.commit_turn(T, old.token, commit, go_on=False)).status is CommitStatus.OK
    new = await store.inbox.claim(T)  # the old owner handed the thread back; another worker owns e2 now
    assert new.status is ClaimStatus.OWNER and new.start.head.startswith("e2\t")
    again = await store.turns.commit_turn(T, old.token, commit)  # the old owner's retry of its lost reply
    assert again.status is CommitStatus.OK and again.next is None
    assert await store.health.client.get(k.lock(T.key)) == new.start.token
    assert (await store.turns.commit_turn(T, new.start.token, TurnCommit([user("b")], entry_id="e2"))).status \
        is CommitStatus.OK
    _, log = await store.turns.load(T)
    assert [e.text for e in log] == ["a", "b"]


async def test_a_refused_commit_still_counts_the_tokens_it_was_billed(store):
    from bot.model import Usage

    start = await begin(store, "e1")
    stale = await store.turns.commit_turn(T, "stale", TurnCommit([user("x")], entry_id="e1",
                                                           usage=Usage(input_tokens=7, output_tokens=3, calls=1)))
    assert stale.status is CommitStatus.LOST_LOCK
    assert stale.totals is not None and (stale.totals.input, stale.totals.output) == (7, 3)
    ok = await store.turns.commit_turn(T, start.token, TurnCommit([user("y")], entry_id="e1",
                                                             usage=Usage(input_tokens=1, output_tokens=1, calls=1)))
    assert ok.totals is not None and (ok.totals.input, ok.totals.output) == (8, 4)


async def test_a_window_start_past_the_end_of_the_log_starts_the_window_at_the_beginning(store):
    start = await begin(store, "e1")
    await store.turns.commit_turn(T, start.token, TurnCommit([user("a"), user("b")], entry_id="e1", window_start=9))
    nxt = await begin(store, "e2")
    assert nxt.window_start == 0 and [e.text for e in nxt.log] == ["a", "b"]


async def test_every_key_an_accepted_message_creates_expires(store):
    from bot.store.redis_inbox import PARK_TTL_MS

    assert (await ingest(store, "r1", known=UnknownThread.PARK)).status is IngestStatus.PARKED
    assert 0 < await store.health.client.pttl(k.parked(T.key)) <= PARK_TTL_MS
    await begin(store, "e1")  # a thread without turns yet: its state, inbox and lease all run out
    for key, most in ((k.state(T.key), 60_000), (k.inbox(T.key), 60_000), (k.lock(T.key), 2_000)):
        assert 0 < await store.health.client.pttl(key) <= most, key
