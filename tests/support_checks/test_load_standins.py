"""Checks of what the Slack load bench stands on (test infrastructure, not threadguard): the Slack stand-in's
rate limits as the real slack_sdk client meets them, the timeline of what bot messages showed, and the
Messages API stand-in's paced chunks and last-token times."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anthropic
import pytest
import pytest_asyncio
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.support.anthropic_standin import AnthropicStandin, reply
from tests.support.slack_rate_limits import TIER_3, SlackRateLimits, Tier
from tests.support.slack_standin import BOT_TOKEN, SlackStandin
from tests.support.slack_timeline import TextTimeline

pytestmark = [pytest.mark.standin, pytest.mark.timeout(30)]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture
async def limited() -> AsyncIterator[SlackStandin]:
    limits = SlackRateLimits(tiers={"chat.update": Tier("slow", 6, 2), "chat.appendStream": Tier("fast", 600, 3)},
                             post_per_channel=Tier("per channel", 60, 2), post_per_workspace=Tier("ws", 60, 3))
    s = SlackStandin(rate_limits=limits, bot_messages=TextTimeline())
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def _client(standin: SlackStandin) -> AsyncWebClient:
    return AsyncWebClient(token=BOT_TOKEN, base_url=standin.base_url, retry_handlers=[])


async def _refused(call: object) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        await call  # type: ignore[misc]
    return caught.value


# --- rate limits ------------------------------------------------------------------------------

def test_a_tier_allows_its_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    limits = SlackRateLimits(clock=clock)
    assert [limits.wait("chat.update", "T1", {}) for _ in range(TIER_3.burst)] == [0.0] * TIER_3.burst
    assert limits.wait("chat.update", "T1", {}) == pytest.approx(60 / 50)  # Tier 3: 50 a minute
    assert limits.wait("chat.update", "T2", {}) == 0.0  # per workspace
    assert limits.wait("chat.delete", "T1", {}) == 0.0  # per method
    clock.now += 60 / 50
    assert limits.wait("chat.update", "T1", {}) == 0.0
    assert limits.wait("chat.update", "T1", {}) > 0
    assert limits.wait("auth.test", "T1", {}) == 0.0  # not limited


def test_streaming_methods_have_their_documented_tiers() -> None:
    limits = SlackRateLimits()
    assert (limits.tiers["chat.startStream"].per_minute, limits.tiers["chat.appendStream"].per_minute,
            limits.tiers["chat.stopStream"].per_minute, limits.tiers["chat.update"].per_minute,
            limits.tiers["chat.postEphemeral"].per_minute) == (20, 100, 20, 50, 100)


def test_posts_are_limited_per_channel_and_per_workspace() -> None:
    clock = Clock()
    limits = SlackRateLimits(clock=clock, post_per_channel=Tier("c", 60, 2), post_per_workspace=Tier("w", 120, 5))
    post = "chat.postMessage"
    assert [limits.wait(post, "T1", {"channel": "CA"}) for _ in range(3)][2] == pytest.approx(1.0)
    assert limits.wait(post, "T1", {"channel": "CB"}) == 0.0  # another channel
    assert limits.wait(post, "T1", {"channel": "CC"}) == 0.0
    assert limits.wait(post, "T1", {"channel": "CD"}) == 0.0  # the workspace's 5th
    assert limits.wait(post, "T1", {"channel": "CE"}) == pytest.approx(0.5)  # the workspace is out: 2 a second
    assert limits.wait(post, "T2", {"channel": "CE"}) == 0.0  # another workspace


async def test_past_the_tier_slack_answers_429_with_retry_after(limited: SlackStandin) -> None:
    client = _client(limited)
    ts = (await client.chat_postMessage(channel="CA", text="first"))["ts"]
    for n in range(2):
        await client.chat_update(channel="CA", ts=ts, text=f"edit {n}")
    refused = await _refused(client.chat_update(channel="CA", ts=ts, text="one too many"))
    assert refused.response.status_code == 429
    assert refused.response["error"] == "ratelimited" and refused.response["ok"] is False
    assert refused.response.headers["Retry-After"] == "10"  # 6 a minute: a token every 10 s
    assert limited.bot_messages[ts] == "edit 1"  # the refused edit changed nothing
    assert [c.status for c in limited.attempts("chat.update")] == [200, 200, 429]
    assert [c.error for c in limited.attempts("chat.update")][-1] == "ratelimited"
    assert len(limited.calls_to("chat.update")) == 2
    assert limited.rate_limits is not None and limited.rate_limits.refused == {"chat.update": 1}


async def test_posts_past_one_channels_burst_are_refused_and_other_channels_go(limited: SlackStandin) -> None:
    client = _client(limited)
    for text in ("a", "b"):
        await client.chat_postMessage(channel="CA", text=text)
    refused = await _refused(client.chat_postMessage(channel="CA", text="c"))
    assert refused.response.status_code == 429 and refused.response.headers["Retry-After"] == "1"
    await client.chat_postMessage(channel="CB", text="d")  # the workspace's 3rd
    refused = await _refused(client.chat_postMessage(channel="CC", text="e"))  # the workspace's 4th
    assert refused.response["error"] == "ratelimited"
    assert sorted(limited.bot_messages.values()) == ["a", "b", "d"]
    assert limited.rate_limits is not None and limited.rate_limits.refused_by == {"per channel": 1, "ws": 1}


async def test_without_rate_limits_nothing_is_refused() -> None:
    standin = SlackStandin()
    await standin.start()
    try:
        client = _client(standin)
        ts = (await client.chat_postMessage(channel="CA", text="x"))["ts"]
        for n in range(30):
            await client.chat_update(channel="CA", ts=ts, text=str(n))
        assert {c.status for c in standin.calls} == {200}
    finally:
        await standin.stop()


# --- the timeline -----------------------------------------------------------------------------

async def test_the_timeline_records_every_change_of_the_visible_text(limited: SlackStandin) -> None:
    timeline = limited.bot_messages
    assert isinstance(timeline, TextTimeline)
    client = _client(limited)
    started = time.monotonic()
    ts = (await client.chat_postMessage(channel="CA", text="The answer is"))["ts"]
    await client.chat_update(channel="CA", ts=ts, text="The answer is 42.")
    other = (await client.chat_postMessage(channel="CB", text="_Working on it…_"))["ts"]
    await client.chat_delete(channel="CB", ts=other)
    assert [(c.ts, c.text) for c in timeline.changes] == [
        (ts, "The answer is"), (ts, "The answer is 42."), (other, "_Working on it…_"), (other, None)]
    assert all(started <= a.at <= b.at for a, b in zip(timeline.changes, timeline.changes[1:], strict=False))
    shown = timeline.visible_at({"full": "answer is 42.", "never": "something else"})
    assert shown == {"full": timeline.changes[1].at, "never": None}
    assert timeline.holding("answer is") == [ts] and timeline.holding("Working") == []  # deleted
    assert timeline.settled_at(ts) == timeline.changes[1].at
    assert timeline.first_showing("The answer") == timeline.changes[0]


def test_every_way_of_changing_the_dict_is_recorded() -> None:
    clock = Clock()
    timeline = TextTimeline(clock)
    timeline["1"] = "a"
    timeline.update({"2": "b"}, **{"3": "c"})
    timeline.setdefault("4", "d")
    timeline.setdefault("4", "ignored")
    timeline["1"] += " more"  # a streaming append
    assert timeline.pop("2") == "b" and timeline.pop("nope", None) is None
    del timeline["3"]
    assert [(c.ts, c.text) for c in timeline.changes] == [
        ("1", "a"), ("2", "b"), ("3", "c"), ("4", "d"), ("1", "a more"), ("2", None), ("3", None)]
    assert dict(timeline) == {"1": "a more", "4": "d"}
    timeline.clear()
    assert timeline == {} and timeline.changes[-2:] == [type(timeline.changes[0])(100.0, "1", None),
                                                        type(timeline.changes[0])(100.0, "4", None)]


# --- the Messages API's paced chunks ------------------------------------------------------------

async def test_answers_stream_in_paced_chunks_and_record_their_last_token(
        anthropic_standin: AnthropicStandin) -> None:
    answer = "x" * 95
    anthropic_standin.enqueue(reply(answer, chunk_chars=20, chunk_delay=0.05))
    claude = anthropic.AsyncAnthropic(base_url=anthropic_standin.base_url, api_key="test", max_retries=0)
    try:
        started = time.monotonic()
        async with claude.messages.stream(model="m", max_tokens=64,
                                          messages=[{"role": "user", "content": "hi"}]) as stream:
            deltas = [event.text async for event in stream if event.type == "text"]
        done = time.monotonic()
    finally:
        await claude.close()
    assert [len(d) for d in deltas] == [20, 20, 20, 20, 15]
    [last] = anthropic_standin.last_tokens
    assert last.text == answer
    assert started + 4 * 0.05 <= last.at <= done  # after the paced deltas, before the stream ended


# --- streaming methods ------------------------------------------------------------------------

async def test_streams_grow_the_visible_text_and_refuse_as_slack_does() -> None:
    standin = SlackStandin(bot_messages=TextTimeline())
    await standin.start()
    try:
        client = _client(standin)
        lacking = await _refused(client.chat_startStream(channel="C1", thread_ts="1.0", markdown_text="Hi"))
        assert lacking.response["error"] == "invalid_arguments"  # a channel's stream names its member
        started = await client.chat_startStream(channel="C1", thread_ts="1.0", markdown_text="Hello",
                                                recipient_user_id="U1", recipient_team_id="T1")
        ts = started["ts"]
        await client.chat_appendStream(channel="C1", ts=ts, markdown_text=" there")
        await client.chat_stopStream(channel="C1", ts=ts, markdown_text=", friend.")
        assert standin.bot_messages[ts] == "Hello there, friend."
        timeline = standin.bot_messages
        assert isinstance(timeline, TextTimeline)
        assert [c.text for c in timeline.changes if c.ts == ts] == ["Hello", "Hello there", "Hello there, friend."]
        over = await _refused(client.chat_appendStream(channel="C1", ts=ts, markdown_text="more"))
        assert over.response["error"] == "message_not_in_streaming_state"
        unknown = await _refused(client.chat_stopStream(channel="C1", ts="9.9"))
        assert unknown.response["error"] == "message_not_found"
        too_long = await _refused(client.chat_startStream(channel="D1", thread_ts="1.0", markdown_text="x" * 12_001))
        assert too_long.response["error"] == "msg_too_long"
        standin.stream_refusals["C2"] = "not_allowed"
        refused = await _refused(client.chat_startStream(channel="C2", thread_ts="1.0", markdown_text="Hi",
                                                         recipient_user_id="U1", recipient_team_id="T1"))
        assert refused.response["error"] == "not_allowed"
    finally:
        await standin.stop()
