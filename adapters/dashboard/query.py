"""Which cases a moderator sees, and the list filters (applied in Python over their communities' cases)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

from adapters.dashboard.auth import Moderator
from bot.caselog import CaseLog
from bot.types import CATEGORIES, Case

PLATFORMS = ("discord", "slack", "console")
REASONS = ("persistent_abuse", "user_requested")
ACTIONS = ("end", "reopen", "note", "mistaken", "delete", "assign", "review", "risk")
#: The review views of the list: ``awaiting`` (unreviewed or in review) is the default.
REVIEW_VIEWS = ("awaiting", "unreviewed", "in_review", "reviewed", "all")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class CaseFilter:
    """The list's filters; unknown or malformed values are dropped, never echoed into a query."""

    community: str = ""
    platform: str = ""
    reason: str = ""
    category: str = ""
    action: str = ""
    participant: str = ""
    thread: str = ""
    since: str = ""
    until: str = ""
    #: Which ended threads by review state; without the parameter, ``awaiting`` on the bare list and
    #: ``all`` when other filters are given (links to a thread's or a member's cases show everything).
    review: str = "awaiting"

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> CaseFilter:
        def pick(name: str, allowed: tuple[str, ...]) -> str:
            value = query.get(name, "")
            return value if value in allowed else ""

        def date(name: str) -> str:
            value = query.get(name, "")
            return value if _DATE.match(value) else ""

        others = any(query.get(f.name) for f in fields(cls) if f.name not in ("review", "page"))
        review = query.get("review", "")
        if review not in REVIEW_VIEWS:
            review = "all" if others else "awaiting"
        return cls(
            review=review,
            community=query.get("community", "")[:100],
            platform=pick("platform", PLATFORMS),
            reason=pick("reason", REASONS),
            category=pick("category", CATEGORIES),
            action=pick("action", ACTIONS),
            participant=query.get("participant", "").strip()[:100],
            thread=query.get("thread", "")[:300],
            since=date("since"),
            until=date("until"),
        )

    def as_query(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) and not (f.name == "review" and self.review == "awaiting")}

    def review_matches(self, state: str) -> bool:
        if self.review == "all":
            return True
        if self.review == "awaiting":
            return state in ("unreviewed", "in_review")
        return state == self.review

    def matches(self, case: Case) -> bool:
        day = case.ended_at[:10]
        checks = (
            not self.community or case.community == self.community,
            not self.platform or case.platform == self.platform,
            not self.reason or case.reason == self.reason,
            not self.category or case.category == self.category,
            not self.action or case.action == self.action,
            not self.thread or case.thread == self.thread,
            not self.since or day >= self.since,
            not self.until or day <= self.until,
            not self.participant or _has_participant(case, self.participant),
        )
        return all(checks)


def _has_participant(case: Case, needle: str) -> bool:
    wanted = needle.casefold()
    return any(wanted == p.id.casefold() or wanted in p.name.casefold() for p in case.participants)


async def visible_communities(cases: CaseLog, moderator: Moderator) -> list[str]:
    return moderator.visible(await cases.communities())


async def load_cases(cases: CaseLog, moderator: Moderator, wanted: CaseFilter) -> list[Case]:
    """Every case the moderator may see that matches ``wanted``, newest first."""
    communities = await visible_communities(cases, moderator)
    if wanted.community:
        communities = [c for c in communities if c == wanted.community]
    found: list[Case] = []
    for community in communities:
        total = await cases.count(community)
        if total:
            found.extend(c for c in await cases.list(community, 0, total) if wanted.matches(c))
    found.sort(key=lambda c: (c.ended_at, c.case_id), reverse=True)
    return found
