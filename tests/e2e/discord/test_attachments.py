"""Members' files through the real discord.py client: downloaded from the stand-in's CDN address, prepared
within the API's limits and sent to the Messages API stand-in (which refuses what the real API refuses)
through the real anthropic SDK; whatever is left out is named in one line and the text is answered."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator

import pytest_asyncio
import redis.asyncio
from PIL import Image

from bot.bootstrap import Runtime, build_runtime
from config.communities import Communities, CommunityConfig
from config.settings import AnthropicSettings, AttachmentSettings, EngineSettings, RedisSettings, Settings
from tests.e2e.discord.conftest import say
from tests.support import files
from tests.support.anthropic_standin import AnthropicStandin, reply
from tests.support.discord_standin import DiscordStandin

LIMIT = 16 * 1024 * 1024


@pytest_asyncio.fixture
async def runtime(redis_client: redis.asyncio.Redis, standin: DiscordStandin, community: CommunityConfig,
                  anthropic_standin: AnthropicStandin) -> AsyncIterator[Runtime]:
    """The engine with Claude through the real SDK at the Messages API stand-in; downloads over 16 MB refused."""
    settings = Settings(anthropic=AnthropicSettings(api_key="k", base_url=anthropic_standin.base_url, max_retries=0),
                        redis=RedisSettings(url=None), engine=EngineSettings(communities_file=None),
                        attachments=AttachmentSettings(max_download_bytes=LIMIT))
    yield build_runtime(settings, redis=redis_client,
                        communities=Communities(CommunityConfig(), {standin.guild_id: community}))


def sent_files(body: dict) -> list[dict]:
    return [b for b in body["messages"][-1]["content"] if b["type"] in ("image", "document")]


async def test_an_image_a_pdf_and_a_text_file_reach_claude_as_valid_blocks(
        bot, standin: DiscordStandin, anthropic_standin: AnthropicStandin) -> None:
    anthropic_standin.enqueue(reply("A red square, a two-page PDF and your notes."))
    attachments = [standin.attachment("shot.png", files.png(), "image/png"),
                   standin.attachment("doc.pdf", files.pdf(2), "application/pdf"),
                   standin.attachment("notes.py", b"print('hi')\n", "text/x-python; charset=utf-8")]
    await standin.post(standin.general_id, "what are these?", mention=True, attachments=attachments)
    await standin.wait_until(lambda: anthropic_standin.calls == 1, timeout=10, what="the model call")
    await standin.settle(quiet=0.3)
    blocks = sent_files(anthropic_standin.last_body)
    assert [(b["type"], b["source"]["media_type"]) for b in blocks] == [
        ("image", "image/png"), ("document", "application/pdf"), ("document", "text/plain")]
    assert base64.b64decode(blocks[0]["source"]["data"]) == files.png()
    assert blocks[2]["source"]["data"] == "print('hi')\n"
    thread = next(iter(t["id"] for t in standin.threads()))
    assert standin.bot_texts(thread) == ["A red square, a two-page PDF and your notes."]


async def test_a_12_mb_photo_is_sent_scaled_to_at_most_1568_px(
        bot, standin: DiscordStandin, anthropic_standin: AnthropicStandin) -> None:
    anthropic_standin.enqueue(reply("Nice photo."))
    photo = files.photo_12mb()
    opening = await say(standin, standin.general_id, "my photo", mention=True,
                        attachments=[standin.attachment("IMG_0001.JPG", photo, "image/jpeg")])
    (block,) = sent_files(anthropic_standin.last_body)
    with Image.open(io.BytesIO(base64.b64decode(block["source"]["data"]))) as img:
        assert img.size == (1568, 1045) and img.format == "JPEG"
    assert len(block["source"]["data"]) <= 5_242_880 and len(photo) > 12_000_000
    assert standin.bot_texts(opening["id"]) == ["Nice photo."]


async def test_left_out_files_are_named_in_one_line_and_the_text_answered(
        bot, standin: DiscordStandin, anthropic_standin: AnthropicStandin) -> None:
    anthropic_standin.enqueue(reply("Nice pictures."))
    images = [standin.attachment(f"p{n}.png", files.png(20 + n, 20), "image/png") for n in range(1, 10)]
    liar = standin.attachment("clip.txt", b"x" * (40 * 1024 * 1024), "text/plain", size=100)
    others = [standin.attachment("report.docx", b"PK\x03\x04docx", "application/vnd.openxmlformats"),
              standin.attachment("cat.png", files.not_an_image(), "image/png"),
              standin.attachment("huge.png", files.bomb(), "image/png"), liar]
    opening = await say(standin, standin.general_id, "compare these", mention=True, attachments=[*images, *others])
    thread = opening["id"]
    texts = standin.bot_texts(thread)
    assert texts[0] == "Nice pictures."
    assert texts[1].splitlines() == [
        "p6.png, p7.png, p8.png, p9.png: at most 5 images per message are read",
        "report.docx: this file type isn't supported (images, PDFs and text files are)",
        "cat.png: it isn't a valid PNG, JPEG, GIF or WebP image",
        "huge.png: the image is too large to open safely",
        "clip.txt: it is larger than 16 MB",
    ]
    assert len(sent_files(anthropic_standin.last_body)) == 5
    assert liar["id"] in standin.file_requests and liar["id"] not in standin.files_served_whole  # stopped mid-stream


async def test_a_file_off_discords_hosts_is_not_downloaded(
        bot, standin: DiscordStandin, anthropic_standin: AnthropicStandin) -> None:
    anthropic_standin.enqueue(reply("Answer."))
    foreign = {"id": "1", "filename": "x.png", "size": 10, "url": "https://evil.example/x.png",
               "proxy_url": "https://evil.example/x.png", "content_type": "image/png"}
    opening = await say(standin, standin.general_id, "see", mention=True, attachments=[foreign])
    assert standin.bot_texts(opening["id"]) == ["Answer.", "x.png: it is not on the platform's file host"]
