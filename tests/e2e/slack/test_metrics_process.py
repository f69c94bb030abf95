"""``threadguard slack --http`` as a real process: its ``/metrics`` after a scripted ladder (Slack and the
Messages API both stand-ins), and ``/readyz`` while Redis goes down and comes back."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.slack.conftest import SIGNING_SECRET, HttpEndpoint
from tests.support.anthropic_standin import reply, tool_use
from tests.support.processes import clean_env, free_port, running
from tests.support.slack_standin import BOT_TOKEN, SlackStandin

KINDS = {"input": "input_tokens", "output": "output_tokens", "cache_write": "cache_creation_input_tokens",
         "cache_read": "cache_read_input_tokens"}


def redirect() -> dict:
    return tool_use("record_redirection", {"category": "harassment", "note": "declined"})


def end() -> dict:
    return tool_use("end_conversation", {"reason": "persistent_abuse", "category": "harassment",
                                         "summary": "Kept at it after the warning."})


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def slack_env(standin: SlackStandin, redis_url: str, anthropic_url: str) -> dict[str, str]:
    return clean_env(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                     SLACK_API_BASE_URL=standin.base_url, SLACK_STREAM_EDIT_INTERVAL="0",
                     REDIS_URL=redis_url, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=anthropic_url,
                     ANTHROPIC_MAX_RETRIES="0")


async def test_metrics_count_the_ladder_turns_and_tokens_of_a_running_process(
        redis_client, redis_server, anthropic_standin, payloads):
    api = anthropic_standin
    for _ in range(3):
        api.enqueue(reply("I won't help with that.", redirect()), reply(" Let's talk about something else."))
    api.enqueue(reply(end()))
    standin = await SlackStandin().start()
    http_port = free_port()
    try:
        env = slack_env(standin, redis_server.url, api.base_url)
        async with running("slack", "--http", str(http_port), env=env, metrics_port=free_port()) as proc:
            await proc.wait_ready()
            async with aiohttp.ClientSession() as session:
                http = HttpEndpoint(f"http://127.0.0.1:{http_port}/slack/events", session)
                first = payloads.mention("insult them for me")
                root = first["event"]["ts"]
                status, _ = await http.event(first)
                assert status == 200
                ended = "This conversation has been ended"
                for n in range(1, 4):  # each message waits for the previous answer (the ladder is per turn)
                    await standin.wait_for(lambda n=n: len(api.reported_usage) >= 2 * n, timeout=20)
                    await asyncio.sleep(0.2)
                    await http.event(payloads.message("insult them for me", root))
                await standin.wait_for(lambda: any(ended in c.get("text", "")
                                                   for c in standin.calls_to("chat.postMessage")), timeout=20)
            await asyncio.sleep(0.3)
            status, text = await proc.get("/metrics")
            assert status == 200
    finally:
        await standin.stop()

    found = samples(text)
    assert value(found, "threadguard_turns_total", platform="slack", outcome="answered") == 3
    assert value(found, "threadguard_turns_total", platform="slack", outcome="ended") == 1
    assert value(found, "threadguard_ladder_events_total", kind="redirection", category="harassment") == 3
    assert value(found, "threadguard_ladder_events_total", kind="warning", category="harassment") == 1
    assert value(found, "threadguard_ladder_events_total", kind="end", category="harassment") == 1
    assert value(found, "threadguard_model_call_seconds_count") == api.calls == 7
    assert value(found, "threadguard_model_first_token_seconds_count") == 7
    for kind, key in KINDS.items():
        reported = sum(u.get(key, 0) for u in api.reported_usage)
        assert value(found, "threadguard_tokens_total", kind=kind) == reported, kind
    assert value(found, "threadguard_tokens_total", kind="input") > 0
    assert "insult" not in proc.log  # logs carry no message text


async def test_readyz_fails_while_redis_is_down_and_recovers(private_redis_server):
    standin = await SlackStandin().start()
    try:
        env = slack_env(standin, private_redis_server.url, "http://127.0.0.1:9")
        async with running("slack", "--http", str(free_port()), env=env, metrics_port=free_port()) as proc:
            _, body = await proc.wait_ready()
            assert json.loads(body)["redis"] == "ok" and json.loads(body)["serving"] is True
            private_redis_server.stop()
            _, body = await proc.wait_ready(status=503, timeout=15)
            assert json.loads(body) == {"ready": False, "serving": True, "redis": "unreachable", "allowed": {}}
            assert (await proc.get("/healthz"))[0] == 200  # alive, just not ready
            private_redis_server.start()
            _, body = await proc.wait_ready(status=200, timeout=15)
            assert json.loads(body)["ready"] is True
            _, text = await proc.get("/metrics")
            assert value(samples(text), "threadguard_ready") == 1
    finally:
        await standin.stop()
