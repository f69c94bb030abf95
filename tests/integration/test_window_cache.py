"""The history windows a process keeps (``bot.store.window``): a turn reads only what was appended since its
last one, and still always sees the log Redis holds: after turns another process committed, a reopen, the
window start moving, forget-user rewriting entries in place, and a log deleted or cut back (a Redis restart
that lost the last writes) and written anew. Two runtimes on one Redis stand for two worker processes."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from bot.bootstrap import Runtime, build_runtime
from bot.model import ModelRequest, ModelResponse, TextBlock
from bot.store import keys
from bot.store.retention import REMOVED_TEXT, Retention
from bot.types import Author, Entry, EntryKind, IncomingMessage, ThreadRef
from config.communities import Communities, CommunityConfig
from config.settings import AnthropicSettings, EngineSettings, RedisSettings, Settings, StoreSettings

pytestmark = pytest.mark.timeout(60)

ALICE = Author("u-alice", "alice")
BOB = Author("u-bob", "bob")
_ids = itertools.count(1)


class RecordingModel:
    label = "recording"
    offline = True

    def __init__(self, delay: float = 0.0) -> None:
        self.requests: list[ModelRequest] = []
        self.delay = delay

    async def respond(self, request: ModelRequest, sink: object = None) -> ModelResponse:
        self.requests.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        return ModelResponse([TextBlock(f"answer {len(self.requests)}")], "end_turn")

    async def aclose(self) -> None:
        return None

    def history(self, n: int = -1) -> list[str]:
        """The texts of request ``n`` before the newest message."""
        return [b.text for m in self.requests[n].messages[:-1] for b in m.blocks if isinstance(b, TextBlock)]


class Process:
    """One worker's runtime; every turn's window is compared with the log Redis holds as the turn begins."""

    def __init__(self, client: Any, admin: Any, *, budget: int = 24_000, cache_threads: int = 256,
                 delay: float = 0.0) -> None:
        self.model = RecordingModel(delay)
        settings = Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None),
                            engine=EngineSettings(history_token_budget=budget),
                            store=StoreSettings(window_cache_threads=cache_threads))
        self.rt: Runtime = build_runtime(settings, redis=client, model=self.model,
                                         communities=Communities(CommunityConfig()))
        self.admin = admin
        self.turns = 0
        self.mismatches: list[str] = []
        real = self.rt.engine.run_turn

        async def run_turn(start: Any, entry: Any, sink: Any, go_on: bool, **kw: Any) -> Any:
            k = entry.thread.key
            raw = await admin.lrange(keys.log(k), 0, -1)
            win = int(await admin.hget(keys.state(k), "win") or 0)
            win = 0 if win > len(raw) else win
            stored = [Entry.from_json(r).to_json() for r in raw[win:]]
            if start.window_start != win or [e.to_json() for e in start.log] != stored:
                held = [e.text for e in start.log]
                self.mismatches.append(f"turn {self.turns} of {k}: window {start.window_start} != {win} or "
                                       f"{held} != {[Entry.from_json(r).text for r in raw[win:]]}")
            self.turns += 1
            return await real(start, entry, sink, go_on, **kw)

        self.rt.engine.run_turn = run_turn  # type: ignore[method-assign]

    @property
    def windows(self) -> Any:
        return self.rt.windows

    async def say(self, thread: ThreadRef, *texts: str, author: Author = ALICE) -> None:
        for text in texts:
            outcome = await self.rt.member_actions.handle_message(
                IncomingMessage(thread, author, text, f"m{next(_ids)}"))
            assert outcome.model_called, outcome

    async def aclose(self) -> None:
        await self.rt.aclose()


@pytest.fixture
async def two(redis_client: Any, redis_server: Any):
    """Two worker processes on one redis-server, each with a client of its own."""
    import redis.asyncio

    clients = [redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True) for _ in range(2)]
    procs = [Process(c, redis_client) for c in clients]
    yield procs
    for p in procs:
        await p.aclose()


def _thread(name: str) -> ThreadRef:
    return ThreadRef("discord", "g", "c", f"{name}-{next(_ids)}")


async def test_turns_another_process_committed_are_read_after_what_this_one_holds(two):
    a, b = two
    t = _thread("shared")
    await a.say(t, "a1", "a2", "a3")
    hits = a.windows.hits
    await b.say(t, "b1", "b2")
    await a.say(t, "a4")
    assert a.windows.hits == hits + 1  # only the entries after what it held were read
    assert a.model.history() == ["a1", "answer 1", "a2", "answer 2", "a3", "answer 3", "b1", "answer 1", "b2",
                                 "answer 2"]
    await b.say(t, "b3")
    assert "a4" in b.model.history()
    assert a.mismatches == b.mismatches == []
    assert (a.turns, b.turns) == (4, 3)


async def test_forget_user_rewrites_the_log_in_place_and_the_next_turn_reads_it_anew(two, redis_client):
    a, _ = two
    t = _thread("forget")
    await a.say(t, "alice secret words")
    await a.say(t, "bob words", author=BOB)
    await a.say(t, "more from bob", author=BOB)
    full = a.windows.full
    report = await Retention(redis_client, case_retention_days=365, idle_ttl_days=30).forget_user("discord",
                                                                                                "u-alice")
    assert report.threads_changed == 1
    await a.say(t, "hello again", author=BOB)
    assert a.windows.full == full + 1  # the generation moved on: the whole window was read
    history = a.model.history()
    assert "alice secret words" not in history and REMOVED_TEXT in history
    assert a.mismatches == []


async def test_forget_user_on_a_log_whose_state_is_gone_still_moves_its_generation_on(two, redis_client):
    a, _ = two
    t = _thread("orphan")
    await a.say(t, "alice secret words")
    await a.say(t, "bob words", "more from bob", author=BOB)
    await redis_client.delete(keys.state(t.key))
    await Retention(redis_client, case_retention_days=365, idle_ttl_days=30).forget_user("discord", "u-alice")
    assert await redis_client.hgetall(keys.state(t.key)) == {"log_gen": "1"}
    assert 0 < await redis_client.pttl(keys.state(t.key)) <= await redis_client.pttl(keys.log(t.key)) + 1000
    await a.say(t, "hello again", author=BOB)
    assert "alice secret words" not in a.model.history()
    assert a.mismatches == []


async def test_the_window_start_moving_is_followed_by_every_process(redis_client, redis_server):
    import redis.asyncio

    clients = [redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True) for _ in range(2)]
    a, b = (Process(c, redis_client, budget=600) for c in clients)
    t = _thread("moving")
    try:
        for i in range(40):
            worker = b if i % 7 == 6 else a
            await worker.say(t, f"question {i} " + "x" * 160)
        state = await redis_client.hgetall(keys.state(t.key))
        assert int(state["win"]) > 10  # it moved several times
        assert a.windows.hits > 20
        assert a.mismatches == b.mismatches == []
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_window_start_before_what_is_held_is_read_in_full(redis_client):
    """The engine only ever moves the start forward; set back by hand, the next turn still reads it all."""
    a = Process(redis_client, redis_client, budget=600)
    t = _thread("back")
    try:
        for i in range(25):
            await a.say(t, f"question {i} " + "x" * 160)
        assert a.windows.held(t.key).start > 0
        await redis_client.hset(keys.state(t.key), "win", 0)
        full = a.windows.full
        await a.say(t, "after")
        assert a.windows.full == full + 1 and a.turns == 26
        assert a.mismatches == []  # the turn's window began at 0 and held the whole log
    finally:
        await a.aclose()


async def test_a_reopened_thread_is_read_with_its_reopen_entry(two):
    a, b = two
    t = _thread("reopen")
    await a.say(t, "hi", "there")
    ended = await b.rt.member_actions.end_by_user(t, ALICE)
    assert ended.case is not None
    await b.rt.moderation.reopen("g", ended.case.case_id, Author("mod", "mod"))
    await a.say(t, "back again")
    assert a.mismatches == b.mismatches == []
    _, log = await a.rt.store.turns.load(t)
    assert [e.kind for e in log][-4:] == [EntryKind.END, EntryKind.REOPEN, EntryKind.USER, EntryKind.ASSISTANT]


async def test_a_log_cut_back_and_written_anew_to_the_same_length_is_read_anew(two, redis_client):
    """What a Redis restart that lost the last turn looks like: the log one turn shorter, the generation
    unchanged, then another process's turn makes it as long as before, with other entries."""
    a, b = two
    t = _thread("restart")
    await a.say(t, "one", "two", "lost three", "lost four")  # a now holds the log up to "lost three"
    assert a.windows.held(t.key).end == 6
    await redis_client.ltrim(keys.log(t.key), 0, 3)  # the last two turns lost
    await redis_client.hincrby(keys.state(t.key), "turn", -2)
    await b.say(t, "after the restart", "and more")
    assert await redis_client.llen(keys.log(t.key)) == 8
    full = a.windows.full
    await a.say(t, "next")
    assert a.windows.full == full + 1
    history = a.model.history()
    assert "lost three" not in history and "after the restart" in history
    assert a.mismatches == b.mismatches == []


