"""Files members attach, made on the spot: images of a given size, a photo of about 12 MB, PDFs of N pages,
text, a decompression bomb and a file that claims to be an image."""

from __future__ import annotations

import functools
import io

import pypdf
from PIL import Image


def png(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def jpeg(width: int = 64, height: int = 48, color: tuple[int, int, int] = (30, 30, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "JPEG")
    return buf.getvalue()


@functools.cache
def photo_12mb() -> bytes:
    """A 6000x4000 JPEG of noise, about 12 MB, as a phone photo would be."""
    noise = Image.effect_noise((6000, 4000), 48).convert("L")
    tint = Image.linear_gradient("L").resize((6000, 4000))
    img = Image.merge("RGB", (noise, tint, noise.point(lambda v: 255 - v)))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=91)
    return buf.getvalue()


def pdf(pages: int = 2) -> bytes:
    writer = pypdf.PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=612, height=792)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


@functools.cache
def scanned_pdf(pages: int = 50) -> bytes:
    """A PDF of ``pages`` pages of printed text, each page an A4 image at 100 dpi (as a scanner makes them)."""
    from PIL import ImageDraw

    images = []
    for n in range(pages):
        page = Image.new("L", (827, 1169), 255)
        draw = ImageDraw.Draw(page)
        for line in range(40):
            draw.text((60, 60 + 26 * line), f"Page {n + 1}, line {line + 1}: the quarterly figures and their notes.",
                      fill=0, font_size=14)
        images.append(page)
    buf = io.BytesIO()
    images[0].save(buf, "PDF", save_all=True, append_images=images[1:], resolution=100)
    return buf.getvalue()


def bomb() -> bytes:
    """A 30,000 x 30,000 PNG (900 megapixels) of a few kilobytes: opening it fully would take gigabytes."""
    buf = io.BytesIO()
    Image.new("1", (30_000, 30_000)).save(buf, "PNG")
    return buf.getvalue()


def not_an_image() -> bytes:
    return b"MZ\x90\x00 this is not a PNG at all" + bytes(200)
