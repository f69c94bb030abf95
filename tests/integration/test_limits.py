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


@pytest.mark.parametrize("limits", [{}, {"messages_per_minute": 0}])
async def test_no_limits_configured_counts_nothing_extra(redis_client, limits):
    runtime, _ = runtime_with(redis_client, Clock(), **limits)
    await runtime.member_actions.handle_message(message(ThreadRef("slack", "T2", "C1", "1.0"), "hi"))
    names = await redis_client.keys("*")
    assert not [k for k in names if ":rate:" in k or k.endswith(":members") or ":limited" in k]


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
