"""How a streamed answer is shown on Slack, through slack_sdk against the Slack stand-in: with Slack's
streaming methods where the channel takes them, posted and updated where it does not, whole at the end
when the workspace's budget has no slot for its last call; and under a short budget, intermediate steps
are dropped so that every answer's final text goes out as soon as its model is done."""

from __future__ import annotations

import asyncio
import time

from bot.model import ModelRequest, ModelResponse, TextBlock, Usage
from bot.store.budget import Rate, SharedBudget
from bot.types import TextSink
from tests.e2e.slack.conftest import CHANNEL, TEAM, serve, thread_texts
from tests.support.slack_rate_limits import SlackRateLimits

WORDS = [f"word{i} " for i in range(30)]
FINAL = "".join(WORDS).strip()


class PacedModel:
    """Streams one word every ``pace`` seconds; notes when each stream ended (monotonic)."""

    label = "paced"
    offline = True

    def __init__(self, pace: float) -> None:
        self.pace = pace
        self.ended: list[float] = []

    async def respond(self, request: ModelRequest, sink: TextSink | None = None) -> ModelResponse:
        for word in WORDS:
            await asyncio.sleep(self.pace)
            if sink is not None:
                await sink(word)
        self.ended.append(time.monotonic())
        return ModelResponse([TextBlock(FINAL)], "end_turn", Usage(output_tokens=len(WORDS), calls=1))

    async def aclose(self) -> None:
        return None


async def _env(make_env, pace: float = 0.03, **slack):
    env = await make_env(**slack)
    model = PacedModel(pace)
    env.runtime.engine.model = model
    return env, model


def _answer_calls(standin) -> dict[str, int]:
    methods = ("chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream", "chat.stopStream")
    return {m: len(standin.calls_to(m)) for m in methods}


async def test_an_answer_streams_with_slacks_streaming_methods(make_env, payloads):
    env, _ = await _env(make_env, stream_edit_interval=0.2)
    standin = env.standin
    async with serve(env) as http:
        first = payloads.mention("tell me a story", user="UALICE")
        await http.event(first)
        await env.settle()
    [start] = standin.calls_to("chat.startStream")
    assert (start["recipient_user_id"], start["recipient_team_id"]) == ("UALICE", TEAM)  # a channel's stream
    assert start["thread_ts"] == first["event"]["ts"]
    calls = _answer_calls(standin)
    assert calls["chat.appendStream"] >= 1 and calls["chat.stopStream"] == 1  # it grew, then it stopped
    assert calls["chat.postMessage"] == calls["chat.update"] == 0
    assert thread_texts(standin, first["event"]["ts"]) == [FINAL]
    assert not standin.open_streams


async def test_a_channel_that_refuses_streams_gets_posts_and_updates(make_env, payloads):
    env, _ = await _env(make_env, stream_edit_interval=0.2)
    standin = env.standin
    standin.stream_refusals[CHANNEL] = "not_allowed"
    async with serve(env) as http:
        sent = [payloads.mention(f"story {i}") for i in range(2)]
        for p in sent:
            await http.event(p)
            await env.settle()
    assert len(standin.attempts("chat.startStream")) == 1  # refused once: the channel is not asked again
    calls = _answer_calls(standin)
    assert calls["chat.postMessage"] == 2 and calls["chat.update"] >= 2
    for p in sent:
        assert thread_texts(standin, p["event"]["ts"]) == [FINAL]


async def test_with_no_slot_for_its_last_call_an_answer_is_posted_whole(make_env, payloads):
    env, _ = await _env(make_env, streaming=False)
    standin = env.standin
    budget = env.bot.surface.poster.budget
    assert budget is not None
    while await budget.spend(TEAM, "chat.update") == 0:  # other answers took every slot
        pass
    async with serve(env) as http:
        first = payloads.mention("hello")
        await http.event(first)
        await env.settle()
    calls = _answer_calls(standin)
    assert calls == {"chat.postMessage": 1, "chat.update": 0, "chat.startStream": 0, "chat.appendStream": 0,
                     "chat.stopStream": 0}
    assert standin.calls_to("chat.postMessage")[0]["text"] == FINAL
    assert thread_texts(standin, first["event"]["ts"]) == [FINAL]


