"""Plain-text helpers shared by the platform adapters (no I/O)."""

from __future__ import annotations

_BOUNDARIES = ("\n\n", "\n", ". ", " ")


def split_text(text: str, limit: int) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` characters, at paragraph, line, sentence or word
    boundaries; only a single word longer than a quarter of the limit is hard-split."""
    if limit < 1:
        raise ValueError("limit must be positive")
    text = text.strip()
    pieces: list[str] = []
    while len(text) > limit:
        window = text[:limit]
        cut = -1
        for sep in _BOUNDARIES:
            at = window.rfind(sep)
            if at > limit // 4:
                cut = at + (1 if sep == ". " else 0)
                break
        if cut <= 0:
            cut = limit
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        pieces.append(text)
    return pieces


FSI, PDI = "\u2068", "\u2069"


def isolate(value: str) -> str:
    """A member-supplied string wrapped in FIRST STRONG ISOLATE ... POP DIRECTIONAL ISOLATE, so a
    right-to-left override in it cannot reorder the text after it (names, ids and links in mod-log posts).
    Stray isolate marks inside are removed so the pair always balances."""
    return FSI + value.replace(FSI, "").replace(PDI, "") + PDI
