"""Files for the scenario suite's members, made on the spot from their ``FileSpec``: an image showing some
text (a screenshot), a text file, filler bytes (types the bot does not read, or files over the size limit),
or a decompression bomb."""

from __future__ import annotations

import io
import mimetypes
import textwrap

from PIL import Image, ImageDraw

from bot.types import Attachment
from tools.eval.scenarios import FileSpec


def attachment(spec: FileSpec) -> Attachment:
    media_type = mimetypes.guess_type(spec.name)[0] or "application/octet-stream"
    if spec.image_text is not None:
        data = _screenshot(spec.image_text)
    elif spec.bomb:
        buf = io.BytesIO()
        Image.new("1", (30_000, 30_000)).save(buf, "PNG")
        data = buf.getvalue()
    elif spec.text is not None:
        data = spec.text.encode()
    else:
        data = b"\0" * spec.size
    return Attachment(spec.name, media_type, len(data), link=f"eval://{spec.name}", data=data)


def _screenshot(text: str) -> bytes:
    lines = textwrap.wrap(text, 70) or [""]
    img = Image.new("RGB", (720, 40 + 22 * len(lines)), (250, 250, 250))
    draw = ImageDraw.Draw(img)
    for n, line in enumerate(lines):
        draw.text((20, 20 + 22 * n), line, fill=(20, 20, 20), font_size=16)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
