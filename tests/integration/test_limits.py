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
from config.communities import Communities, CommunityConfig, CommunityLimits
from config.settings import RedisSettings, Settings
from tests.integration.engine_helpers import message
from tests.integration.scripted_model import ScriptedModel
from tests.support.processes import clean_env, run_cli

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
    engine = runtime.engine
    thread, other = ThreadRef("slack", "T1", "C1", "1.1"), ThreadRef("slack", "T1", "C1", "2.2")
    outcomes = [await engine.handle_message(message(thread, f"m{i}")) for i in range(6)]
    assert [o.model_called for o in outcomes] == [True, True, True, False, False, False]
    notices = [limit_lines(o) for o in outcomes[3:]]
    assert len(notices[0]) == 1 and notices[1:] == [[], []]  # once per window in this thread
    assert notices[0][0].startswith("You're sending messages faster than this community allows; "
                                    "you can continue after ")
    assert "in 10 s" in notices[0][0] and notices[0][0].endswith(f"If you need support right now: {CRISIS}")
    # the same member is limited in another thread too (the bucket is the member's), told there once
    elsewhere = await engine.handle_message(message(other, "elsewhere"))
    assert not elsewhere.model_called and len(limit_lines(elsewhere)) == 1
    # another member and a moderator are not affected
    assert (await engine.handle_message(message(other, "bob here", BOB))).model_called
    assert all([(await engine.handle_message(message(thread, f"mod {i}", MOD))).model_called for i in range(5)])
    # 10 s later one message is back in Alice's bucket
    clock.at += 10
    assert (await engine.handle_message(message(thread, "after the wait"))).model_called
    later = await engine.handle_message(message(thread, "too soon again"))
    assert not later.model_called and len(limit_lines(later)) == 1  # a new window: told again
    assert model.calls == 3 + 1 + 5 + 1


