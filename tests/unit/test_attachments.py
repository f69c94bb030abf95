"""Members' files prepared within the Messages API's limits (``bot.attachments``) and shown to the model
(``bot.files``): scaling, counts, types checked by content, bombs, text caps, PDF pages, stable blocks."""

from __future__ import annotations

import base64
import io

import orjson
from PIL import Image

from bot.attachments import prepare
from bot.files import file_blocks
from bot.history import to_messages, window_cut
from bot.model import FileBlock, TextBlock
from bot.types import Attachment, Entry, EntryKind
from config.settings import AttachmentSettings
from tests.support import files

LIMITS = AttachmentSettings()


def attach(name: str, media_type: str, data: bytes) -> Attachment:
    return Attachment(name, media_type, len(data), link=f"https://cdn.example/{name}", data=data)


def test_a_12_mb_6000_by_4000_photo_is_scaled_to_the_recommended_size():
    photo = files.photo_12mb()
    assert len(photo) > 12_000_000
    prepared = prepare([attach("photo.jpg", "image/jpeg", photo)], LIMITS)
    (kept,) = prepared.kept
    payload = orjson.loads(kept.payload)
    assert len(payload["d"]) <= 5_242_880
    with Image.open(io.BytesIO(base64.b64decode(payload["d"]))) as img:
        assert max(img.size) <= 1568 and img.size == (1568, 1045) and img.format == "JPEG"
    assert kept.ref.size == len(photo) and kept.ref.sha256 and kept.ref.kind == "image" and not prepared.lines


def test_a_small_image_is_sent_as_its_own_bytes():
    data = files.png(300, 200)
    (kept,) = prepare([attach("shot.png", "image/png", data)], LIMITS).kept
    assert base64.b64decode(orjson.loads(kept.payload)["d"]) == data


def test_nine_images_give_five_and_one_line_naming_the_rest():
    images = [attach(f"photo{n}.png", "image/png", files.png(10 + n, 10)) for n in range(1, 10)]
    prepared = prepare(images, LIMITS)
    assert [p.ref.name for p in prepared.kept] == [f"photo{n}.png" for n in range(1, 6)]
    assert prepared.lines == ["photo6.png, photo7.png, photo8.png, photo9.png: at most 5 images per message are read"]


def test_unsupported_fake_and_bomb_files_are_named_with_their_reason():
    prepared = prepare([attach("report.docx", "application/vnd.openxmlformats-officedocument", b"PK\x03\x04data"),
                        attach("cat.png", "image/png", files.not_an_image()),
                        attach("huge.png", "image/png", files.bomb()),
                        Attachment("big.mov", "video/quicktime", 90_000_000, problem="it is larger than 25 MB")],
                       LIMITS)
    assert not prepared.kept
    assert prepared.lines == [
        "report.docx: this file type isn't supported (images, PDFs and text files are)",
        "cat.png: it isn't a valid PNG, JPEG, GIF or WebP image",
        "huge.png: the image is too large to open safely",
        "big.mov: it is larger than 25 MB",
    ]


def test_an_image_is_typed_by_its_bytes_not_by_its_claim():
    (kept,) = prepare([attach("shot.png", "image/png", files.jpeg())], LIMITS).kept
    assert orjson.loads(kept.payload)["t"] == "image/jpeg"


def test_text_files_are_read_as_utf8_and_capped():
    limits = AttachmentSettings(max_text_chars=100)
    prepared = prepare([attach("app.log", "application/octet-stream", ("x" * 150).encode()),
                        attach("bin.txt", "text/plain", b"\xff\xfe\x00\x01")], limits)
    (kept,) = prepared.kept
    assert orjson.loads(kept.payload)["d"] == "x" * 100
    assert prepared.lines == ["app.log: only its first 100 characters were read",
                              "bin.txt: this file type isn't supported (it is not text)"]


def test_pdf_pages_are_limited():
    prepared = prepare([attach("ok.pdf", "application/pdf", files.pdf(3)),
                        attach("long.pdf", "application/pdf", files.pdf(101)),
                        attach("fake.pdf", "application/pdf", b"not a pdf")], LIMITS)
    assert [p.ref.name for p in prepared.kept] == ["ok.pdf"]
    assert prepared.lines == ["long.pdf: PDFs of at most 100 pages are read (this one has 101)",
                              "fake.pdf: it isn't a valid PDF"]


def test_history_blocks_are_the_same_bytes_every_turn_and_a_placeholder_once_gone():
    prepared = prepare([attach("shot.png", "image/png", files.png()), attach("a.txt", "text/plain", b"hi")], LIMITS)
    stored = {p.ref.id: p.payload for p in prepared.kept}
    line = Entry(EntryKind.USER, "what is this?", in_history=True, attachments=prepared.refs)
    again = Entry.from_json(line.to_json())
    assert to_messages([again], stored) == to_messages([line], dict(stored))
    blocks = to_messages([line], stored)[0].blocks
    assert [type(b) for b in blocks] == [FileBlock, FileBlock, TextBlock]
    gone = file_blocks(prepared.refs, {})
    assert gone == [TextBlock("[image no longer available: shot.png]"), TextBlock("[file no longer available: a.txt]")]


def test_files_count_in_the_history_window():
    (kept,) = prepare([attach("photo.jpg", "image/jpeg", files.photo_12mb())], LIMITS).kept
    with_image = [Entry(EntryKind.USER, "look", in_history=True, attachments=[kept.ref]),
                  Entry(EntryKind.ASSISTANT, "nice", in_history=True)]
    plain = [Entry(EntryKind.USER, "look", in_history=True), Entry(EntryKind.ASSISTANT, "nice", in_history=True)]
    assert window_cut(plain, 1000) == 0
    assert window_cut(with_image, 1000) > 0
