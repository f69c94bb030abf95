"""Production run modes refuse to start on stand-ins nobody asked for, and say so when asked for them."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
import pytest

from tests.support.discord_standin import DiscordStandin
from tests.support.processes import clean_env, free_port, run_cli, running
from tests.support.slack_standin import BOT_TOKEN, SlackStandin

SECRET = "x" * 40


@pytest.mark.parametrize("command", ["discord", "slack"])
async def test_platform_modes_refuse_without_redis_url(command, redis_server):
    code, _, err = await run_cli(command, env=clean_env(ANTHROPIC_API_KEY="sk-test"))
    assert code != 0
    assert "REDIS_URL is not set" in err
    assert "--embedded-store" in err
    assert "ANTHROPIC_API_KEY" not in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["discord", "slack"])
async def test_platform_modes_refuse_without_an_api_key(command, redis_server):
    code, _, err = await run_cli(command, env=clean_env(REDIS_URL=redis_server.url))
    assert code != 0
    assert "ANTHROPIC_API_KEY is not set" in err
    assert "--demo" in err
    assert "REDIS_URL" not in err
    assert "Traceback" not in err


async def test_dashboard_refuses_without_redis_url():
    code, _, err = await run_cli("dashboard", env=clean_env(DASHBOARD_SESSION_SECRET=SECRET))
    assert code != 0
    assert "REDIS_URL is not set" in err
    assert "Traceback" not in err


def _allowed(body: str) -> set[str]:
    return set(json.loads(body)["allowed"])


async def test_slack_starts_with_the_explicit_flags_and_says_so():
    standin = await SlackStandin().start()
    try:
        env = clean_env(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET="s3cret", SLACK_API_BASE_URL=standin.base_url)
        async with running("slack", "--http", str(free_port()), "--demo", "--embedded-store", env=env,
                           metrics_port=free_port()) as proc:
            _, body = await proc.wait_ready()
            assert _allowed(body) == {"embedded_store", "demo_model"}
            assert "the embedded store" in proc.log and "the offline demo model" in proc.log
    finally:
        await standin.stop()


async def test_discord_starts_with_the_explicit_flags_and_says_so():
    standin = DiscordStandin()
    await standin.start()
    try:
        env = clean_env(DISCORD_TOKEN="standin-token", DISCORD_API_BASE_URL=standin.api_base_url,
                        DISCORD_GATEWAY_URL=standin.gateway_url, DISCORD_SYNC_COMMANDS="false")
        async with running("discord", "--demo", "--embedded-store", env=env, metrics_port=free_port()) as proc:
            _, body = await proc.wait_ready()
            assert _allowed(body) == {"embedded_store", "demo_model"}
            assert "explicitly allowed" in proc.log
    finally:
        await standin.stop()


async def test_dashboard_starts_with_the_explicit_flag(redis_server):
    env = clean_env(DASHBOARD_SESSION_SECRET=SECRET, DASHBOARD_PORT=str(free_port()))
    async with running("dashboard", "--embedded-store", env=env, metrics_port=free_port()) as proc:
        _, body = await proc.wait_ready()
        assert _allowed(body) == {"embedded_store"}


async def test_slack_with_redis_and_a_key_needs_no_flag(redis_server):
    standin = await SlackStandin().start()
    try:
        env = clean_env(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET="s3cret", SLACK_API_BASE_URL=standin.base_url,
                        REDIS_URL=redis_server.url, ANTHROPIC_API_KEY="sk-test", ANTHROPIC_BASE_URL="http://127.0.0.1:9")
        async with running("slack", "--http", str(free_port()), env=env, metrics_port=free_port()) as proc:
            _, body = await proc.wait_ready()
            assert _allowed(body) == set()
            assert "explicitly allowed" not in proc.log
    finally:
        await standin.stop()


async def test_a_taken_metrics_port_is_logged_and_the_bot_still_runs():
    import socket

    standin = await SlackStandin().start()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        http_port = free_port()
        env = clean_env(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET="s3cret", SLACK_API_BASE_URL=standin.base_url)
        async with running("slack", "--http", str(http_port), "--demo", "--embedded-store", env=env,
                           metrics_port=taken.getsockname()[1]) as proc:
            for _ in range(100):
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with aiohttp.ClientSession() as session, \
                            session.get(f"http://127.0.0.1:{http_port}/healthz") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"the bot did not come up: {proc.log}")
            assert "cannot serve /metrics" in proc.log and "THREADGUARD_METRICS_PORT" in proc.log
            assert proc.process.returncode is None
    finally:
        taken.close()
        await standin.stop()
