"""The Messages API stand-in refuses image and document blocks as the real API does, through the real
anthropic SDK: bad base64, a media type the bytes do not match, a side over 8000 px, base64 over 5 MB, more
than 100 images, a request over 32 MB (413); and takes valid ones."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest
import pytest_asyncio
from PIL import Image

from tests.support import files
from tests.support.anthropic_standin import AnthropicStandin, reply

pytestmark = [pytest.mark.standin, pytest.mark.timeout(60)]


@pytest_asyncio.fixture
async def claude(anthropic_standin: AnthropicStandin) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=anthropic_standin.base_url, api_key="test", max_retries=0)
    try:
        yield client
    finally:
        await client.close()


def image(data: bytes | str, media_type: str = "image/png") -> dict[str, Any]:
    encoded = data if isinstance(data, str) else base64.b64encode(data).decode()
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": encoded}}


async def send(claude: anthropic.AsyncAnthropic, *blocks: dict[str, Any]) -> Any:
    return await claude.messages.create(model="m", max_tokens=10, messages=[
        {"role": "user", "content": [*blocks, {"type": "text", "text": "what is this?"}]}])


async def refused(claude: anthropic.AsyncAnthropic, *blocks: dict[str, Any]) -> anthropic.APIStatusError:
    with pytest.raises(anthropic.APIStatusError) as caught:
        await send(claude, *blocks)
    return caught.value


async def test_valid_images_and_documents_are_taken(claude, anthropic_standin):
    anthropic_standin.enqueue(reply("ok"))
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                          "data": base64.b64encode(files.pdf(2)).decode()}}
    txt = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hello"}}
    message = await send(claude, image(files.png()), image(files.jpeg(), "image/jpeg"), pdf, txt)
    assert message.content[0].text == "ok"


async def test_bad_base64_is_refused(claude):
    error = await refused(claude, image("not base64 !!"))
    assert error.status_code == 400 and "not valid base64" in str(error)


async def test_a_media_type_the_bytes_do_not_match_is_refused(claude):
    error = await refused(claude, image(files.jpeg(), "image/png"))
    assert error.status_code == 400
    assert "Image does not match the provided media type image/png" in str(error)


async def test_an_image_side_over_8000_px_is_refused(claude):
    buf = io.BytesIO()
    Image.new("1", (8001, 10)).save(buf, "PNG")
    error = await refused(claude, image(buf.getvalue()))
    assert error.status_code == 400
    assert "At least one of the image dimensions exceed max allowed size: 8000 pixels" in str(error)


async def test_base64_over_5_mb_is_refused(claude):
    buf = io.BytesIO()
    Image.effect_noise((1600, 1200), 100).convert("RGB").save(buf, "PNG")
    data = buf.getvalue()
    assert len(base64.b64encode(data)) > 5_242_880
    error = await refused(claude, image(data))
    assert error.status_code == 400 and "image exceeds 5 MB maximum" in str(error)
    assert f"{len(base64.b64encode(data))} bytes > 5242880 bytes" in str(error)


async def test_more_than_100_images_are_refused(claude):
    error = await refused(claude, *[image(files.png(8, 8))] * 101)
    assert error.status_code == 400 and "Too many images" in str(error)


async def test_a_request_over_32_mb_is_refused(claude, anthropic_standin):
    text = {"type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "x" * (33 * 1024 * 1024)}}
    error = await refused(claude, text)
    assert error.status_code == 413 and "request_too_large" in str(error)
    assert anthropic_standin.oversized_requests == 1
