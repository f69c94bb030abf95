"""What the running bot reports about itself: the hooks the engine, the store and the adapters call.

``Metrics`` is the role and does nothing: the core and the tests run without a metrics library.
``adapters.metrics.PrometheusMetrics`` plays it in the long-running processes (``/metrics``). Labels
never carry message text or user ids.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.model import Usage
from bot.types import Entry, EntryKind, Outcome, ReplyKind, ThreadStatus

#: Ladder events counted by kind (the transcript entry kinds that make up the ladder timeline).
LADDER_EVENTS: dict[EntryKind, str] = {
    EntryKind.REDIRECTION: "redirection",
    EntryKind.WARNING: "warning",
    EntryKind.RISK: "risk_flag",
    EntryKind.CRISIS: "crisis_resources",
    EntryKind.END: "end",
    EntryKind.REFUSAL: "api_refusal",
}


class Metrics:
    """The null object: every hook accepts its figures and drops them."""

    def turn(self, platform: str, outcome: str, seconds: float) -> None:
        """A member's message was handled; ``outcome``: answered, ended, frozen, duplicate, rejected, error."""

    def model_call(self, seconds: float, first_token_seconds: float | None) -> None:
        """One Messages API call finished (time to first token when the answer streamed)."""

    def ladder_event(self, kind: str, category: str) -> None:
        """A committed ladder step (see ``LADDER_EVENTS``)."""

    def tokens(self, kind: str, count: int) -> None:
        """Tokens billed, by kind: input, output, cache_write, cache_read."""

    def store_error(self, operation: str) -> None:
        """A Redis request failed."""

    def platform_error(self, platform: str, code: str) -> None:
        """A platform API call failed after its client's retries (``code``: the platform's error code)."""

    def rate_limited(self, platform: str, method: str) -> None:
        """A platform answered 429 (counted whether or not a retry then succeeded)."""

    # Hooks for the turn pipeline: called by ``bot.pipeline`` (inbox depth) and ``bot.worker`` (takeovers).

    def inbox_depth(self, depth: int) -> None:
        """Messages waiting in the inbox of the thread just looked at."""

    def lease_takeover(self) -> None:
        """The recovery loop took over a thread waiting for an owner (its owner's lease ran out, or it
        handed the thread back)."""

    # Derived helpers: one call from the engine per turn.

    def usage(self, usage: Usage) -> None:
        self.tokens("input", usage.input_tokens)
        self.tokens("output", usage.output_tokens)
        self.tokens("cache_write", usage.cache_creation_input_tokens)
        self.tokens("cache_read", usage.cache_read_input_tokens)

    def ladder(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            kind = LADDER_EVENTS.get(entry.kind)
            if kind is not None:
                self.ladder_event(kind, entry.category or "none")


def outcome_kind(outcome: Outcome) -> str:
    """The ``outcome`` label of a handled message."""
    if outcome.duplicate:
        return "duplicate"
    if outcome.frozen:
        return "frozen"
    if outcome.status is ThreadStatus.ENDED:
        return "ended"
    if any(r.kind is ReplyKind.ERROR for r in outcome.replies):
        return "error"
    return "answered" if outcome.model_called else "rejected"
