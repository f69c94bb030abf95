"""Spend and rate limits with real ``threadguard slack --http`` worker processes against one private
redis-server: a member who floods, a second member and a moderator beside them; a community's daily
ceiling reached mid-day and the next UTC day (the workers' limit clock is moved through
``THREADGUARD_CLOCK_OFFSET_FILE``, never by sleeping). What members saw is read from the Slack stand-in,
the order of turns from the Messages API stand-in's request log."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.slack.conftest import TEAM, Payloads
from tests.e2e.slack.test_pipeline_faults import answers, no_tracebacks, redis_target, session, until, workers
from tests.support.anthropic_standin import AnthropicStandin, Reply, reply
from tests.support.slack_standin import SlackStandin
from tests.support.workers import newest_user_text, post_event

__all__ = ["redis_target", "session", "workers"]  # fixtures shared with the pipeline fault tests

pytestmark = pytest.mark.timeout(240)

MODLOG = "CMODLOG"
CRISIS = "Call or text 988 now."
ANSWER = "Answer to: "
#: Every model call bills 1000 input and 1000 output tokens: US$0.018 at the default prices.
USAGE = {"input_tokens": 1000, "output_tokens": 1000, "cache_creation_input_tokens": 0,
         "cache_read_input_tokens": 0}


def communities_file(tmp_path: Path, limits: str) -> Path:
    path = tmp_path / "communities.toml"
    path.write_text(f"""
[community."{TEAM}"]
crisis_resources = "{CRISIS}"
mod_log_channel = "{MODLOG}"
moderators = ["UMOD"]

