"""Which cases a moderator sees, and the list filters, answered by the communities' case indexes
(``bot.store.CaseIndex``): a page reads its own cases' summaries, never every case."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime

from adapters.dashboard.auth import Moderator
from bot.caselog import CaseLog
from bot.store import CaseIndex, CaseQuery
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


def _day(value: str, *, end: bool = False) -> float | None:
    if not value:
        return None
    start = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    return start + 86_399 if end else start


def to_query(wanted: CaseFilter, action: str, *, with_review: bool = True) -> CaseQuery:
    """``wanted`` as an index query of one action (the review view applies to ended threads only)."""
    review = wanted.review if with_review and action == "end" and wanted.review != "all" else ""
    return CaseQuery(action=action, review=review, reason=wanted.reason, category=wanted.category,
                     platform=wanted.platform, thread=wanted.thread, who=wanted.participant,
                     since=_day(wanted.since), until=_day(wanted.until, end=True))


def _newest_first(found: list[Case]) -> list[Case]:
    return sorted(found, key=lambda c: (c.ended_at, c.case_id), reverse=True)


async def _all_of(index: CaseIndex, community: str, query: CaseQuery, *, full: bool) -> AsyncIterator[Case]:
    offset = 0
    while True:
        _, ids = await index.query(community, query, offset, BATCH)
        if not ids:
            return
        for case in await (index.full_cases if full else index.summaries)(community, ids):
            yield case
        offset += len(ids)


async def _by_name(index: CaseIndex, communities: list[str], query: CaseQuery, wanted: CaseFilter, *,
                   full: bool = False) -> list[Case]:
    """A participant given by part of a name (no index holds parts): every case of the query's other
    filters, matched here."""
    unnamed = dataclasses.replace(query, who="")
    found = []
    for community in communities:
        found += [c async for c in _all_of(index, community, unnamed, full=full)
                  if _has_participant(c, wanted.participant)]
    return _newest_first(found)


async def page_of(index: CaseIndex, communities: list[str], wanted: CaseFilter, action: str, offset: int,
                  limit: int) -> tuple[int, list[Case]]:
    """How many cases of ``action`` match ``wanted`` in ``communities``, and ``limit`` of them from ``offset``
    on, newest first, as summaries."""
    query = to_query(wanted, action)
    total, pages = 0, []
    for community in communities:
        found, ids = await index.query(community, query, 0, offset + limit)
        total += found
        pages.append((community, ids))
    if total == 0 and wanted.participant:
        named = await _by_name(index, communities, query, wanted)
        return len(named), named[offset:offset + limit]
    if len(pages) == 1:
        community, ids = pages[0]
        return total, await index.summaries(community, ids[offset:offset + limit])
    merged = [c for community, ids in pages for c in await index.summaries(community, ids)]
    return total, _newest_first(merged)[offset:offset + limit]


BATCH = 200


async def load_cases(index: CaseIndex, communities: list[str], wanted: CaseFilter, *,
                     full: bool = False) -> list[Case]:
    """Every case in ``communities`` that matches ``wanted`` (any review state), newest first: summaries,
    or with transcripts when ``full``."""
    if wanted.community:
        communities = [c for c in communities if c == wanted.community]
    actions = [wanted.action] if wanted.action else ["end", *sorted(set(ACTIONS) - {"end"})]
    found: list[Case] = []
    for action in actions:
        query = to_query(wanted, action, with_review=False)
        for community in communities:
            found.extend([c async for c in _all_of(index, community, query, full=full) if wanted.matches(c)])
    if not found and wanted.participant:
        for action in actions:
            query = to_query(wanted, action, with_review=False)
            found.extend(await _by_name(index, communities, query, wanted, full=full))
        found = [c for c in found if wanted.matches(c)]
    return _newest_first(found)