async def test_a_deleted_thread_begun_anew_is_read_anew(two, redis_client):
    a, b = two
    t = _thread("deleted")
    await a.say(t, "old one", "old two")
    await redis_client.delete(keys.state(t.key), keys.log(t.key))
    await b.say(t, "new one", "new two")  # as long as the log a holds
    await a.say(t, "new three")
    assert a.model.history() == ["new one", "answer 1", "new two", "answer 2"]
    assert a.mismatches == b.mismatches == []


async def test_messages_waiting_behind_a_turn_are_answered_with_the_windows_the_commit_hands_over(redis_client):
    a = Process(redis_client, redis_client, delay=0.05)
    t = _thread("backlog")
    try:
        await a.say(t, "first")
        members = a.rt.member_actions
        outcomes = await asyncio.gather(*(members.handle_message(IncomingMessage(t, ALICE, f"queued {i}",
                                                                                f"m{next(_ids)}"))
                                          for i in range(4)))
        assert all(o.model_called for o in outcomes)
        assert a.turns == 5 and a.mismatches == []
        history = a.model.history()  # the messages went in in whatever order Redis took them
        assert history[:2] == ["first", "answer 1"] and history[3::2] == ["answer 2", "answer 3", "answer 4"]
        assert len(set(history[2::2])) == 3 and set(history[2::2]) < {f"queued {i}" for i in range(4)}
    finally:
        await a.aclose()