[community."{TEAM}".limits]
{limits}
""", encoding="utf-8")
    return path


def answer_all(standin: AnthropicStandin) -> None:
    def respond(body: dict[str, Any]) -> Reply:
        text = newest_user_text(body)
        if "hurt myself" in text:
            return reply("I'm here with you.", {"type": "tool_use", "id": f"toolu_{len(standin.bodies)}",
                                                "name": "flag_risk", "input": {"kind": "self_harm", "note": "x"}},
                         usage=USAGE)
        return reply(ANSWER + text, usage=USAGE)

    standin.responder = respond


def ephemerals(standin: SlackStandin, user: str) -> list[str]:
    return [str(c.get("text")) for c in standin.calls_to("chat.postEphemeral") if c.get("user") == user]


def modlog_lines(standin: SlackStandin) -> list[str]:
    return [str(c.get("text")) for c in standin.calls_to("chat.postMessage") if c.get("channel") == MODLOG]


@pytest.mark.parametrize("redis_target", ["server"], indirect=True)
async def test_a_flood_of_thirty_messages_gets_its_burst_answered_and_one_line(workers, standin, anthropic_standin,
                                                                             session, tmp_path):
    answer_all(anthropic_standin)
    path = communities_file(tmp_path, "messages_per_minute = 1\nburst = 5")
    a, b = await workers(2, THREADGUARD_COMMUNITIES_FILE=str(path))
    payloads = Payloads()
    opening = payloads.mention("flood 00")
    root = opening["event"]["ts"]
    flood = [opening, *(payloads.message(f"flood {i:02d}", root) for i in range(1, 30))]
    started = time.monotonic()
    for i, event in enumerate(flood):  # 30 messages in well under 10 s, alternating between the workers
        assert await post_event(session, (a, b)[i % 2].url, event) == 200
    assert time.monotonic() - started < 10
    # a second member (own thread) and a moderator (in the same thread) in the same community
    bob_open = payloads.mention("bob 0", user="UBOB")
    bob_root = bob_open["event"]["ts"]
    bob = [bob_open, *(payloads.message(f"bob {i}", bob_root, user="UBOB") for i in range(1, 4))]
    mod = [payloads.message(f"mod {i}", root, user="UMOD") for i in range(8)]
    for i, event in enumerate([*bob, *mod]):
        assert await post_event(session, (a, b)[i % 2].url, event) == 200
    expected = [f"flood {i:02d}" for i in range(5)]
    await until(lambda: sum(answers(standin, root)[t] for t in [*expected, *(f"mod {i}" for i in range(8))]) == 13,
                60, "the burst's and the moderator's answers")
    await until(lambda: sum(answers(standin, bob_root)[f"bob {i}"] for i in range(4)) == 4, 30, "bob's answers")
    await asyncio.sleep(1.0)
    asked = [newest_user_text(body) for body in anthropic_standin.bodies]
    assert [t for t in asked if t.startswith("flood")] == expected  # in order, nothing over the limit
    assert {t for t, n in answers(standin, root).items() if t.startswith("flood") and n} == set(expected)
    lines = ephemerals(standin, "UALICE")
    assert len(lines) == 1, lines
    assert lines[0].startswith("You're sending messages faster than this community allows; you can continue "
                               "after ") and lines[0].endswith(f"If you need support right now: {CRISIS}")
    assert ephemerals(standin, "UBOB") == [] and ephemerals(standin, "UMOD") == []
    no_tracebacks(a, b)


@pytest.mark.parametrize("redis_target", ["server"], indirect=True)
async def test_a_ceiling_reached_mid_day_stops_all_but_threads_at_risk_until_the_next_day(
        workers, standin, anthropic_standin, session, tmp_path):
    answer_all(anthropic_standin)
    clock = tmp_path / "clock-offset"
    now = time.time()
    clock.write_text(str((now // 86_400) * 86_400 + 12 * 3600 - now))  # noon UTC today
    path = communities_file(tmp_path, "daily_spend_usd = 0.05")  # 0.018 a call: the third call passes it
    a, b = await workers(2, THREADGUARD_COMMUNITIES_FILE=str(path), THREADGUARD_CLOCK_OFFSET_FILE=str(clock))
    payloads = Payloads()
    first = payloads.mention("one")
    root = first["event"]["ts"]
    assert await post_event(session, a.url, first) == 200
    await until(lambda: answers(standin, root)["one"], 20, "the first answer")
    assert modlog_lines(standin) == []
    risk = payloads.mention("I want to hurt myself", user="UBOB")  # two calls: 0.054, over 80% and 100%
    risk_root = risk["event"]["ts"]
    assert await post_event(session, b.url, risk) == 200
    await until(lambda: len(modlog_lines(standin)) >= 2, 20, "the spend alerts")
    for i, event in enumerate([payloads.message("two", root), payloads.message("three", root),
                               payloads.mention("carol here", user="UCAROL")]):
        assert await post_event(session, (a, b)[i % 2].url, event) == 200
    await until(lambda: ephemerals(standin, "UCAROL"), 20, "carol's limit line")
    assert await post_event(session, a.url, payloads.message("still talking", risk_root, user="UBOB")) == 200
    await until(lambda: answers(standin, risk_root)["still talking"], 20, "the at-risk thread's answer")
    await asyncio.sleep(0.5)
    alice = ephemerals(standin, "UALICE")
    assert len(alice) == 1, alice  # two messages refused, one line
    assert alice[0].startswith("You've reached today's limit for this community; you can continue after 00:00 UTC, "
                               "in 1"), alice  # 12 h, or 11 h 59 min
    assert ephemerals(standin, "UBOB") == []
    assert not answers(standin, root)["two"] and not answers(standin, root)["three"]
    lines = modlog_lines(standin)
    assert len(lines) == 2 and "passed 80%" in lines[0] and "has reached its daily ceiling" in lines[1], lines

    clock.write_text(str((now // 86_400) * 86_400 + 86_400 + 60 - time.time()))  # 00:01 UTC tomorrow
    await asyncio.sleep(0.2)
    assert await post_event(session, b.url, payloads.message("good morning", root)) == 200
    await until(lambda: answers(standin, root)["good morning"], 20, "the next day's answer")
    assert len(modlog_lines(standin)) == 2  # once each
    no_tracebacks(a, b)



@pytest.mark.parametrize("redis_target", [pytest.param("server", id="server"),
                                          pytest.param("cluster", id="cluster", marks=pytest.mark.cluster)],
                         indirect=True)
async def test_messages_kept_for_the_next_day_are_answered_after_midnight_by_a_survivor_of_a_sigkill(
        workers, standin, anthropic_standin, session, tmp_path):
    """``over_limit = "answer_at_reset"``: the ceiling is reached (at noon on the workers' limit clock);
    half a minute before midnight later messages are kept in Redis, the worker that took them is killed
    with SIGKILL, and the other answers each once, in order, when the next UTC day begins."""
    asked: list[tuple[float, str]] = []

    answer_all(anthropic_standin)
    answering = anthropic_standin.responder

    def respond(body: dict[str, Any]) -> Reply:
        asked.append((time.time(), newest_user_text(body)))
        return answering(body)

    anthropic_standin.responder = respond
    clock = tmp_path / "clock-offset"
    path = communities_file(tmp_path, 'daily_spend_usd = 0.05\nover_limit = "answer_at_reset"')  # 0.018 a call
    now = time.time()
    noon = (now // 86_400) * 86_400 + 12 * 3600
    clock.write_text(str(noon - now))  # noon UTC on the limit clock
    a, b = await workers(2, THREADGUARD_COMMUNITIES_FILE=str(path), THREADGUARD_CLOCK_OFFSET_FILE=str(clock))
    payloads = Payloads()
    first = payloads.mention("one")
    root = first["event"]["ts"]
    assert await post_event(session, a.url, first) == 200
    await until(lambda: answers(standin, root)["one"], 20, "the first answer")
    bob = payloads.mention("I want to hurt myself", user="UBOB")  # two calls: 0.054, the ceiling is passed
    assert await post_event(session, b.url, bob) == 200
    await until(lambda: len(modlog_lines(standin)) >= 2, 20, "the spend alerts")
    now = time.time()
    clock.write_text(str(noon + 12 * 3600 - 30 - now))  # 23:59:30 the same day: midnight 30 s from now
    real_midnight = now + 30
    await asyncio.sleep(0.3)
    kept = [f"later {i}" for i in range(3)]
    for text in kept:
        assert await post_event(session, a.url, payloads.message(text, root)) == 200
    await until(lambda: ephemerals(standin, "UALICE"), 20, "alice's line")
    a.kill()  # the worker that took the kept messages; they wait in Redis
    assert time.time() < real_midnight, "the test machine was too slow to keep the messages before midnight"
    await until(lambda: all(answers(standin, root)[t] for t in kept), 60, "the kept messages' answers")
    await asyncio.sleep(1.0)
    assert [t for _, t in asked if t in ("one", *kept)] == ["one", *kept]  # each once, in order
    assert all(at >= real_midnight - 0.5 for at, t in asked if t in kept)  # not before the next day
    assert all(answers(standin, root)[t] == 1 for t in kept)
    lines = ephemerals(standin, "UALICE")
    assert len(lines) == 1, lines
    assert lines[0].startswith("You've reached today's limit for this community; you can continue after 00:00 UTC, ")
    assert "Your message is kept: I'll answer it after that" in lines[0]
    no_tracebacks(b)