async def test_tokens_per_day_stop_the_member_until_the_next_utc_day(any_redis):
    clock = Clock()
    runtime, _ = runtime_with(any_redis, clock, tokens_per_day=3000)
    engine = runtime.engine
    thread = ThreadRef("discord", "G1", "c1", "t1")
    assert [(await engine.handle_message(message(thread, f"q{i}"))).model_called for i in range(2)] == [True, True]
    refused = await engine.handle_message(message(thread, "q3"))
    assert not refused.model_called
    hours = int((day_end(clock.at) - clock.at) // 3600)
    assert limit_lines(refused)[0].startswith("You've reached your daily limit in this community; you can "
                                              f"continue after 00:00 UTC, in {hours} h")
    assert (await engine.handle_message(message(thread, "bob", BOB))).model_called
    clock.at = day_end(clock.at) + 1
    assert (await engine.handle_message(message(thread, "a new day"))).model_called


async def test_the_daily_ceiling_stops_everyone_but_threads_at_risk_and_alerts_once_each(any_redis):
    clock = Clock()
    runtime, model = runtime_with(any_redis, clock, daily_spend_usd=0.04)  # US$0.018 a turn
    engine = runtime.engine
    a, b, risk = (ThreadRef("slack", "T9", "C1", ts) for ts in ("1.0", "2.0", "3.0"))
    first = await engine.handle_message(message(a, "one"))
    assert first.model_called and first.spend_alerts == []
    at_risk = await engine.handle_message(message(risk, "I want to hurt myself", BOB))  # 0.036 + 0.018: two calls
    assert [line[:60] for line in at_risk.spend_alerts] == [
        "Spend alert: community T9 has passed 80% of its daily ceilin",
        "Spend alert: community T9 has reached its daily ceiling of U"]
    for thread, author in ((a, ALICE), (b, BOB)):
        stopped = await engine.handle_message(message(thread, "more", author))
        assert not stopped.model_called
        assert limit_lines(stopped)[0].startswith("You've reached today's limit for this community; you can "
                                                  "continue after 00:00 UTC, in ")
    # the thread at risk is still answered, and the alerts are not posted again
    again = await engine.handle_message(message(risk, "still here", BOB))
    assert again.model_called and again.spend_alerts == []
    calls = model.calls
    clock.at = day_end(clock.at) + 5
    next_day = await engine.handle_message(message(b, "good morning", BOB))
    assert next_day.model_called and model.calls == calls + 1


@pytest.mark.parametrize("limits", [{}, {"messages_per_minute": 0}])
async def test_no_limits_configured_counts_nothing_extra(redis_client, limits):
    runtime, _ = runtime_with(redis_client, Clock(), **limits)
    await runtime.engine.handle_message(message(ThreadRef("slack", "T2", "C1", "1.0"), "hi"))
    names = await redis_client.keys("*")
    assert not [k for k in names if ":bucket:" in k or k.endswith(":members") or ":limited" in k]


async def test_threadguard_usage_shows_each_limit_beside_todays_use(redis_client, redis_server, tmp_path):
    clock = Clock()
    clock.at = time.time()  # the CLI reads today by the system clock
    runtime, _ = runtime_with(redis_client, clock, daily_spend_usd=0.1, tokens_per_day=50_000, messages_per_minute=6)
    engine = runtime.engine
    for i in range(2):
        await engine.handle_message(message(ThreadRef("discord", "G7", "c1", "t1"), f"q{i}"))
    await engine.handle_message(message(ThreadRef("discord", "G7", "c1", "t2"), "bob", BOB))
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
        await runtime.engine.handle_message(message(thread, "first"))  # scripts loaded
        before = turn_costs(runtime)
        for i in range(3):
            assert (await runtime.engine.handle_message(message(thread, f"again {i}"))).model_called
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
        self.texts.append(request.messages[-1].blocks[0].text)
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
    engine = runtime.engine
    thread = ThreadRef("slack", "T-busy", "C1", "1.0")
    first = await engine.accept(message(thread, "one"))
    second = await engine.accept(message(thread, "two"))  # the thread is busy: queued, the bucket's last
    third = await engine.accept(message(thread, "three"))  # over: refused before it is queued
    assert first.accepted and second.accepted and not third.accepted
    assert third.outcome is not None and len(limit_lines(third.outcome)) == 1
    model.gate.set()
    assert [r.text for r in (await first.result()).replies] == ["Answer to: one"]
    assert [r.text for r in (await second.result()).replies] == ["Answer to: two"]
    assert await engine.pipeline.idle(5)
    assert model.texts == ["one", "two"]
    assert await any_redis.llen("tg:{t:slack:T-busy:C1:1.0}:inbox") == 0
    await runtime.aclose()


async def test_a_message_refused_after_its_owner_took_it_lets_what_waits_behind_be_answered(cluster_client):
    """Cluster: a message that found its thread free is taken before its limits' verdict comes back; over a
    limit, it is removed before any model call, and a message queued behind it meanwhile is answered."""
    from tests.integration.engine_helpers import CollectingSink

    runtime, model = gated_runtime(cluster_client, messages_per_minute=6, burst=1)
    model.gate.set()
    engine, sink = runtime.engine, CollectingSink()
    engine.pipeline.register_sink("slack", sink)
    thread = ThreadRef("slack", "T-behind", "C1", "1.0")
    assert (await engine.handle_message(message(thread, "one"))).model_called  # the bucket's only message
    inbox = runtime.store.inbox
    refuse = inbox._refuse_head
    queued = []

    async def moderator_first(*args: Any, **kwargs: Any) -> Any:  # a moderator writes while it is taken
        queued.append(await engine.accept(message(thread, "mod here", MOD), wait=False))
        return await refuse(*args, **kwargs)

    inbox._refuse_head = moderator_first
    refused = await engine.handle_message(message(thread, "two"))
    assert not refused.model_called and len(limit_lines(refused)) == 1
    assert queued[0].accepted
    assert await engine.pipeline.idle(5)
    assert model.texts == ["one", "mod here"]
    assert [r.text for o in sink.outcomes for r in o.replies] == ["Answer to: mod here"]
    _, log = await runtime.store.turns.load(thread)
    assert [e.text for e in log if e.kind.value == "user"] == ["one", "mod here"]
    await runtime.aclose()
