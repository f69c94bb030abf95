"""Spend and rate limits through the engine on every Redis (one server, Cluster, in-process): a member's
message bucket, tokens per day and the community's daily spend ceiling, checked and counted by the store's
scripts; exemptions, threads at risk, the notice once per window, the spend alerts once each, the next
UTC day. Time is a settable clock, never a sleep."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bot.bootstrap import build_runtime
from bot.limits import day_end
from bot.model import TextBlock, Usage
from bot.types import Author, ReplyKind, ThreadRef
from bot.usage import day_of
from config.communities import Communities, CommunityConfig, CommunityLimits
from config.settings import RedisSettings, Settings
from tests.integration.engine_helpers import CollectingSink, message
from tests.integration.scripted_model import ScriptedModel
from tests.support.processes import clean_env, run_cli
from tests.support.workers import words_of

ALICE, BOB, MOD = Author("u-alice", "alice"), Author("u-bob", "bob"), Author("u-mod", "mod")
CRISIS = "Call or text 988 now."
#: Every model call bills 1000 input and 1000 output tokens: US$0.018 at the default prices.
PER_CALL = Usage(input_tokens=1000, output_tokens=1000, calls=1)


class Clock:
    def __init__(self) -> None:
        self.at = (time.time() // 86_400) * 86_400 + 12 * 3600  # noon UTC today

    def now(self) -> float:
        return self.at


def runtime_with(client: Any, clock: Clock, **limits: Any) -> tuple[Any, ScriptedModel]:
    def decide(text: str) -> list[Any]:
        if "hurt myself" in text:
            return [TextBlock("I'm here with you."), model.tool("flag_risk", kind="self_harm", note="said so")]
        return [TextBlock(f"Answer to: {text}")]

    model = ScriptedModel(decide, usage=PER_CALL)
    config = CommunityConfig(crisis_resources=CRISIS, moderators=("u-mod",), limits=CommunityLimits(**limits))
    runtime = build_runtime(Settings(redis=RedisSettings(url=None)), redis=client, model=model,
                            communities=Communities(config), clock=clock)
    return runtime, model


def limit_lines(outcome: Any) -> list[str]:
    return [r.text for r in outcome.replies if r.kind is ReplyKind.INFO]


async def test_a_members_message_rate_allows_a_burst_then_one_notice_per_window(any_redis):
    clock = Clock()
    runtime, model = runtime_with(any_redis, clock, messages_per_minute=6, burst=3)
    members = runtime.member_actions
    thread, other = ThreadRef("slack", "T1", "C1", "1.1"), ThreadRef("slack", "T1", "C1", "2.2")
    outcomes = [await members.handle_message(message(thread, f"m{i}")) for i in range(6)]
    assert [o.model_called for o in outcomes] == [True, True, True, False, False, False]
    notices = [limit_lines(o) for o in outcomes[3:]]
    assert len(notices[0]) == 1 and notices[1:] == [[], []]  # once per window in this thread
    assert notices[0][0].startswith("You're sending messages faster than this community allows; "
                                    "you can continue after ")
    assert "in 10 s" in notices[0][0] and notices[0][0].endswith(f"If you need support right now: {CRISIS}")
    # the same member is limited in another thread too (the bucket is the member's), told there once
    elsewhere = await members.handle_message(message(other, "elsewhere"))
    assert not elsewhere.model_called and len(limit_lines(elsewhere)) == 1
    # another member and a moderator are not affected
    assert (await members.handle_message(message(other, "bob here", BOB))).model_called
    assert all([(await members.handle_message(message(thread, f"mod {i}", MOD))).model_called for i in range(5)])
    # 10 s later one message is back in Alice's bucket
    clock.at += 10
    assert (await members.handle_message(message(thread, "after the wait"))).model_called
    later = await members.handle_message(message(thread, "too soon again"))
    assert not later.model_called and len(limit_lines(later)) == 1  # a new window: told again
    assert model.calls == 3 + 1 + 5 + 1


async def test_tokens_per_day_stop_the_member_until_the_next_utc_day(any_redis):
    clock = Clock()
    runtime, _ = runtime_with(any_redis, clock, tokens_per_day=3000)
    members = runtime.member_actions
    thread = ThreadRef("discord", "G1", "c1", "t1")
    assert [(await members.handle_message(message(thread, f"q{i}"))).model_called for i in range(2)] == [True, True]
    refused = await members.handle_message(message(thread, "q3"))
    assert not refused.model_called
    hours = int((day_end(clock.at) - clock.at) // 3600)
    assert limit_lines(refused)[0].startswith("You've reached your daily limit in this community; you can "
                                              f"continue after 00:00 UTC, in {hours} h")
    assert (await members.handle_message(message(thread, "bob", BOB))).model_called
    clock.at = day_end(clock.at) + 1
    assert (await members.handle_message(message(thread, "a new day"))).model_called


async def test_the_daily_ceiling_stops_everyone_but_threads_at_risk_and_alerts_once_each(any_redis):
    clock = Clock()
    runtime, model = runtime_with(any_redis, clock, daily_spend_usd=0.04)  # US$0.018 a turn
    members = runtime.member_actions
    a, b, risk = (ThreadRef("slack", "T9", "C1", ts) for ts in ("1.0", "2.0", "3.0"))
    first = await members.handle_message(message(a, "one"))
    assert first.model_called and first.spend_alerts == []
    at_risk = await members.handle_message(message(risk, "I want to hurt myself", BOB))  # 0.036 + 0.018: two calls
    assert [line[:60] for line in at_risk.spend_alerts] == [
        "Spend alert: community T9 has passed 80% of its daily ceilin",
        "Spend alert: community T9 has reached its daily ceiling of U"]
    for thread, author in ((a, ALICE), (b, BOB)):
        stopped = await members.handle_message(message(thread, "more", author))
        assert not stopped.model_called
        assert limit_lines(stopped)[0].startswith("You've reached today's limit for this community; you can "
                                                  "continue after 00:00 UTC, in ")
    # the thread at risk is still answered, and the alerts are not posted again
    again = await members.handle_message(message(risk, "still here", BOB))
    assert again.model_called and again.spend_alerts == []
    calls = model.calls
    clock.at = day_end(clock.at) + 5
    next_day = await members.handle_message(message(b, "good morning", BOB))
    assert next_day.model_called and model.calls == calls + 1


async def test_a_deploy_in_the_middle_of_a_day_keeps_each_members_tokens_and_the_days_spend(any_redis):
    """What the release before left in Redis: the members' tokens in the members' day (the same field, its
    own lifetime), the spend only in the community's day sums, each bucket in a key of its own (not read:
    the bucket starts full once)."""
    clock = Clock()
    day = day_of(clock.at)
    old_members = f"tg:{{c:G-old}}:usage:{day}:members"
    await any_redis.hset(old_members, mapping={"u-alice": 3000})
    await any_redis.pexpire(old_members, 400 * 86_400_000)
    await any_redis.set("tg:{c:G-old}:bucket:u-bob", f"0 {int(clock.at * 1000)}", px=70_000)  # Bob's is empty
    await any_redis.hset(f"tg:{{c:G-spent}}:usage:{day}", mapping={"input": 2000, "output": 2000, "calls": 2,
                                                                  "turns": 2})  # US$0.036
    runtime, model = runtime_with(any_redis, clock, tokens_per_day=3000, daily_spend_usd=0.03,
                                  messages_per_minute=6, burst=1)
    members = runtime.member_actions
    old = ThreadRef("discord", "G-old", "c1", "t1")
    alice = await members.handle_message(message(old, "more"))
    assert not alice.model_called
    assert limit_lines(alice)[0].startswith("You've reached your daily limit in this community")
    assert (await members.handle_message(message(old, "bob", BOB))).model_called
    again = await members.handle_message(message(old, "bob again", BOB))  # the new bucket counts from here
    assert limit_lines(again)[0].startswith("You're sending messages faster")
    for author in (ALICE, BOB):  # each in a thread of their own: told once per thread
        stopped = await members.handle_message(message(ThreadRef("discord", "G-spent", "c1", author.id), "hi", author))
        assert limit_lines(stopped)[0].startswith("You've reached today's limit for this community")
    assert model.calls == 1
    assert await runtime.usage.members_day("G-old", day) == {"u-alice": 3000, "u-bob": 2000}
    assert 0 < await any_redis.pttl(old_members) <= 400 * 86_400_000


async def test_a_members_message_bucket_runs_on_across_midnight(any_redis):
    clock = Clock()
    clock.at = day_end(clock.at) - 5  # 23:59:55 UTC
    runtime, _ = runtime_with(any_redis, clock, messages_per_minute=6, burst=2)  # one back every 10 s
    members = runtime.member_actions
    thread = ThreadRef("slack", "T-midnight", "C1", "1.0")
    assert [(await members.handle_message(message(thread, f"m{i}"))).model_called for i in range(3)] == [
        True, True, False]
    clock.at += 5  # 00:00 UTC, a new day: the same bucket, 5 s from its next message (told in a new thread)
    refused = await members.handle_message(message(ThreadRef("slack", "T-midnight", "C1", "2.0"), "a new day"))
    assert not refused.model_called and "in 5 s" in limit_lines(refused)[0]
    clock.at += 5
    assert (await members.handle_message(message(thread, "now"))).model_called


async def test_a_ceiling_changed_during_the_day_applies_to_the_next_message(any_redis):
    clock = Clock()
    runtime, _ = runtime_with(any_redis, clock, daily_spend_usd=1.0)
    members = runtime.member_actions
    thread = ThreadRef("slack", "T-lowered", "C1", "1.0")
    assert [(await members.handle_message(message(thread, f"m{i}"))).model_called for i in range(2)] == [True, True]
    lowered, _ = runtime_with(any_redis, clock, daily_spend_usd=0.03)  # US$0.036 spent
    stopped = await lowered.member_actions.handle_message(message(thread, "more"))
    assert limit_lines(stopped)[0].startswith("You've reached today's limit for this community")
    raised, _ = runtime_with(any_redis, clock, daily_spend_usd=0.05)
    assert (await raised.member_actions.handle_message(message(thread, "one more"))).model_called  # US$0.054 now
    assert not (await raised.member_actions.handle_message(message(thread, "and another"))).model_called


async def test_a_limit_reached_exactly_stops_the_next_message(any_redis):
    clock = Clock()
    runtime, _ = runtime_with(any_redis, clock, tokens_per_day=4000)  # two turns of 2,000 tokens
    thread = ThreadRef("slack", "T-exact", "C1", "1.0")
    done = [(await runtime.member_actions.handle_message(message(thread, f"q{i}"))).model_called for i in range(3)]
    assert done == [True, True, False]
    runtime, _ = runtime_with(any_redis, clock, daily_spend_usd=0.036)  # two turns of US$0.018
    thread = ThreadRef("slack", "T-exact-spend", "C1", "1.0")
    outcomes = [await runtime.member_actions.handle_message(message(thread, f"q{i}", BOB)) for i in range(3)]
    assert [o.model_called for o in outcomes] == [True, True, False]
    assert [len(o.spend_alerts) for o in outcomes] == [0, 2, 0]  # 50%, then 80% and 100% at once


@pytest.mark.parametrize(("limits", "field"), [({"messages_per_minute": 6}, "u-alice r"),  # the bucket
                                                ({"daily_spend_usd": 10.0}, "$ spent")])  # the day's spend
async def test_what_a_check_writes_expires_before_any_turn_is_committed(any_redis, limits, field):
    runtime, model = gated_runtime(any_redis, **limits)
    community = f"T-expiring-{field[-1]}"
    first = await runtime.member_actions.accept(message(ThreadRef("slack", community, "C1", "1.0"), "one"))
    members_day = f"tg:{{c:{community}}}:usage:{day_of(Clock().at)}:members"
    assert list(await any_redis.hgetall(members_day)) == [field]  # checked, counted, its turn not done yet
    assert 0 < await any_redis.pttl(members_day) <= 2 * 86_400_000
    model.gate.set()
    assert (await first.result()).model_called
    await runtime.aclose()


@pytest.mark.parametrize("limits", [{}, {"messages_per_minute": 0}])
async def test_no_limits_configured_counts_nothing_extra(redis_client, limits):
    runtime, _ = runtime_with(redis_client, Clock(), **limits)
    await runtime.member_actions.handle_message(message(ThreadRef("slack", "T2", "C1", "1.0"), "hi"))
    names = await redis_client.keys("*")
    assert not [k for k in names if ":bucket:" in k or k.endswith(":members") or ":limited" in k]


async def test_threadguard_usage_shows_each_limit_beside_todays_use(redis_client, redis_server, tmp_path):
    clock = Clock()
    clock.at = time.time()  # the CLI reads today by the system clock
    runtime, _ = runtime_with(redis_client, clock, daily_spend_usd=0.1, tokens_per_day=50_000, messages_per_minute=6)
    members = runtime.member_actions
    for i in range(2):
        await members.handle_message(message(ThreadRef("discord", "G7", "c1", "t1"), f"q{i}"))
    await members.handle_message(message(ThreadRef("discord", "G7", "c1", "t2"), "bob", BOB))
    toml = tmp_path / "communities.toml"
    toml.write_text('[community."G7"]\nmoderators = ["u-mod"]\n[community."G7".limits]\ndaily_spend_usd = 0.1\n'
                    "tokens_per_day = 50000\nmessages_per_minute = 6\n", encoding="utf-8")
    code, table, err = await run_cli("usage", "--community", "G7", env=clean_env(
        REDIS_URL=redis_server.url, THREADGUARD_COMMUNITIES_FILE=str(toml)))
    assert code == 0, err
    lines = [" ".join(line.split()) for line in table.splitlines()]
    assert "Limits of G7 today (UTC):" in lines
    assert "daily spend ceiling US$0.10 used: US$0.0540 (54%)" in lines  # three turns of US$0.018
    assert "tokens per member per day 50000 used: most used: 4000 (u-alice); 2 member(s) today" in lines
    assert "messages per member per minute 6 (burst 6) used: checked per message" in lines
    assert "exempt moderators used: threads flagged at risk are never limited" in lines


def turn_costs(runtime: Any) -> tuple[int, int]:
    """(requests, sequential round trips) the runtime's store sent so far."""
    return runtime.store.health.round_trips, runtime.store.health.sequential