async def test_windows_are_kept_for_a_bounded_number_of_threads(redis_client):
    a = Process(redis_client, redis_client, cache_threads=3)
    threads = [_thread("lru") for _ in range(5)]
    try:
        for round_ in range(3):
            for t in threads:
                await a.say(t, f"round {round_}")
        assert len(a.windows) == 3
        assert a.mismatches == []
    finally:
        await a.aclose()


async def test_windows_on_every_store(any_redis):
    """The same on Redis Cluster and on the in-process Redis (two stores on one client)."""
    a, b = Process(any_redis, any_redis), Process(any_redis, any_redis)
    t = _thread("any")
    try:
        await a.say(t, "a1", "a2")
        await b.say(t, "b1")
        await a.say(t, "a3")
        assert a.windows.hits == 1  # the first turn read an empty log, the second held nothing yet
        assert a.model.history() == ["a1", "answer 1", "a2", "answer 2", "b1", "answer 1"]
        assert a.mismatches == b.mismatches == []
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_process_set_to_keep_no_windows_reads_every_window_whole(redis_client, monkeypatch):
    monkeypatch.setenv("THREADGUARD_WINDOW_CACHE_THREADS", "0")
    model = RecordingModel()
    rt = build_runtime(Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None)),
                       redis=redis_client, model=model, communities=Communities(CommunityConfig()))
    t = _thread("none")
    try:
        for text in ("one", "two", "three"):
            await rt.member_actions.handle_message(IncomingMessage(t, ALICE, text, f"m{next(_ids)}"))
        assert rt.windows.max_threads == 0 and len(rt.windows) == 0
        assert (rt.windows.hits, rt.windows.full) == (0, 3)
        assert model.history() == ["one", "answer 1", "two", "answer 2"]
    finally:
        await rt.aclose()
