"""Members' files as the model reads them: images, PDFs and text files checked by their content, brought
within the Messages API's documented limits before the call, and the lines that name what was left out.

``prepare`` runs once, when a message is accepted; what it keeps goes to the thread's file store
(``bot.store.AttachmentStore``) as ``Prepared.payload``, and every later turn rebuilds the same content
block from those stored bytes (``file_block``), so the cached prompt prefix stays byte-identical.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
import pypdf
from PIL import Image, ImageOps, UnidentifiedImageError

from bot.files import left_out_lines
from bot.types import Attachment, AttachmentKind, AttachmentRef
from config.settings import AttachmentSettings

#: Image formats the API reads, by Pillow's identification of the bytes (not the platform's claim).
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
TEXT_MEDIA_TYPES = frozenset({"application/json", "application/xml", "application/x-yaml", "application/yaml",
                              "application/toml", "application/javascript", "application/x-sh",
                              "application/sql", "application/x-python-code", "application/csv"})
TEXT_SUFFIXES = frozenset({
    "txt", "md", "markdown", "rst", "csv", "tsv", "json", "jsonl", "yaml", "yml", "toml", "ini", "cfg", "conf",
    "log", "xml", "html", "htm", "css", "js", "mjs", "ts", "tsx", "jsx", "py", "rb", "go", "rs", "java", "kt",
    "c", "h", "cc", "cpp", "hpp", "cs", "swift", "php", "pl", "lua", "sh", "bash", "zsh", "ps1", "sql", "r",
    "scala", "hs", "ex", "exs", "erl", "clj", "dart", "vue", "svelte", "diff", "patch", "env", "gradle",
})
#: Rough token costs: an image is about width x height / 750 tokens (the API's documented estimate); a PDF
#: page is read as text and as an image (about 1,500 to 3,000 tokens a page).
IMAGE_PIXELS_PER_TOKEN = 750
PDF_TOKENS_PER_PAGE = 2_000
JPEG_QUALITIES = (85, 75, 60, 45)


class LeftOut(Exception):
    """A file that does not reach the model; ``reason`` is what the member reads after its name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Prepared:
    """One file ready for the model: its reference and the payload the file store keeps."""

    ref: AttachmentRef
    payload: str = ""


@dataclass
class PreparedFiles:
    """A message's files: those kept (``kept``, in order) and every reference, with the left-out ones."""

    refs: list[AttachmentRef] = field(default_factory=list)
    kept: list[Prepared] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return left_out_lines(self.refs)


def classify(name: str, media_type: str, data: bytes) -> AttachmentKind:
    """What a file is by its content (magic numbers), with the platform's claim only to pick text files."""
    if data.startswith(b"%PDF-"):
        return "pdf"
    if _image_format(data) is not None:
        return "image"
    claimed = media_type.split(";")[0].strip().lower()
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if claimed.startswith("image/") or claimed == "application/pdf":
        return ""  # claims to be an image or a PDF and is not: refused by ``prepare_one``
    if claimed.startswith("text/") or claimed in TEXT_MEDIA_TYPES or suffix in TEXT_SUFFIXES:
        return "text"
    return ""


