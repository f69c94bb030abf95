"""Members' files through the real Bolt app and slack-sdk: downloaded from the stand-in's file host with the
workspace's bot token, sent through the real anthropic SDK to the Messages API stand-in (which refuses what
the real API refuses); what is left out is named in one line and the text answered."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from adapters.slack.app import create_bot
from bot.bootstrap import build_runtime
from config.communities import Communities
from config.settings import AnthropicSettings, EngineSettings, RedisSettings, Settings
from tests.e2e.slack.conftest import SlackEnv, community, serve, slack_settings, thread_texts
from tests.support import files
from tests.support.anthropic_standin import AnthropicStandin, reply
from tests.support.slack_standin import BOT_TOKEN, SlackStandin


@pytest_asyncio.fixture
async def claude_env(standin: SlackStandin, redis_client: Any,
                     anthropic_standin: AnthropicStandin) -> AsyncIterator[SlackEnv]:
    settings = Settings(anthropic=AnthropicSettings(api_key="k", base_url=anthropic_standin.base_url, max_retries=0),
                        redis=RedisSettings(url=None), engine=EngineSettings())
    runtime = build_runtime(settings, redis=redis_client, communities=Communities(community()))
    bot = create_bot(runtime, slack_settings(standin))
    env = SlackEnv(standin, runtime, bot, None)  # type: ignore[arg-type]
    yield env
    await bot.aclose()


def sent_files(body: dict) -> list[dict]:
    return [b for b in body["messages"][-1]["content"] if b["type"] in ("image", "document")]


async def test_an_image_a_pdf_and_a_text_file_reach_claude_as_valid_blocks(claude_env, payloads, anthropic_standin):
    standin = claude_env.standin
    anthropic_standin.enqueue(reply("A red square, a PDF and a CSV."))
    shared = [standin.add_file("shot.png", files.png(), "image/png"),
              standin.add_file("doc.pdf", files.pdf(3), "application/pdf"),
              standin.add_file("data.csv", b"a,b\n1,2\n", "text/csv")]
    event = payloads.mention("what are these?")
    event["event"]["files"] = shared
    async with serve(claude_env) as http:
        status, _ = await http.event(event)
        await claude_env.settle()
    assert status == 200
    blocks = sent_files(anthropic_standin.last_body)
    assert [(b["type"], b["source"]["media_type"]) for b in blocks] == [
        ("image", "image/png"), ("document", "application/pdf"), ("document", "text/plain")]
    assert base64.b64decode(blocks[0]["source"]["data"]) == files.png()
    assert blocks[2]["source"]["data"] == "a,b\n1,2\n"
    assert {token for _, token in standin.file_downloads} == {BOT_TOKEN}
    assert thread_texts(standin, event["event"]["ts"]) == ["A red square, a PDF and a CSV."]


async def test_a_download_without_the_right_token_is_refused_and_named(claude_env, payloads, anthropic_standin):
    standin = claude_env.standin
    anthropic_standin.enqueue(reply("Answered the text."))
    good = standin.add_file("ok.png", files.png(), "image/png")
    forged = standin.add_file("other.png", files.png(5, 5), "image/png")
    forged["url_private_download"] = forged["url_private"] = forged["url_private"].replace(
        "127.0.0.1", "files.evil.example")
    event = payloads.mention("look")
    event["event"]["files"] = [good, forged]
    async with serve(claude_env) as http:
        await http.event(event)
        await claude_env.settle()
    assert len(sent_files(anthropic_standin.last_body)) == 1
    assert thread_texts(standin, event["event"]["ts"]) == [
        "Answered the text.", "other.png: it is not on the platform's file host"]
    # the stand-in itself serves nothing without the bot's token
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(good["url_private_download"]) as response:
            assert response.status == 403
        async with session.get(good["url_private_download"], headers={"Authorization": "Bearer xoxb-wrong"}) as r:
            assert r.status == 403
