"""The background loops wait on the wake-up channel instead of asking Redis every second, on real
redis-servers: an idle worker sends no command at all; what gives a loop work wakes it (a dead owner's
thread is taken over once its lease runs out, a queued notice is relayed); a subscription that is lost (its
connection killed, Redis restarted) is made again and every loop then looks once, so a word said meanwhile
is not missed; and the sweep finds what no word announced. The words themselves (which writes say what, on
one server, a Redis Cluster and the in-process Redis) are checked at the end."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio

from bot.bootstrap import Runtime, build_runtime
from bot.store import WakeUp, keys
from bot.store.community_settings import RedisCommunitySettings
from bot.store.inbox_entry import InboxEntry, ReplyTarget, UnknownThread
from bot.store.redis_store import build_store
from bot.store.wakeups import RedisWakeUps
from bot.types import Author, IncomingMessage, Outcome, ReplyKind, ThreadNotice, ThreadRef
from bot.worker import Worker
from config.communities import Communities, CommunityConfig
from config.settings import RedisSettings, Settings, StoreSettings, WorkerSettings
from tests.integration.engine_helpers import CollectingSink
from tests.integration.scripted_model import ScriptedModel
from tests.support.redis_servers import RedisServer

#: Short intervals, so the passes every loop makes as it starts are over within a second.
QUICK = WorkerSettings(recovery_interval=0.2, maintenance_interval=0.5, notice_interval=0.5, settings_interval=0.5)
DEAD_LEASE = 0.5
#: Room for a loaded machine in the waits for an answer: still far below the sweep (300 s), the only other way
#: an idle worker would find the thread.
SLACK = 8.0


class NoticeSink(CollectingSink):
    def __init__(self) -> None:
        super().__init__()
        self.notices: list[ThreadNotice] = []

    async def notice(self, notice: Any) -> None:
        self.notices.append(notice)


async def until(check: Callable[[], bool], within: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, f"no {what} within {within} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def commands(client: redis.asyncio.Redis) -> int:
    """Commands the server ran so far, but the INFO asking."""
    stats = await client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if not k.startswith("cmdstat_info"))


@pytest.fixture
def server() -> Any:
    with RedisServer(extra_args=("--appendonly", "yes", "--appendfsync", "always")) as srv:
        yield srv


@pytest_asyncio.fixture
async def admin(server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(server.url, decode_responses=True)
    yield client
    await client.aclose()


def runtime_on(url: str, worker: WorkerSettings = QUICK) -> Runtime:
    rt = build_runtime(Settings(redis=RedisSettings(url=url), worker=worker),
                       model=ScriptedModel(lambda text: []), communities=Communities(CommunityConfig()))
    rt.sink = NoticeSink()  # type: ignore[attr-defined]
    rt.pipeline.register_sink("slack", rt.sink)  # type: ignore[attr-defined]
    return rt


@pytest_asyncio.fixture
async def runtime(server: RedisServer) -> AsyncIterator[Runtime]:
    rt = runtime_on(server.url)
    rt.worker.start()
    try:
        await until(lambda: rt.worker.hearing, 5, "subscription")
        yield rt
    finally:
        await rt.aclose()


async def dead_owner_message(admin: redis.asyncio.Redis, n: int) -> ThreadRef:
    """Another process accepted a member's message, took its thread and died before answering."""
    thread = ThreadRef("slack", "T1", "C1", f"1700000000.{n:06d}")
    dead = build_store(admin, StoreSettings(lock_ttl_seconds=DEAD_LEASE))
    msg = IncomingMessage(thread, Author("u1", "member"), f"anyone there {n}?", message_id=f"m{n}")
    taken = await dead.inbox.ingest(InboxEntry(f"m{n}", msg, ReplyTarget("u1")), reminder_cooldown=0,
                                    unknown=UnknownThread.ACCEPT, take_lease=True, max_inbox=30, max_turns=100)
    assert taken.start is not None
    return thread


def answered(rt: Runtime, thread: ThreadRef) -> Callable[[], bool]:
    outcomes: list[Outcome] = rt.sink.outcomes  # type: ignore[attr-defined]
    return lambda: any(o.thread == thread and [r.kind for r in o.replies] == [ReplyKind.ANSWER] for o in outcomes)


async def test_an_idle_worker_sends_redis_no_command(runtime: Runtime, admin: redis.asyncio.Redis) -> None:
    await asyncio.sleep(1.5)  # the passes of the start and of the first subscription
    before = await commands(admin)
    await asyncio.sleep(3)
    assert await commands(admin) - before == 0


async def test_a_dead_owners_thread_is_taken_over_once_its_lease_runs_out(runtime: Runtime,
                                                                           admin: redis.asyncio.Redis) -> None:
    await asyncio.sleep(1)
    thread = await dead_owner_message(admin, 1)
    took = await until(answered(runtime, thread), DEAD_LEASE + SLACK, "answer from the worker that took it over")
    assert took >= DEAD_LEASE  # not before the lease ran out


async def test_a_queued_notice_is_relayed_at_once(runtime: Runtime, admin: redis.asyncio.Redis) -> None:
    await asyncio.sleep(1)
    thread = ThreadRef("slack", "T1", "C1", "1700000000.000007")
    started = time.monotonic()
    await runtime.notices.queue_notice(Outcome(thread, replies=[]), "reopen", 7)
    sink: NoticeSink = runtime.sink  # type: ignore[attr-defined]
    await until(lambda: [n.case_id for n in sink.notices] == [7], 2, "notice")
    assert time.monotonic() - started < QUICK.notice_interval + 1


