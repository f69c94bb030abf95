"""Slack's documented Web API rate limits, enforced by the Slack stand-in when a test or bench asks for it:
``SlackStandin(rate_limits=SlackRateLimits())``. Past a limit the call is answered as Slack answers it:
HTTP 429, a ``Retry-After`` header in whole seconds, and ``{"ok": false, "error": "ratelimited"}``.

What Slack documents (read 2026-12; sources below):

- Limits apply "per API method per workspace/team per app", in per-minute windows. Tier 1: 1+ per minute
  ("a small amount of burst behavior is tolerated"); Tier 2: 20+ per minute ("occasional bursts of more");
  Tier 3: 50+ per minute ("sporadic bursts are welcome"); Tier 4: 100+ per minute ("generous burst
  behavior"). Source: https://docs.slack.dev/apis/web-api/rate-limits (the tier table).
- ``chat.postMessage`` has a special tier: "generally allows posting one message per second per channel,
  while also maintaining a workspace-wide limit"; "Posting messages: 1 per second, short bursts >1
  allowed". Same source. The workspace-wide number is not published.
- Each method's tier, from the Facts of its reference page (https://docs.slack.dev/reference/methods/<method>,
  as mirrored in slack-ruby/slack-api-ref ``docs.slack.dev/methods/<method>.json``, field ``rate_limits``,
  commit f4837c0c of 2026-08-20): ``chat.postMessage`` special, ``chat.update`` Tier 3, ``chat.delete``
  Tier 3, ``chat.postEphemeral`` Tier 4, ``chat.startStream`` **Tier 2**, ``chat.appendStream`` Tier 4,
  ``chat.stopStream`` **Tier 2**, ``reactions.add`` Tier 3, ``views.open`` Tier 4,
  ``usergroups.users.list`` Tier 2, ``users.info`` Tier 4, ``conversations.info`` Tier 3,
  ``files.getUploadURLExternal`` and ``files.completeUploadExternal`` Tier 4; ``auth.test`` special (not
  limited here). The streaming methods' tiers were the same in every version of those pages from 2025-10
  to 2026-08.

What the stand-in chooses where Slack gives no number (each a field, so a run can say what it used):
every limit is a token bucket refilled at the documented rate (the "+" read as its floor) holding
``burst`` calls: Tier 1 2, Tier 2 5, Tier 3 10, Tier 4 20; ``chat.postMessage`` 1 a second per channel
with bursts of 3, and 20 a second per workspace with bursts of 40 (an assumption: the workspace-wide
limit is not published). A refused call takes no token. Methods not listed are not limited.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Tier:
    """A rate: ``per_minute`` calls a minute, at most ``burst`` of them back to back."""

    name: str
    per_minute: float
    burst: int

    def __str__(self) -> str:
        return f"{self.name} ({self.per_minute:g}/min, bursts of {self.burst})"


TIER_1 = Tier("Tier 1", 1, 2)
TIER_2 = Tier("Tier 2", 20, 5)
TIER_3 = Tier("Tier 3", 50, 10)
TIER_4 = Tier("Tier 4", 100, 20)
#: chat.postMessage: one message a second per channel with short bursts, and a workspace-wide limit.
POST_PER_CHANNEL = Tier("chat.postMessage per channel", 60, 3)
POST_PER_WORKSPACE = Tier("chat.postMessage per workspace", 1200, 40)

#: The tier of each method threadguard calls (chat.postMessage has its own limits, above).
METHOD_TIERS: dict[str, Tier] = {
    "chat.update": TIER_3, "chat.delete": TIER_3, "chat.postEphemeral": TIER_4,
    "chat.startStream": TIER_2, "chat.appendStream": TIER_4, "chat.stopStream": TIER_2,
    "reactions.add": TIER_3, "views.open": TIER_4, "usergroups.users.list": TIER_2, "users.info": TIER_4,
    "conversations.info": TIER_3, "files.getUploadURLExternal": TIER_4, "files.completeUploadExternal": TIER_4,
}


@dataclass
class _Bucket:
    tier: Tier
    tokens: float
    updated: float

    def wait(self, now: float) -> float:
        """Seconds until a call may go (0: now), after refilling up to ``now``."""
        rate = self.tier.per_minute / 60.0
        self.tokens = min(float(self.tier.burst), self.tokens + (now - self.updated) * rate)
        self.updated = now
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / rate


@dataclass
class SlackRateLimits:
    """Token buckets per method and workspace (and, for ``chat.postMessage``, per channel too)."""

    tiers: dict[str, Tier] = field(default_factory=lambda: dict(METHOD_TIERS))
    post_per_channel: Tier = POST_PER_CHANNEL
    post_per_workspace: Tier = POST_PER_WORKSPACE
    clock: Callable[[], float] = time.monotonic
    #: Calls refused, by method, and by the limit that refused them (its tier's name).
    refused: Counter[str] = field(default_factory=Counter)
    refused_by: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._buckets: dict[tuple[str, ...], _Bucket] = {}

    def wait(self, method: str, team: str, args: dict[str, Any]) -> float:
        """Seconds the call must wait (0: it goes now, and takes its tokens)."""
        return self._take(method, team, args)[0]

    def _take(self, method: str, team: str, args: dict[str, Any]) -> tuple[float, str]:
        """(seconds to wait, the limit that makes it wait); takes the tokens when the call may go now."""
        buckets = self._buckets_for(method, team, args)
        now = self.clock()
        wait, limit = max(((b.wait(now), b.tier.name) for b in buckets), default=(0.0, ""))
        if wait <= 0:
            for bucket in buckets:
                bucket.tokens -= 1.0
        return wait, limit

    def refusal(self, method: str, team: str, args: dict[str, Any]) -> web.Response | None:
        """Slack's answer past the limit (429, Retry-After, ``ratelimited``), or None when the call may go."""
        wait, limit = self._take(method, team, args)
        if wait <= 0:
            return None
        self.refused[method] += 1
        self.refused_by[limit] += 1
        return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                 headers={"Retry-After": str(max(1, math.ceil(wait)))})

    def describe(self) -> list[str]:
        """One line per limit, for a report."""
        lines = [f"chat.postMessage: {self.post_per_channel}; {self.post_per_workspace}"]
        lines += [f"{method}: {tier}" for method, tier in sorted(self.tiers.items())]
        return lines

    def _buckets_for(self, method: str, team: str, args: dict[str, Any]) -> list[_Bucket]:
        if method == "chat.postMessage":
            channel = str(args.get("channel") or "")
            return [self._bucket(("post", team, channel), self.post_per_channel),
                    self._bucket(("post", team), self.post_per_workspace)]
        tier = self.tiers.get(method)
        return [] if tier is None else [self._bucket((method, team), tier)]

    def _bucket(self, key: tuple[str, ...], tier: Tier) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tier, float(tier.burst), self.clock())
        return bucket
