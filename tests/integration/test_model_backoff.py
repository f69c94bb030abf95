"""The model API's rate limits as a back-off shared through Redis: a 429 that outlasts the client's
retries leaves the message at the head of its inbox (nothing lost, nothing answered twice), every turn
waits while the back-off holds, and the recovery loop answers the waiting threads when it ends. Real
Redis and the real anthropic client against the Messages API stand-in."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from bot.anthropic_client import retry_after
from bot.store.backoff import KEY
from bot.types import ReplyKind, ThreadRef
from tests.integration.engine_helpers import CollectingSink, claude_runtime, message
from tests.support.anthropic_standin import http_error, reply

A, B = ThreadRef("console", "g1", "c1", "t-a"), ThreadRef("console", "g1", "c1", "t-b")


def test_the_wait_is_read_from_retry_after_or_the_rate_limit_reset_headers():
    now = 1_000_000.0
    assert retry_after({"retry-after-ms": "1500"}, now) == 1.5
    assert retry_after({"retry-after": "7"}, now) == 7.0
    reset = datetime.fromtimestamp(now, tz=UTC) + timedelta(seconds=12)
    headers = {"anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": reset.isoformat(),
               "anthropic-ratelimit-tokens-remaining": "5000",
               "anthropic-ratelimit-tokens-reset": (reset + timedelta(seconds=60)).isoformat()}
    assert retry_after(headers, now) == 12.0  # the limit that ran out, not the one with room left
    assert retry_after({}, now) is None


async def test_a_429_keeps_the_message_queued_until_the_shared_backoff_ends(redis_client, anthropic_standin):
    runtime = claude_runtime(redis_client, anthropic_standin.base_url, max_retries=0)
    sink = CollectingSink()
    members = runtime.member_actions
    runtime.pipeline.register_sink("console", sink)
    api = anthropic_standin
    try:
        api.enqueue(reply("Hello A."))
        assert (await members.handle_message(message(A, "first"))).replies[0].text == "Hello A."
        api.enqueue(http_error(429, headers={"retry-after": "1", "anthropic-ratelimit-requests-remaining": "0"}))
        waiting = await members.handle_message(message(A, "second"))
        assert waiting.queued and not waiting.replies  # no error: it waits in the inbox
        shared = int(await redis_client.get(KEY))
        assert 500 < shared - time.time() * 1000 <= 1000
        calls = api.calls
        other = await members.handle_message(message(B, "meanwhile"))  # no model call while it holds
        assert other.queued and api.calls == calls
        assert await redis_client.llen("tg:{t:console:g1:c1:t-a}:inbox") == 1
        assert await runtime.worker.recover_once() == 0  # nothing is taken before the wait ends
        api.responder = lambda body: reply("Answer after the wait.")
        await asyncio.sleep(max(0.0, shared / 1000 - time.time()) + 0.05)
        assert await runtime.worker.recover_once() == 2
        assert await runtime.pipeline.idle(5)
        answered = sorted((o.thread.thread, r.text) for o in sink.outcomes for r in o.replies
                          if r.kind is ReplyKind.ANSWER)
        assert answered == [("t-a", "Answer after the wait."), ("t-b", "Answer after the wait.")]
        _, log = await runtime.store.turns.load(A)
        assert [e.text for e in log if e.kind.value == "user"] == ["first", "second"]
    finally:
        await runtime.aclose()


async def test_a_long_backoff_tells_the_waiting_member_once(redis_client, anthropic_standin):
    runtime = claude_runtime(redis_client, anthropic_standin.base_url, max_retries=0)
    sink = CollectingSink()
    runtime.pipeline.register_sink("console", sink)
    try:
        anthropic_standin.enqueue(http_error(429, retry_after_ms=30_000))
        await runtime.member_actions.handle_message(message(A, "one"))
        await runtime.member_actions.handle_message(message(A, "two"))  # the same back-off: not told again
        busy = [r.text for o in sink.outcomes for r in o.replies]
        assert busy == ["I'm busy right now: your message is queued, and I'll answer it as soon as I can."]
        assert await redis_client.llen("tg:{t:console:g1:c1:t-a}:inbox") == 2
    finally:
        await runtime.aclose()
