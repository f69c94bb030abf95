"""Members' files as the model reads them in every turn, and as the member is told about them: content
blocks rebuilt from the thread's file store (the same bytes every turn, so the cached prompt prefix holds),
placeholders once the bytes are gone, the history window's token estimate, and the lines naming what was
left out. Light on purpose: preparing files (``bot.attachments``) loads the imaging and PDF libraries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import orjson

from bot.model import Block, FileBlock, TextBlock
from bot.types import AttachmentRef


def left_out_lines(refs: Iterable[AttachmentRef]) -> list[str]:
    """One line for each reason files were left out, naming them: "a.png, b.png: at most 5 images ..."."""
    by_reason: dict[str, list[str]] = {}
    for ref in refs:
        if ref.note:
            by_reason.setdefault(ref.note, []).append(ref.name)
    return [f"{', '.join(names)}: {reason}" for reason, names in by_reason.items()]



PLACEHOLDER = {"image": "image", "pdf": "PDF", "text": "file"}


def file_blocks(refs: Sequence[AttachmentRef] | None, stored: Mapping[str, str]) -> list[Block]:
    """The content blocks of a line's files: each kept file from its stored payload, a placeholder the model
    can read once its bytes are gone, and a note for each file left out. Same input, same bytes."""
    blocks: list[Block] = []
    for ref in refs or ():
        payload = stored.get(ref.id) if ref.id else None
        if payload is not None and ref.kind:
            blocks.append(file_block(ref, payload))
        elif ref.kind:
            blocks.append(TextBlock(f"[{PLACEHOLDER[ref.kind]} no longer available: {ref.name}]"))
        elif ref.note:
            blocks.append(TextBlock(f"[attachment not read: {ref.name}: {ref.note}]"))
    return blocks


def file_block(ref: AttachmentRef, payload: str) -> Block:
    data = orjson.loads(payload)
    kind = data["k"]
    if kind not in ("image", "pdf", "text"):
        return TextBlock(f"[file no longer available: {ref.name}]")
    return FileBlock(kind, str(data["t"]), str(data["d"]), ref.name)


def stored_ids(refs: Iterable[AttachmentRef] | None) -> list[str]:
    return [r.id for r in refs or () if r.id and r.kind]


def refs_tokens(refs: Sequence[AttachmentRef] | None) -> int:
    """The history window's estimate for a line's files."""
    return sum(r.tokens or 16 for r in refs or ())


def dropped(ref: AttachmentRef, reason: str) -> AttachmentRef:
    """A file the API refused: it never returns in later history (no stored id), its reason stays."""
    return AttachmentRef(ref.name, ref.media_type, ref.size, ref.sha256, ref.link, note=reason)