async def test_limits_cost_an_ordinary_turn_no_round_trip_of_its_own(any_redis, request):
    """Limits set (none reached) against none: the same sequential round trips per ordinary turn on every
    store; on Cluster the check goes to the community's slot alongside the accepting script."""
    where = request.node.callspec.params["any_redis"]
    costs = {}
    for limits in ({}, {"messages_per_minute": 10_000, "tokens_per_day": 10**9, "daily_spend_usd": 10**6}):
        runtime, _ = runtime_with(any_redis, Clock(), **limits)
        thread = ThreadRef("slack", f"T-trips-{len(costs)}", "C1", "1.0")
        await runtime.member_actions.handle_message(message(thread, "first"))  # scripts loaded
        before = turn_costs(runtime)
        for i in range(3):
            assert (await runtime.member_actions.handle_message(message(thread, f"again {i}"))).model_called
        after = turn_costs(runtime)
        costs[bool(limits)] = ((after[0] - before[0]) / 3, (after[1] - before[1]) / 3)
    assert costs[True][1] == costs[False][1] == 2
    # requests: the accepting script, the commit, and on Cluster the day's sums (and the check) alongside
    assert costs[False][0] == (3 if where == "cluster" else 2)
    assert costs[True][0] == (4 if where == "cluster" else 2)