def _image_format(data: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format if img.format in IMAGE_TYPES else None
    except Image.DecompressionBombError:
        return "bomb"  # an image header, of a size refused when it is prepared
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def prepare(files: Sequence[Attachment], settings: AttachmentSettings) -> PreparedFiles:
    """Every file of one message, in order: prepared, or left out with the reason the member reads.
    CPU-bound (decoding, scaling): the engine runs it in a worker thread."""
    out = PreparedFiles()
    counts = {"image": 0, "document": 0}
    limits = {"image": settings.max_images_per_message, "document": settings.max_documents_per_message}
    for file in files:
        ref = _base_ref(file)
        try:
            prepared = prepare_one(file, settings)
            slot = "image" if prepared.ref.kind == "image" else "document"
            counts[slot] += 1
            if counts[slot] > limits[slot]:
                noun = "images" if slot == "image" else "files (PDF or text)"
                raise LeftOut(f"at most {limits[slot]} {noun} per message are read")
        except LeftOut as exc:
            out.refs.append(AttachmentRef(ref.name, ref.media_type, ref.size, ref.sha256, ref.link, note=exc.reason))
            continue
        out.refs.append(prepared.ref)
        out.kept.append(prepared)
    return out


def _base_ref(file: Attachment) -> AttachmentRef:
    size = len(file.data) if file.data is not None else file.size
    return AttachmentRef(_safe_name(file.name), file.media_type or "application/octet-stream", size,
                         file.sha256, file.link)


def _safe_name(name: str) -> str:
    cleaned = "".join(ch for ch in name if ch.isprintable() and ch not in "\r\n\t").strip()
    return (cleaned or "file")[:120]


def prepare_one(file: Attachment, settings: AttachmentSettings) -> Prepared:
    """One file as a content payload; ``LeftOut`` when it cannot be read."""
    if file.problem:
        raise LeftOut(file.problem)
    data = file.data
    if data is None:
        raise LeftOut("it could not be downloaded")
    if len(data) > settings.max_download_bytes:
        raise LeftOut(f"it is larger than {_mb(settings.max_download_bytes)}")
    kind = classify(file.name, file.media_type, data)
    base = _base_ref(file)
    if kind == "image":
        return _prepare_image(base, data, settings)
    if kind == "pdf":
        return _prepare_pdf(base, data, settings)
    if kind == "text":
        return _prepare_text(base, data, settings)
    claimed = file.media_type.split(";")[0].strip().lower()
    if claimed.startswith("image/"):
        raise LeftOut("it isn't a valid PNG, JPEG, GIF or WebP image")
    if claimed == "application/pdf":
        raise LeftOut("it isn't a valid PDF")
    raise LeftOut("this file type isn't supported (images, PDFs and text files are)")


def _prepare_image(base: AttachmentRef, data: bytes, settings: AttachmentSettings) -> Prepared:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as img:
                fmt = str(img.format)
                width, height = img.size  # from the header: nothing decoded yet
                if width * height > settings.max_image_pixels:
                    raise LeftOut("the image is too large to open safely")
                encoded, media_type, size = _fit_image(img, data, fmt, settings)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise LeftOut("the image is too large to open safely") from exc
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise LeftOut("the image could not be read (it may be damaged)") from exc
    tokens = math.ceil(size[0] * size[1] / IMAGE_PIXELS_PER_TOKEN)
    return _kept(base, "image", media_type, encoded, tokens)


def _fit_image(img: Image.Image, data: bytes, fmt: str,
               settings: AttachmentSettings) -> tuple[str, str, tuple[int, int]]:
    """The image's base64 and media type within the limits: the original bytes when they fit, else scaled
    so the long edge is at most ``image_long_edge`` and encoded again (JPEG, or PNG when it has alpha)."""
    edge = settings.image_long_edge
    if max(img.size) <= edge and _b64_len(len(data)) <= settings.max_image_base64:
        img.load()  # decode it all once: a damaged file is refused here, not by the API
        return base64.b64encode(data).decode(), IMAGE_TYPES[fmt], img.size
    if fmt == "JPEG":
        img.draft("RGB", (edge, edge))  # let the JPEG decoder scale by 1/2, 1/4, 1/8 while it decodes
    frame = ImageOps.exif_transpose(img)
    frame.thumbnail((edge, edge), Image.Resampling.LANCZOS)
    has_alpha = frame.mode in ("RGBA", "LA", "PA") or (frame.mode == "P" and "transparency" in frame.info)
    for quality in JPEG_QUALITIES:
        buf = io.BytesIO()
        if has_alpha:
            frame.convert("RGBA").save(buf, "PNG", optimize=True)
            media_type = "image/png"
        else:
            frame.convert("RGB").save(buf, "JPEG", quality=quality, optimize=True)
            media_type = "image/jpeg"
        encoded = base64.b64encode(buf.getvalue()).decode()
        if len(encoded) <= settings.max_image_base64:
            return encoded, media_type, frame.size
        if has_alpha:
            frame.thumbnail((frame.width // 2, frame.height // 2))
    raise LeftOut("the image is too large even after scaling it down")


def _prepare_pdf(base: AttachmentRef, data: bytes, settings: AttachmentSettings) -> Prepared:
    if len(data) > settings.max_pdf_bytes:
        raise LeftOut(f"PDFs of at most {_mb(settings.max_pdf_bytes)} are read")
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise LeftOut("the PDF is password-protected")
        pages = len(reader.pages)
    except LeftOut:
        raise
    except Exception as exc:  # pypdf raises many kinds on a damaged file
        raise LeftOut("it isn't a valid PDF") from exc
    if pages < 1:
        raise LeftOut("the PDF has no pages")
    if pages > settings.max_pdf_pages:
        raise LeftOut(f"PDFs of at most {settings.max_pdf_pages} pages are read (this one has {pages})")
    return _kept(base, "pdf", "application/pdf", base64.b64encode(data).decode(), pages * PDF_TOKENS_PER_PAGE)


def _prepare_text(base: AttachmentRef, data: bytes, settings: AttachmentSettings) -> Prepared:
    if b"\x00" in data[:8192]:
        raise LeftOut("this file type isn't supported (it is not text)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LeftOut("it isn't UTF-8 text") from exc
    text = text.replace("\r\n", "\n")
    if not text.strip():
        raise LeftOut("the file is empty")
    note = None
    if len(text) > settings.max_text_chars:
        text = text[: settings.max_text_chars]
        note = f"only its first {settings.max_text_chars:,} characters were read"
    kept = _kept(base, "text", "text/plain", text, len(text) // 4 + 4)
    if note:  # read, but in part: the member is told
        return Prepared(AttachmentRef(**{**kept.ref.to_dict(), "note": note}), kept.payload)
    return kept


def _kept(base: AttachmentRef, kind: AttachmentKind, media_type: str, content: str, tokens: int) -> Prepared:
    payload = orjson.dumps({"k": kind, "t": media_type, "d": content}).decode()
    key = hashlib.sha256(payload.encode()).hexdigest()[:32]
    ref = AttachmentRef(base.name, base.media_type, base.size, base.sha256, base.link, kind, key, tokens)
    return Prepared(ref, payload)


def _b64_len(n: int) -> int:
    return 4 * math.ceil(n / 3)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB"
