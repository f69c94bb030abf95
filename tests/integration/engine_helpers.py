"""Builders shared by the engine integration tests: a runtime on a real Redis and the Messages API stand-in."""

from __future__ import annotations

import itertools
from typing import Any

from bot.bootstrap import Runtime, build_runtime
from bot.types import Author, IncomingMessage, Outcome, ThreadRef
from config.communities import Communities, CommunityConfig
from config.settings import AnthropicSettings, EngineSettings, RedisSettings, Settings

ALICE = Author("u-alice", "alice")
CRISIS = "Call or text 988 now."


def claude_runtime(redis_client: Any, base_url: str, *, threshold: int = 3, max_retries: int = 2,
                   **engine: Any) -> Runtime:
    settings = Settings(
        anthropic=AnthropicSettings(api_key="test-key", base_url=base_url, max_retries=max_retries, timeout=5),
        redis=RedisSettings(url=None),
        engine=EngineSettings(**engine),
    )
    communities = Communities(CommunityConfig(threshold=threshold, crisis_resources=CRISIS))
    return build_runtime(settings, redis=redis_client, communities=communities)


_ids = itertools.count(1)


def message(thread: ThreadRef, text: str, author: Author = ALICE, event_id: str | None = None) -> IncomingMessage:
    n = next(_ids)
    return IncomingMessage(thread, author, text, message_id=f"m{n}", event_id=event_id)


def kinds(outcome: Any) -> list[str]:
    return [r.kind.value for r in outcome.replies]


class CollectingSink:
    """The delivery sink of a test platform: keeps every outcome delivered through it."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    def stream(self, entry: Any) -> None:
        return None

    async def deliver(self, entry: Any, outcome: Outcome, stream: Any) -> None:
        self.outcomes.append(outcome)

    async def notice(self, notice: Any) -> None:
        return None

    async def case(self, case: Any) -> None:
        return None