class GatedModel(ScriptedModel):
    """Holds every call until ``gate`` is set: a thread stays busy while more messages arrive."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        import asyncio

        self.gate = asyncio.Event()
        self.texts: list[str] = []

    async def respond(self, request: Any, sink: Any = None) -> Any:
        self.texts.append(words_of(getattr(request.messages[-1].blocks[0], "text", "(tool results)")))
        await self.gate.wait()
        return await super().respond(request, sink)


def gated_runtime(client: Any, **limits: Any) -> tuple[Any, GatedModel]:
    model = GatedModel(lambda text: [TextBlock(f"Answer to: {text}")], usage=PER_CALL)
    config = CommunityConfig(crisis_resources=CRISIS, moderators=("u-mod",), limits=CommunityLimits(**limits))
    runtime = build_runtime(Settings(redis=RedisSettings(url=None)), redis=client, model=model,
                            communities=Communities(config), clock=Clock())
    return runtime, model


async def test_messages_to_a_busy_thread_are_checked_before_they_are_queued(any_redis):
    runtime, model = gated_runtime(any_redis, messages_per_minute=6, burst=2)
    members = runtime.member_actions
    thread = ThreadRef("slack", "T-busy", "C1", "1.0")
    first = await members.accept(message(thread, "one"))
    second = await members.accept(message(thread, "two"))  # the thread is busy: queued, the bucket's last
    third = await members.accept(message(thread, "three"))  # over: refused before it is queued
    assert first.accepted and second.accepted and not third.accepted
    assert third.outcome is not None and len(limit_lines(third.outcome)) == 1
    model.gate.set()
    assert [r.text for r in (await first.result()).replies] == ["Answer to: one"]
    assert [r.text for r in (await second.result()).replies] == ["Answer to: two"]
    assert await runtime.pipeline.idle(5)
    assert model.texts == ["one", "two"]
    assert await any_redis.llen("tg:{t:slack:T-busy:C1:1.0}:inbox") == 0
    await runtime.aclose()


async def test_a_message_refused_after_its_owner_took_it_lets_what_waits_behind_be_answered(cluster_client):
    """Cluster: a message that found its thread free is taken before its limits' verdict comes back; over a
    limit, it is removed before any model call, and a message queued behind it meanwhile is answered."""
    runtime, model = gated_runtime(cluster_client, messages_per_minute=6, burst=1)
    model.gate.set()
    members, sink = runtime.member_actions, CollectingSink()
    runtime.pipeline.register_sink("slack", sink)
    thread = ThreadRef("slack", "T-behind", "C1", "1.0")
    assert (await members.handle_message(message(thread, "one"))).model_called  # the bucket's only message
    inbox = runtime.store.inbox
    refuse = inbox._refuse_head
    queued = []

    async def moderator_first(*args: Any, **kwargs: Any) -> Any:  # a moderator writes while it is taken
        queued.append(await members.accept(message(thread, "mod here", MOD), wait=False))
        return await refuse(*args, **kwargs)

    inbox._refuse_head = moderator_first
    refused = await members.handle_message(message(thread, "two"))
    assert not refused.model_called and len(limit_lines(refused)) == 1
    assert queued[0].accepted
    assert await runtime.pipeline.idle(5)
    assert model.texts == ["one", "mod here"]
    # the moderator writing makes the thread shared: the scripted answer echoes the line inside its label
    assert [words_of(r.text.removeprefix("Answer to: ")) for o in sink.outcomes for r in o.replies] == ["mod here"]
    _, log = await runtime.store.turns.load(thread)
    assert [e.text for e in log if e.kind.value == "user"] == ["one", "mod here"]
    await runtime.aclose()


class FollowingClock:
    """The system clock moved by ``offset`` seconds: a kept message waits for a real reset, a short one."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset


