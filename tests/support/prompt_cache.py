"""Billing requests as the Messages API bills prompt caching, from the request payloads alone.

A request is read as one sequence of blocks in the order the API caches them: tools, system, then each
message's content blocks. Every block with ``cache_control`` is a breakpoint; the prefix up to it is
written to the cache (1.25x its tokens, or 2x for the hour) unless it is already there, and the longest
prefix already cached is read (0.1x). Tokens are characters / 4. The ``cache_control`` markers themselves
do not take part in a prefix's identity.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any

WRITE = {"5m": 1.25, "1h": 2.0}
READ = 0.1
TTL = {"5m": 300.0, "1h": 3600.0}


def blocks(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(canonical JSON without cache_control, the breakpoint's ttl or None) for every block, in order."""
    out: list[tuple[str, str | None]] = []

    def add(kind: str, block: dict[str, Any]) -> None:
        marker = block.get("cache_control")
        plain = {k: v for k, v in block.items() if k != "cache_control"}
        ttl = (marker.get("ttl") or "5m") if isinstance(marker, dict) else None
        out.append((json.dumps([kind, plain], sort_keys=True, ensure_ascii=False), ttl))

    for tool in body.get("tools") or []:
        add("tool", tool)
    system = body.get("system")
    for block in ([{"type": "text", "text": system}] if isinstance(system, str) else system or []):
        add("system", block)
    for message in body["messages"]:
        content = message["content"]
        for block in ([{"type": "text", "text": content}] if isinstance(content, str) else content):
            add(message["role"], block)
    return out


def tokens(text: str) -> float:
    return len(text) / 4


def prefix_digests(seq: list[tuple[str, str | None]]) -> list[str]:
    """The digest of every prefix (after each block)."""
    h = hashlib.sha256()
    digests = []
    for canonical, _ in seq:
        h.update(canonical.encode())
        h.update(b"\x00")
        digests.append(h.hexdigest())
    return digests


def cached_prefix(body: dict[str, Any]) -> list[str]:
    """The blocks up to and including the request's last breakpoint (what the next request should repeat)."""
    seq = blocks(body)
    last = max((i for i, (_, ttl) in enumerate(seq) if ttl), default=-1)
    return [canonical for canonical, _ in seq[:last + 1]]


def shares_cached_prefix(previous: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether ``current`` starts with the byte-identical prefix that ``previous`` cached (its history
    breakpoint included: a prefix of tools and system alone does not count)."""
    before = cached_prefix(previous)
    now = [canonical for canonical, _ in blocks(current)]
    has_history = any(not c.startswith(('["tool"', '["system"')) for c in before)
    return has_history and now[:len(before)] == before


@dataclass
class Bill:
    """Input tokens billed over a run of requests, against resending every request uncached."""

    uncached: float = 0.0
    billed: float = 0.0
    read: float = 0.0
    written: float = 0.0
    requests: int = 0
    _cache: dict[str, float] = field(default_factory=dict)  # prefix digest -> expiry (seconds)

    def add(self, body: dict[str, Any], now: float = 0.0) -> None:
        seq = blocks(body)
        sizes = [tokens(c) for c, _ in seq]
        digests = prefix_digests(seq)
        total = sum(sizes)
        self.uncached += total
        self.requests += 1
        breakpoints = [i for i, (_, ttl) in enumerate(seq) if ttl]
        if not breakpoints:
            self.billed += total
            return
        last = breakpoints[-1]
        hit = max((i for i in range(last + 1) if self._cache.get(digests[i], -1.0) >= now), default=-1)
        read = sum(sizes[:hit + 1])
        write_ttl = seq[last][1] or "5m"
        written = sum(sizes[hit + 1:last + 1])
        self.read += read
        self.written += written
        self.billed += read * READ + written * WRITE[write_ttl] + (total - read - written)
        for i in breakpoints:
            self._cache[digests[i]] = now + TTL[seq[i][1] or "5m"]
        if hit >= 0:
            self._cache[digests[hit]] = now + TTL[write_ttl]  # a read refreshes the entry

    @property
    def ratio(self) -> float:
        return self.billed / self.uncached if self.uncached else 0.0


WORDS = ("river", "garden", "copper", "lantern", "harbor", "meadow", "violet", "thunder", "pencil", "orbit",
         "saddle", "marble", "falcon", "cinder", "willow", "quartz")


def text_of(length: int, seed: int) -> str:
    """``length`` characters of words, different for every ``seed`` (so no two messages share a prefix)."""
    rnd = random.Random(seed)
    out = f"[{seed}] "
    while len(out) < length:
        out += rnd.choice(WORDS) + " "
    return out[:length].rstrip() + "."