async def test_a_word_said_while_the_subscription_was_down_is_not_missed(runtime: Runtime,
                                                                         admin: redis.asyncio.Redis) -> None:
    wakeups: RedisWakeUps = runtime.store.wakeups  # type: ignore[assignment]
    await asyncio.sleep(1)
    await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # the worker's subscription goes
    thread = await dead_owner_message(admin, 2)  # its word is said to nobody
    await until(answered(runtime, thread), DEAD_LEASE + SLACK, "answer after the channel was heard again")
    assert wakeups.subscriptions >= 2 and runtime.worker.hearing


async def test_after_a_redis_restart_the_channel_is_heard_again(runtime: Runtime, server: RedisServer,
                                                                admin: redis.asyncio.Redis) -> None:
    wakeups: RedisWakeUps = runtime.store.wakeups  # type: ignore[assignment]
    await asyncio.sleep(1)
    server.stop()
    await until(lambda: not runtime.worker.hearing, 5, "the worker noticing")
    server.start()
    await until(lambda: runtime.worker.hearing, 10, "subscription after the restart")
    assert wakeups.subscriptions >= 2
    await asyncio.sleep(3)  # the look of every loop once the channel is heard again (slower on a loaded machine)
    before = await commands(admin)
    await asyncio.sleep(2)
    assert await commands(admin) - before <= 2  # idle again: no polling (a loop polling at 1 s would send more)
    thread = await dead_owner_message(admin, 3)
    await until(answered(runtime, thread), DEAD_LEASE + SLACK, "answer after the restart")


async def test_the_sweep_finds_a_due_thread_no_word_announced(server: RedisServer, admin: redis.asyncio.Redis) -> None:
    rt = runtime_on(server.url)
    with RedisServer() as silent:  # the worker listens where nothing is said: only its sweep can find work
        quiet = redis.asyncio.Redis.from_url(silent.url, decode_responses=True)
        worker = Worker(rt.pipeline, rt.backoff, rt.case_filing, rt.notices,
                        QUICK.model_copy(update={"sweep_interval": 2.0}), wakeups=RedisWakeUps(quiet))
        worker.start()
        try:
            await until(lambda: worker.hearing, 5, "subscription")
            await asyncio.sleep(1)
            thread = await dead_owner_message(admin, 4)
            took = await until(answered(rt, thread), 5, "answer found by the sweep")
            assert took >= DEAD_LEASE
        finally:
            await worker.stop(0)
            await quiet.aclose()
            await rt.aclose()


# --- the words: which writes say what ------------------------------------------------------------------------


@pytest_asyncio.fixture
async def words(any_redis: Any) -> AsyncIterator[list[WakeUp]]:
    heard: list[WakeUp] = []
    hearing = asyncio.Event()
    task = asyncio.create_task(RedisWakeUps(any_redis).listen(heard.append, lambda on: hearing.set() if on else None))
    try:
        await asyncio.wait_for(hearing.wait(), 5)
        yield heard
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def settled(heard: list[WakeUp], count: int) -> list[WakeUp]:
    await until(lambda: len(heard) >= count, 3, f"{count} word(s)")
    await asyncio.sleep(0.1)  # and no more
    return heard


async def test_a_due_word_only_when_a_due_sets_first_time_moves_earlier(any_redis: Any,
                                                                       words: list[WakeUp]) -> None:
    store = build_store(any_redis, StoreSettings())
    threads = [ThreadRef("slack", "T9", "C9", f"1700000009.{n:06d}") for n in range(500)]
    a = threads[0]
    same = next(t for t in threads[1:] if shard(t) == shard(a))
    b = next(t for t in threads[1:] if shard(t) != shard(a))
    await store.inbox.reschedule_due(a, 5_000_000, later=False)  # the set's first: said
    await store.inbox.reschedule_due(same, 6_000_000, later=False)  # later than its first: not said
    await store.inbox.reschedule_due(same, 4_000_000, later=False)  # now its first: said
    await store.inbox.reschedule_due(a, 9_000_000, later=True)  # never sooner: not said
    await store.inbox.reschedule_due(b, 7_000_000, later=False)  # another set's first: said
    assert await settled(words, 3) == [WakeUp("due", "slack", 5_000_000, shard(a)),
                                       WakeUp("due", "slack", 4_000_000, shard(a)),
                                       WakeUp("due", "slack", 7_000_000, shard(b))]


def shard(thread: ThreadRef) -> int:
    return zlib.crc32(thread.key.encode()) % keys.DUE_SHARDS


async def test_notices_settings_and_back_offs_are_said(any_redis: Any, words: list[WakeUp]) -> None:
    store = build_store(any_redis, StoreSettings())
    await store.notices.push_notice("discord", "{}")
    await RedisCommunitySettings(any_redis).save("T1", {"threshold": 3}, {"who": "x"}, expected_version=-1)
    until_ms = int(time.time() * 1000) + 60_000
    await store.backoff.share(until_ms)
    await store.backoff.share(until_ms - 1000)  # shorter than the one that holds: not said
    assert await settled(words, 3) == [WakeUp("notice", "discord"), WakeUp("settings"),
                                       WakeUp("backoff", at_ms=until_ms)]