class StoppableClock(FollowingClock):
    """Follows the wall clock, but can be stopped: while it is stopped the buckets do not refill, so what a
    burst is allowed does not depend on how fast a loaded machine sends it."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped: float | None = None

    def now(self) -> float:
        return self.stopped if self.stopped is not None else super().now()

    def stop(self) -> None:
        self.stopped = self.now()

    def go_on(self) -> None:
        assert self.stopped is not None
        self.offset, self.stopped = self.stopped - time.time(), None


class TimedSink(CollectingSink):
    """Keeps every outcome delivered through it, and when (``time.monotonic()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    async def deliver(self, entry: Any, outcome: Any, stream: Any) -> None:
        self.at.append(time.monotonic())
        await super().deliver(entry, outcome, stream)


def kept_runtime(client: Any, clock: Any, **limits: Any) -> tuple[Any, ScriptedModel, TimedSink]:
    runtime, model = runtime_with(client, clock, over_limit="answer_at_reset", **limits)
    sink = TimedSink()
    runtime.pipeline.register_sink("slack", sink)
    return runtime, model, sink


async def answered_later(runtime: Any, sink: Any, count: int, within: float = 10.0) -> list[str]:
    """The recovery loop's passes (every worker runs them) until ``count`` answers went out by the sink."""
    import asyncio

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        await runtime.worker.recover_once()
        await runtime.pipeline.idle(5)
        texts = [r.text for o in sink.outcomes for r in o.replies if r.kind is ReplyKind.ANSWER]
        if len(texts) >= count:
            return texts
        await asyncio.sleep(0.05)
    return [r.text for o in sink.outcomes for r in o.replies if r.kind is ReplyKind.ANSWER]


async def test_messages_over_the_rate_are_kept_and_answered_in_order_as_it_refills(any_redis):
    clock = StoppableClock()
    runtime, model, sink = kept_runtime(any_redis, clock, messages_per_minute=300, burst=2)  # 1 / 0.2 s
    members = runtime.member_actions
    thread = ThreadRef("slack", "T-keep", "C1", "1.0")
    clock.stop()  # the six arrive at one instant, however long the machine takes to send them
    outcomes = [await members.handle_message(message(thread, f"m{i}")) for i in range(6)]
    started = time.monotonic()
    clock.go_on()
    assert [o.model_called for o in outcomes] == [True, True, False, False, False, False]
    lines = [limit_lines(o) for o in outcomes[2:]]
    assert len(lines[0]) == 1 and lines[1:] == [[], [], []]  # one line for the window
    assert lines[0][0].startswith("You're sending messages faster than this community allows; you can continue "
                                  "after ")
    assert "Your message is kept: I'll answer it after that, no need to send it again." in lines[0][0]
    assert lines[0][0].endswith(f"If you need support right now: {CRISIS}")
    # as the bucket refills, one every 0.2 s, well before a lease (6 s) would have run out: six messages
    # from a bucket of two take at least 0.8 s
    assert await answered_later(runtime, sink, 4, within=5) == [f"Answer to: m{i}" for i in range(2, 6)]
    assert sink.at[-1] - started > 0.75
    assert model.calls == 6  # each answered once
    _, log = await runtime.store.turns.load(thread)
    assert [e.text for e in log if e.kind.value == "user"] == [f"m{i}" for i in range(6)]
    assert await any_redis.llen("tg:{t:slack:T-keep:C1:1.0}:inbox") == 0
    await runtime.aclose()


async def test_a_ceiling_reached_just_before_midnight_keeps_messages_for_the_next_day_but_not_at_risk_ones(any_redis):
    now = time.time()
    clock = FollowingClock(day_end(now) - 4.0 - now)  # 23:59:56 UTC
    runtime, model, sink = kept_runtime(any_redis, clock, daily_spend_usd=0.03)  # US$0.018 a call
    members = runtime.member_actions
    a, risk = ThreadRef("slack", "T-night", "C1", "1.0"), ThreadRef("slack", "T-night", "C1", "3.0")
    flagged = await members.handle_message(message(risk, "I want to hurt myself", BOB))  # two calls: over it
    assert flagged.model_called and len(flagged.spend_alerts) == 2
    kept = [await members.handle_message(message(a, f"later {i}")) for i in range(2)]
    assert [o.model_called for o in kept] == [False, False]
    line = limit_lines(kept[0])[0]
    assert line.startswith("You've reached today's limit for this community; you can continue after 00:00 UTC, in ")
    assert "Your message is kept" in line and limit_lines(kept[1]) == []
    # a thread flagged at risk is never held
    assert (await members.handle_message(message(risk, "still here", BOB))).model_called
    assert await runtime.worker.recover_once() == 0 and clock.now() < day_end(now)  # not before midnight
    assert sink.outcomes == []
    calls = model.calls
    assert await answered_later(runtime, sink, 2) == ["Answer to: later 0", "Answer to: later 1"]
    assert model.calls == calls + 2 and clock.now() >= day_end(now)
    await runtime.aclose()


async def test_a_kept_message_waits_again_when_its_limit_is_still_reached(any_redis):
    """Taken up again by another process's recovery (the first one stopped), a kept message still over its
    limit goes back to wait, without a second line to the member, and is answered at the next reset."""
    clock = FollowingClock()
    runtime, _, _ = kept_runtime(any_redis, clock, messages_per_minute=60, burst=1)  # 1 / s
    members = runtime.member_actions
    thread = ThreadRef("slack", "T-again", "C1", "1.0")
    assert (await members.handle_message(message(thread, "first"))).model_called
    kept = await members.handle_message(message(thread, "second"))
    assert not kept.model_called and len(limit_lines(kept)) == 1
    await runtime.aclose()
    other, model2, sink2 = kept_runtime(any_redis, clock, messages_per_minute=60, burst=1)
    try:
        inbox = other.store.inbox
        charge = inbox.charge_limits
        spent = []

        async def someone_spends_the_refill_first(check: Any) -> Any:  # the member's bucket is empty again
            if not spent:
                spent.append(await charge(check))
            return await charge(check)

        inbox.charge_limits = someone_spends_the_refill_first
        assert await answered_later(other, sink2, 1) == ["Answer to: second"]
        assert len(spent) == 1 and spent[0] is None  # the first look found the refill and spent it
        assert model2.calls == 1
        assert [limit_lines(o) for o in sink2.outcomes] == [[]]  # no second line
    finally:
        await other.aclose()


async def test_a_kept_message_behind_a_turn_that_flags_the_thread_at_risk_is_answered_at_once(any_redis):
    model = GatedModel(lambda text: [TextBlock("I'm here with you."), model.tool("flag_risk", kind="self_harm",
                                                                               note="said so")]
                       if "hurt myself" in text else [TextBlock(f"Answer to: {text}")], usage=PER_CALL)
    config = CommunityConfig(crisis_resources=CRISIS, limits=CommunityLimits(
        messages_per_minute=1, over_limit="answer_at_reset"))
    runtime = build_runtime(Settings(redis=RedisSettings(url=None)), redis=any_redis, model=model,
                            communities=Communities(config), clock=FollowingClock())
    sink = TimedSink()
    runtime.pipeline.register_sink("slack", sink)
    members = runtime.member_actions
    thread = ThreadRef("slack", "T-risk-kept", "C1", "1.0")
    first = await members.accept(message(thread, "I want to hurt myself"))  # the minute's message
    kept = await members.accept(message(thread, "are you there?"))  # kept for a minute, behind it
    assert kept.accepted and kept.outcome is not None and len(limit_lines(kept.outcome)) == 1
    model.gate.set()
    assert (await first.result()).model_called
    assert await runtime.pipeline.idle(5)
    assert [r.text for o in sink.outcomes for r in o.replies if r.kind is ReplyKind.ANSWER] == [
        "Answer to: are you there?"]  # the thread is at risk now: not held
    await runtime.aclose()


async def test_an_admin_sets_the_limits_and_what_happens_over_them_on_the_settings_page(redis_client):
    import re

    from aiohttp.test_utils import TestClient, TestServer

    from adapters.dashboard.app import build_app
    from adapters.dashboard.auth import Accounts
    from config.dashboard import DashboardSettings
    from tests.integration.dashboard_client import PASSWORD, SECRET

    csrf = re.compile(r'name="csrf" value="([0-9a-f]+)"')
    runtime, _ = runtime_with(redis_client, Clock(), messages_per_minute=6)
    community = "G-web-limits"
    await Accounts(runtime.redis, SECRET.encode()).add("operator", PASSWORD, [], admin=True)
    server = TestServer(build_app(runtime, DashboardSettings(session_secret=SECRET, cookie_secure=False)))
    client = TestClient(server)
    await client.start_server()
    try:
        token = csrf.search(await (await client.get("/login")).text())
        assert token is not None
        await client.post("/login", data={"csrf": token[1], "name": "operator", "password": PASSWORD})
        page = await (await client.get(f"/settings/{community}")).text()
        assert 'name="limits.messages_per_minute" type="number" min="0" max="10000" value="6"' in page
        assert '<option value="tell" selected>' in page
        token = csrf.search(page)
        assert token is not None
        form = {"csrf": token[1], "version": "0", "threshold": "3", "crisis_resources": CRISIS, "limits": "1",
                "limits.messages_per_minute": "10", "limits.burst": "", "limits.tokens_per_day": "50000",
                "limits.daily_spend_usd": "2.5", "limits.exempt_moderators": "on", "limits.exempt_users": "U1, U2",
                "limits.over_limit": "answer_at_reset"}
        saved = await client.post(f"/settings/{community}", data=form, allow_redirects=False)
        assert saved.status == 303, await saved.text()
        limits = runtime.communities.get(community).limits
        assert limits == CommunityLimits(messages_per_minute=10, tokens_per_day=50_000, daily_spend_usd=2.5,
                                         exempt_users=("U1", "U2"), over_limit="answer_at_reset")
        history = await runtime.community_settings.history(community)
        assert history[0]["changes"]["limits.over_limit"] == ["tell", "answer_at_reset"]
        # a form without the limits fieldset keeps them; a bad choice is refused, nothing saved
        page = await (await client.get(f"/settings/{community}")).text()
        assert '<option value="answer_at_reset" selected>' in page
        token = csrf.search(page)
        assert token is not None
        kept = await client.post(f"/settings/{community}", allow_redirects=False, data={
            "csrf": token[1], "version": "1", "threshold": "4", "crisis_resources": CRISIS})
        assert kept.status == 303 and runtime.communities.get(community).limits == limits
        refused = await client.post(f"/settings/{community}", data={
            **form, "csrf": token[1], "version": "2", "limits.over_limit": "drop"})
        assert refused.status == 400 and runtime.communities.get(community).limits == limits
    finally:
        await client.close()
        await runtime.aclose()
