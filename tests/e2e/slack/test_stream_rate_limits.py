"""The streaming updater: the model stream never waits on Slack, a 429 to ``chat.update`` is waited out
(for its Retry-After, by every process of the workspace) and the final text arrives exactly once."""

from __future__ import annotations

import asyncio
import itertools
import time

from bot.model import ModelRequest, ModelResponse, TextBlock, Usage
from bot.store.budget import Rate, SharedBudget, budget_key
from bot.types import TextSink
from tests.e2e.slack.conftest import TEAM, serve, thread_texts

WORDS = [f"word{i} " for i in range(24)]
FINAL = "".join(WORDS).strip()


class SlowStreamingModel:
    """Streams one word every ``pace`` seconds and notes how long the whole stream took."""

    label = "slow stream"
    offline = True

    def __init__(self, pace: float) -> None:
        self.pace = pace
        self.stream_seconds: list[float] = []

    async def respond(self, request: ModelRequest, sink: TextSink | None = None) -> ModelResponse:
        started = time.monotonic()
        for word in WORDS:
            if sink is not None:
                await sink(word)
            await asyncio.sleep(self.pace)
        self.stream_seconds.append(time.monotonic() - started)
        return ModelResponse([TextBlock("".join(WORDS))], "end_turn", Usage(output_tokens=len(WORDS), calls=1))

    async def aclose(self) -> None:
        return None


async def _paused_for(client) -> float:
    """Seconds every process of the workspace is told to leave chat.update alone (as stored in Redis)."""
    for _ in range(100):
        until = float(await client.hget(budget_key(TEAM, "chat.update"), "paused") or 0)
        if until:
            return until / 1000 - time.time()
        await asyncio.sleep(0.01)
    return 0.0


async def _env(make_env, pace: float = 0.04):
    env = await make_env(streaming=False)  # answers are posted and updated (streams: test_answer_modes.py)
    model = SlowStreamingModel(pace)
    env.runtime.engine.model = model
    return env, model


async def test_a_429_on_chat_update_blocks_neither_the_stream_nor_repeats_the_final_text(make_env, payloads):
    env, model = await _env(make_env)
    standin = env.standin
    retry_after = 2
    standin.fail("chat.update", status=429, retry_after=retry_after, error="ratelimited")
    async with serve(env) as http:
        first = payloads.mention("tell me a story")
        await http.event(first)
        # the 429 lands on the first update; another process of the workspace sees the pause in Redis
        await standin.wait_for(lambda: any(c.status == 429 for c in standin.attempts("chat.update")))
        assert await _paused_for(env.runtime.redis) > retry_after - 0.5
        await env.settle()

    [stream_seconds] = model.stream_seconds
    assert stream_seconds < len(WORDS) * model.pace + 1.0 < retry_after + len(WORDS) * model.pace  # never waited
    attempts = standin.attempts("chat.update")
    limited = next(i for i, c in enumerate(attempts) if c.status == 429)
    after = attempts[limited + 1:]
    assert after, "the update was never sent again"
    assert after[0].at - attempts[limited].at >= retry_after - 0.05  # Retry-After honoured
    shown = [c.args["text"] for c in attempts if c.status == 200]
    assert shown.count(FINAL) == 1 and shown[-1] == FINAL  # the final text, once
    assert thread_texts(standin, first["event"]["ts"]) == [FINAL]
    assert len(standin.calls_to("chat.postMessage")) == 1


async def test_a_server_error_on_chat_update_is_retried_by_the_client(make_env, payloads):
    env, _ = await _env(make_env, pace=0.02)
    standin = env.standin
    standin.fail("chat.update", status=503)
    async with serve(env) as http:
        first = payloads.mention("hello")
        await http.event(first)
        await env.settle()
    statuses = [c.status for c in standin.attempts("chat.update")]
    assert statuses[0] == 503 and statuses[1] == 200
    assert thread_texts(standin, first["event"]["ts"]) == [FINAL]


async def test_the_workspace_budget_paces_concurrent_replies(make_env, payloads):
    """Three replies at once in one workspace share a budget of 60 updates a minute (one a second, no burst):
    the one that took the slot of its last update is updated, one update a second; the others are posted
    whole when their models are done."""
    env, _ = await _env(make_env, pace=0.05)
    env.bot.surface.poster.budget = SharedBudget(env.runtime.redis, {"chat.update": Rate(60, 1)})
    standin = env.standin
    async with serve(env) as http:
        sent = [payloads.mention(f"story {i}") for i in range(3)]
        await asyncio.gather(*(http.event(p) for p in sent))
        await env.settle()
    times = sorted(c.at for c in standin.attempts("chat.update"))
    assert len({c.args["ts"] for c in standin.attempts("chat.update")}) == 1
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(times))
    assert [c["text"] for c in standin.calls_to("chat.postMessage")].count(FINAL) == 2
    for p in sent:
        assert thread_texts(standin, p["event"]["ts"]) == [FINAL]