async def test_finals_go_out_at_once_while_intermediates_are_dropped(make_env, payloads):
    """Twelve answers at once in one workspace (a channel each: Slack posts one message a second per channel),
    within Slack's documented limits (the stand-in answers 429
    past them): each answer's final text is shown within a second of its model's last word, none twice,
    and the budget is asked a bounded number of times (nothing waits on it in a loop)."""
    env, model = await _env(make_env, pace=0.05, stream_edit_interval=0.3)
    standin = env.standin
    standin.rate_limits = SlackRateLimits()
    poster = env.bot.surface.poster
    real = poster.budget
    assert isinstance(real, SharedBudget)
    asks: list[tuple[str, ...]] = []

    class Counting(SharedBudget):
        async def spend(self, workspace: str, *methods: str, headroom: int = 0) -> float:
            asks.append(methods)
            return await super().spend(workspace, *methods, headroom=headroom)

    # Slack's tiers, with bursts of 3: fewer answers can show early words than are asked at once
    poster.budget = Counting(env.runtime.redis, {m: Rate(r.per_minute, 3) for m, r in real.rates.items()})
    shown_at: dict[str, float] = {}
    sent = [payloads.mention(f"story {i}", user=f"U{i:03d}", channel=f"C{i:03d}") for i in range(12)]

    def shown(p) -> list[str]:
        return thread_texts(standin, p["event"]["ts"], channel=p["event"]["channel"])

    def note_finals() -> bool:
        for p in sent:
            ts = p["event"]["ts"]
            if ts not in shown_at and shown(p) == [FINAL]:
                shown_at[ts] = time.monotonic()
        return len(shown_at) == len(sent)

    async with serve(env) as http:
        await asyncio.gather(*(http.event(p) for p in sent))
        await standin.wait_for(note_finals, timeout=30)
        await env.settle()
    assert sum(standin.rate_limits.refused.values()) == 0, standin.rate_limits.refused
    latest_end = max(model.ended)
    assert max(shown_at.values()) - latest_end < 1.0
    for p in sent:
        assert shown(p) == [FINAL]
    whole = [c for c in standin.calls_to("chat.postMessage") if c["text"] == FINAL]
    assert whole, "with bursts of 3, some answers were shown whole"
    assert len(asks) <= 12 * (2 + len(WORDS) * model.pace / 0.3), asks  # admission, and one per step at most


async def test_a_stream_slack_ended_early_gets_its_text_by_an_update(make_env, payloads):
    env, _ = await _env(make_env, stream_edit_interval=0.2)
    standin = env.standin
    async with serve(env) as http:
        first = payloads.mention("hello")
        await http.event(first)
        await standin.wait_for(lambda: standin.open_streams, timeout=5)
        standin.open_streams.clear()  # Slack ended the stream (it timed out)
        await env.settle()
    assert thread_texts(standin, first["event"]["ts"]) == [FINAL]
    assert [c.error for c in standin.attempts("chat.stopStream")] == ["message_not_in_streaming_state"]


async def test_posts_in_one_channel_go_one_a_second_after_a_burst_never_refused(make_env, payloads):
    """Slack posts about one message a second per channel: answers posted whole in one channel are scheduled
    (the burst, then a second apart) across every process instead of sent to be refused with a 429."""
    env, _ = await _env(make_env, pace=0.001, streaming=False, update_budget_per_minute=0.001, update_burst=1,
                        channel_posts_per_minute=60, channel_post_burst=3, posts_per_minute=1200, post_burst=40)
    standin = env.standin
    standin.rate_limits = SlackRateLimits()
    budget = env.bot.surface.poster.budget
    assert budget is not None
    await budget.spend(TEAM, "chat.update")  # the one update slot is gone: every answer is posted whole
    async with serve(env) as http:
        sent = [payloads.mention(f"story {i}", user=f"U{i:03d}") for i in range(5)]
        await asyncio.gather(*(http.event(p) for p in sent))
        await env.settle()
    assert sum(standin.rate_limits.refused.values()) == 0, standin.rate_limits.refused
    times = sorted(c.at for c in standin.attempts("chat.postMessage"))
    assert len(times) == 5
    assert times[3] - times[0] >= 0.9 and times[4] - times[3] >= 0.9  # three at once, then one a second
    for p in sent:
        assert thread_texts(standin, p["event"]["ts"]) == [FINAL]
