"""Checks of the test infrastructure itself, not of threadguard: the private Redis servers and cluster,
fakeredis, and the Messages API stand-in against the real anthropic SDK.

They carry the ``standin`` mark and run apart from the product's tests (``scripts/test.sh`` reports them
on a line of their own), so the product's test count says what protects threadguard."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anthropic
import pytest
import pytest_asyncio
import redis.asyncio
import redis.exceptions

from tests.support.anthropic_standin import (
    AnthropicStandin,
    http_error,
    reply,
    stream_error,
    text,
    tool_use,
)
from tests.support.redis_servers import RedisServer, _pid_alive

pytestmark = [pytest.mark.standin, pytest.mark.timeout(30)]

COUNTER = """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], 'seen:' .. n)
return n
"""
KEYS = ["tg:{t42}:count", "tg:{t42}:last"]


async def _run_counter(client: object) -> None:
    script = client.register_script(COUNTER)  # type: ignore[attr-defined]
    assert await script(keys=KEYS, args=[2]) == 2
    assert await script(keys=KEYS, args=[3]) == 5
    assert await client.get(KEYS[0]) == "5"  # type: ignore[attr-defined]
    assert await client.get(KEYS[1]) == "seen:5"  # type: ignore[attr-defined]


# --- Redis -------------------------------------------------------------------------------------------

async def test_lua_script_on_the_test_server(redis_client: redis.asyncio.Redis,
                                             redis_server: RedisServer) -> None:
    assert redis_server.port != 6379  # never the machine's own Redis
    assert await redis_client.dbsize() == 0
    await _run_counter(redis_client)


async def test_lua_script_on_the_cluster(cluster_client: redis.asyncio.cluster.RedisCluster) -> None:
    await _run_counter(cluster_client)
    owners = {cluster_client.get_node_from_key(f"tg:{{t{i}}}:count").port for i in range(20)}
    assert len(owners) == 3  # the slots really are spread over three primaries
    with pytest.raises(redis.exceptions.RedisClusterException):
        await cluster_client.register_script(COUNTER)(keys=["a:{x}", "b:{y}"], args=[1])


async def test_lua_script_on_fakeredis(fake_redis_client: object) -> None:
    await _run_counter(fake_redis_client)


async def test_every_store_backend_runs_the_same_script(any_redis: object) -> None:
    await _run_counter(any_redis)


async def test_restart_keeps_the_port(private_redis_server: RedisServer) -> None:
    server = private_redis_server
    port, first_pid = server.port, server.pid
    client = redis.asyncio.Redis.from_url(server.url, decode_responses=True, retry=None)
    try:
        await client.set("k", "v")
        server.stop()
        assert first_pid is not None
        assert not _pid_alive(first_pid)
        with pytest.raises(redis.exceptions.ConnectionError):
            await client.get("k")
        server.start()
        assert (server.port, server.running) == (port, True)
        assert server.pid != first_pid
        assert await client.get("k") is None  # nothing persisted; the pool reconnected on its own
    finally:
        await client.aclose()


# --- Messages API ------------------------------------------------------------------------------------

@pytest_asyncio.fixture
async def claude(anthropic_standin: AnthropicStandin) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=anthropic_standin.base_url, api_key="test", max_retries=2,
                                      timeout=5)
    try:
        yield client
    finally:
        await client.close()


def _params(**extra: object) -> dict[str, object]:
    return {"model": "claude-test", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}],
            **extra}


async def test_plain_message(claude: anthropic.AsyncAnthropic, anthropic_standin: AnthropicStandin) -> None:
    anthropic_standin.enqueue(reply(text("Hello there")))
    message = await claude.messages.create(**_params())
    assert [b.text for b in message.content if b.type == "text"] == ["Hello there"]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0
    assert message._request_id
    assert message._request_id.startswith("req_")
    body, headers = anthropic_standin.requests[0]
    assert body["messages"][0]["content"] == "hi"
    assert "test" in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))
    assert headers["anthropic-version"]


async def test_streamed_text_arrives_in_order(claude: anthropic.AsyncAnthropic,
                                              anthropic_standin: AnthropicStandin) -> None:
    words = "one two three four five six seven"
    anthropic_standin.enqueue(reply(words))
    async with claude.messages.stream(**_params()) as stream:
        deltas = [event.text async for event in stream if event.type == "text"]
        message = await stream.get_final_message()
    assert len(deltas) >= 3
    assert "".join(deltas) == words
    assert message.content[0].text == words


async def test_streamed_tool_use_input_is_assembled(claude: anthropic.AsyncAnthropic,
                                                    anthropic_standin: AnthropicStandin) -> None:
    call = tool_use("record_redirection", {"category": "violence", "note": "asked twice"})
    anthropic_standin.enqueue(reply("Let's talk about something else.", call))
    async with claude.messages.stream(**_params()) as stream:
        partials = [event.partial_json async for event in stream if event.type == "input_json"]
        message = await stream.get_final_message()
    assert len(partials) >= 2
    assert message.stop_reason == "tool_use"
    block = message.content[1]
    assert block.type == "tool_use"
    assert (block.id, block.name, block.input) == (call["id"], call["name"], call["input"])
    assert block.id.startswith("toolu_")


async def test_rate_limit_is_retried_after_retry_after_ms(claude: anthropic.AsyncAnthropic,
                                                          anthropic_standin: AnthropicStandin) -> None:
    anthropic_standin.enqueue(http_error(429, "rate_limit_error", retry_after_ms=20), reply("ok"))
    message = await claude.messages.create(**_params())
    assert message.content[0].text == "ok"
    assert anthropic_standin.calls == 2
    assert [h["x-stainless-retry-count"] for _, h in anthropic_standin.requests] == ["0", "1"]


async def test_bad_request_is_not_retried(claude: anthropic.AsyncAnthropic,
                                          anthropic_standin: AnthropicStandin) -> None:
    anthropic_standin.enqueue(http_error(400, "invalid_request_error"), reply("never sent"))
    with pytest.raises(anthropic.BadRequestError):
        await claude.messages.create(**_params())
    assert anthropic_standin.calls == 1


async def test_error_in_the_middle_of_a_stream(claude: anthropic.AsyncAnthropic,
                                               anthropic_standin: AnthropicStandin) -> None:
    anthropic_standin.enqueue(stream_error(after_text="partial answer"), reply("never sent"))
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        async with claude.messages.stream(**_params()) as stream:
            seen.extend([event.text async for event in stream if event.type == "text"])
    assert "overloaded_error" in str(info.value)
    assert anthropic_standin.calls == 1


async def test_overloaded_then_success_and_responder(claude: anthropic.AsyncAnthropic,
                                                     anthropic_standin: AnthropicStandin) -> None:
    anthropic_standin.enqueue(http_error(529, retry_after_ms=10))
    anthropic_standin.responder = lambda body: reply(f"echo {len(body['messages'])}")
    message = await claude.messages.create(**_params())
    assert message.content[0].text == "echo 1"
    assert anthropic_standin.calls == 2


async def test_nothing_scripted_fails_clearly_without_retries(claude: anthropic.AsyncAnthropic,
                                                              anthropic_standin: AnthropicStandin) -> None:
    with pytest.raises(anthropic.InternalServerError, match="nothing scripted"):
        await claude.messages.create(**_params())
    assert anthropic_standin.calls == 1


async def test_unanswered_tool_use_is_rejected(claude: anthropic.AsyncAnthropic,
                                               anthropic_standin: AnthropicStandin) -> None:
    anthropic_standin.enqueue(reply("unused"))
    messages = [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": [tool_use("flag_risk", {"kind": "self_harm"})]},
                {"role": "user", "content": "hello?"}]
    with pytest.raises(anthropic.BadRequestError, match="tool_result"):
        await claude.messages.create(**_params(messages=messages))
    assert anthropic_standin.pending == 1  # the script stays queued


async def test_cache_usage_and_count_tokens(claude: anthropic.AsyncAnthropic,
                                            anthropic_standin: AnthropicStandin) -> None:
    cached = {"system": [{"type": "text", "text": "You are kind. " * 40, "cache_control": {"type": "ephemeral"}}],
              "tools": [{"name": "end_conversation", "description": "ends", "input_schema": {"type": "object"},
                         "cache_control": {"type": "ephemeral"}}]}
    anthropic_standin.enqueue(reply("a"), reply("b"))
    first = await claude.messages.create(**_params(**cached))
    second = await claude.messages.create(**_params(**cached))
    assert first.usage.cache_creation_input_tokens > 0
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert anthropic_standin.last_body["system"][0]["cache_control"] == {"type": "ephemeral"}
    counted = await claude.messages.count_tokens(model="claude-test", messages=[{"role": "user",
                                                                                 "content": "hi"}])
    assert counted.input_tokens > 0
    assert len(anthropic_standin.count_requests) == 1
