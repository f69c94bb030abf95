"""The cached prompt prefix in long threads and in quiet ones, measured on the requests the real
anthropic SDK sent to the Messages API stand-in."""

from __future__ import annotations

import itertools
import json

from bot.store import keys
from bot.types import Author, Entry, IncomingMessage, ReplyKind, ThreadRef
from config.settings import AnthropicSettings, EngineSettings, RedisSettings, Settings
from tests.support.anthropic_standin import reply
from tests.support.prompt_cache import Bill, blocks, shares_cached_prefix, text_of


def runtime_for(redis_client, base_url: str, *, cache_ttl: str = "5m"):
    from bot.bootstrap import build_runtime

    settings = Settings(anthropic=AnthropicSettings(api_key="k", base_url=base_url, max_retries=0, cache_ttl=cache_ttl),
                        redis=RedisSettings(url=None), engine=EngineSettings())
    return build_runtime(settings, redis=redis_client)


async def say(runtime, thread: ThreadRef, text: str, n: int) -> None:
    outcome = await runtime.member_actions.handle_message(
        IncomingMessage(thread, Author("u1", "m"), text, message_id=f"m{n}"))
    assert any(r.kind is ReplyKind.ANSWER for r in outcome.replies)


async def test_consecutive_requests_share_the_cached_prefix_past_the_history_budget(redis_client, anthropic_standin):
    """3,200-character messages and 1,000-character answers under the default budget: once the history
    outgrows it, each request repeats the prefix the previous one cached on at least 9 of every 10 turns."""
    answers = itertools.count(10_000)
    anthropic_standin.responder = lambda body: reply(text_of(1000, next(answers)))
    runtime = runtime_for(redis_client, anthropic_standin.base_url)
    thread = ThreadRef("discord", "g1", "c1", "long-thread")
    first = text_of(3200, 0)
    try:
        for n in range(70):
            await say(runtime, thread, first if n == 0 else text_of(3200, n), n)
    finally:
        await runtime.aclose()
    bodies = anthropic_standin.bodies
    assert all(sum(1 for _, ttl in blocks(body) if ttl) <= 4 for body in bodies)
    trimmed = next(i for i, b in enumerate(bodies) if first not in json.dumps(b["messages"][0]))
    shared = [shares_cached_prefix(a, b) for a, b in itertools.pairwise(bodies[trimmed:])]
    assert len(shared) >= 30
    windows = [shared[i:i + 10] for i in range(0, len(shared) - 9, 10)]
    assert all(sum(w) >= 9 for w in windows), [sum(w) for w in windows]


async def _age_thread(redis_client, thread: ThreadRef, seconds: float) -> None:
    """Make the thread's last activity ``seconds`` older (as if it had been quiet that long)."""
    raw = await redis_client.lrange(keys.log(thread.key), 0, -1)
    aged = []
    for item in raw:
        entry = Entry.from_json(item)
        entry.at -= seconds
        aged.append(entry.to_json())
    await redis_client.delete(keys.log(thread.key))
    await redis_client.rpush(keys.log(thread.key), *aged)


def _history_breakpoints(body: dict) -> list[str]:
    return [ttl for canonical, ttl in blocks(body) if ttl and not canonical.startswith(('["tool"', '["system"'))]


async def test_a_thread_quieter_than_the_cache_lifetime_writes_no_history_to_the_cache(redis_client,
                                                                                     anthropic_standin):
    anthropic_standin.responder = lambda body: reply("An answer.")
    runtime = runtime_for(redis_client, anthropic_standin.base_url)
    thread = ThreadRef("discord", "g1", "c1", "quiet-thread")
    try:
        for n in range(2):
            await say(runtime, thread, f"message {n}", n)
        assert _history_breakpoints(anthropic_standin.last_body) == ["5m"]  # a brisk thread caches its history
        await _age_thread(redis_client, thread, 6 * 60)
        await say(runtime, thread, "back after six minutes", 2)
        assert _history_breakpoints(anthropic_standin.last_body) == []  # its cache is gone, a new write would be too
        await say(runtime, thread, "and right away again", 3)
        assert _history_breakpoints(anthropic_standin.last_body) == ["5m"]
    finally:
        await runtime.aclose()


async def test_the_hour_cache_keeps_a_slow_threads_history_cached(redis_client, anthropic_standin):
    anthropic_standin.responder = lambda body: reply("An answer.")
    runtime = runtime_for(redis_client, anthropic_standin.base_url, cache_ttl="1h")
    thread = ThreadRef("discord", "g1", "c1", "hour-thread")
    try:
        for n in range(2):
            await say(runtime, thread, f"message {n}", n)
        await _age_thread(redis_client, thread, 20 * 60)
        await say(runtime, thread, "back after twenty minutes", 2)
        body = anthropic_standin.last_body
        assert _history_breakpoints(body) == ["1h"]
        assert {ttl for _, ttl in blocks(body) if ttl} == {"1h"}  # an hour entry never follows a 5-minute one
        await _age_thread(redis_client, thread, 2 * 3600)
        await say(runtime, thread, "back after two hours", 3)
        assert _history_breakpoints(anthropic_standin.last_body) == []
        assert all(sum(1 for _, ttl in blocks(b) if ttl) <= 4 for b in anthropic_standin.bodies)
    finally:
        await runtime.aclose()


def test_billing_model_reads_what_an_earlier_request_wrote():
    """The bill the cost bench relies on: a repeated prefix is read at 0.1x, a new one written at 1.25x."""
    system = [{"type": "text", "text": "s" * 400, "cache_control": {"type": "ephemeral"}}]
    first = {"system": system, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "a" * 400, "cache_control": {"type": "ephemeral"}}]},
        {"role": "assistant", "content": [{"type": "text", "text": "b" * 400}]},
        {"role": "user", "content": [{"type": "text", "text": "c" * 400}]}]}
    bill = Bill()
    bill.add(first)
    second = json.loads(json.dumps(first))
    bill.add(second)
    sizes = [len(canonical) / 4 for canonical, _ in blocks(first)]
    cached, rest = sum(sizes[:2]), sum(sizes[2:])
    assert (bill.written, bill.read) == (cached, cached)
    assert bill.billed == cached * 1.25 + rest + cached * 0.1 + rest
    assert bill.uncached == 2 * (cached + rest)
