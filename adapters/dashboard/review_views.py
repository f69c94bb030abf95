"""The review workflow's pages: the list of ended threads by review state (moderator actions nested
under their case), review actions, the appeals queue, and a member's record across threads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web

from adapters.dashboard.context import Dashboard, current_moderator, dashboard
from adapters.dashboard.query import CaseFilter, load_cases, visible_communities
from bot.errors import CaseNotFound
from bot.review import OUTCOMES, Appeal, Review, ReviewState, counts_against
from bot.types import Author, Case

#: A member with at least this many abuse endings in a community (not reviewed as mistaken, not
#: reopened) is marked as a repeat.
REPEAT_AT = 2
_STRUCK = ("mistaken", "reopened")
MAX_NOTE = 2000


@dataclass
class Row:
    """One ended thread in the list, with its review state and the moderator actions filed on it."""

    case: Case
    review: Review
    actions: list[Case] = field(default_factory=list)
    appeals: int = 0
    repeat: set[str] = field(default_factory=set)


@dataclass
class Board:
    """Everything the list shows: the rows of the current view and the header counts."""

    rows: list[Row]
    counts: dict[str, int]
    flat: list[Case] | None = None  # set when the list shows moderator actions by themselves


def _author(request: web.Request) -> Author:
    moderator = current_moderator(request)
    return Author(f"dashboard:{moderator.name}", moderator.name)


def ends_per_member(cases: Iterable[Case], reviews: dict[tuple[str, int], Review]) -> Counter[tuple[str, str]]:
    """(community, member id) -> abuse endings that still count against them."""
    counts: Counter[tuple[str, str]] = Counter()
    for case in cases:
        review = reviews.get((case.community, case.case_id))
        if counts_against(case) and (review is None or review.outcome not in _STRUCK):
            for p in {p.id for p in case.participants}:
                counts[(case.community, p)] += 1
    return counts


async def _reviews_of(dash: Dashboard, cases: Iterable[Case]) -> dict[tuple[str, int], Review]:
    ends = [c for c in cases if c.action == "end"]
    found: dict[tuple[str, int], Review] = {}
    for community in {c.community for c in ends}:
        got = await dash.runtime.review.reviews(community, [c.case_id for c in ends if c.community == community])
        found.update({(community, n): r for n, r in got.items()})
    return found


async def build_board(dash: Dashboard, request: web.Request, wanted: CaseFilter) -> Board:
    """The rows of ``wanted`` and the header counts over the moderator's communities."""
    moderator = current_moderator(request)
    everything = await load_cases(dash.runtime.cases, moderator, CaseFilter(community=wanted.community, review="all"))
    matching = [c for c in everything if wanted.matches(c)]
    desk = dash.runtime.review
    by_key = {(c.community, c.case_id): c for c in everything}
    ends = [c for c in everything if c.action == "end"]
    reviews = await _reviews_of(dash, ends)
    repeats = ends_per_member(everything, reviews)
    appeals = Counter((a.community, a.case_id) for a in
                      await desk.open_appeals(await visible_communities(dash.runtime.cases, moderator)))
    counts = Counter(reviews[(c.community, c.case_id)].state.value for c in ends)
    header = {"unreviewed": counts["unreviewed"], "in_review": counts["in_review"], "reviewed": counts["reviewed"],
              "appeals": sum(appeals.values()), "risk": sum(c.action == "risk" for c in everything)}
    if wanted.action and wanted.action != "end":
        return Board([], header, flat=matching)
    rows = []
    for case in matching:
        if case.action != "end":
            continue
        review = reviews[(case.community, case.case_id)]
        if not wanted.review_matches(review.state.value):
            continue
        nested = [by_key[(case.community, n)] for n in case.actions if (case.community, n) in by_key]
        repeat = {p.id for p in case.participants if repeats[(case.community, p.id)] >= REPEAT_AT}
        rows.append(Row(case, review, nested, appeals[(case.community, case.case_id)], repeat))
    return Board(rows, header)


async def case_review(dash: Dashboard, request: web.Request, case: Case) -> dict[str, Any]:
    """The review panel, appeals and repeat marks of one case page."""
    if case.action != "end":
        return {"review": None, "appeals": [], "repeat": set(), "outcomes": OUTCOMES}
    desk = dash.runtime.review
    everything = await load_cases(dash.runtime.cases, current_moderator(request),
                                  CaseFilter(community=case.community, review="all"))
    repeats = ends_per_member(everything, await _reviews_of(dash, everything))
    return {"review": await desk.review(case.community, case.case_id),
            "appeals": await desk.appeals_of(case.community, case.case_id),
            "repeat": {p.id for p in case.participants if repeats[(case.community, p.id)] >= REPEAT_AT},
            "outcomes": OUTCOMES}


# --- review actions -------------------------------------------------------------------------------

REVIEW_FLASH = {
    "assigned": "You have this case now: it shows as in review with your name.",
    "taken": "Another moderator is reviewing this case; use \u201ctake over\u201d to move it to you.",
    "already_reviewed": "This case was already reviewed.",
    "concluded": "The review was recorded.",
    "bad_outcome": "Choose an outcome: upheld or mistaken (reopen the thread to record reopened).",
    "decided": "The decision was recorded and is on its way to the member.",
    "not_open": "That appeal was already decided; nothing changed.",
}


async def review_action(request: web.Request, case: Case) -> str:
    """Carry out ``assign``, ``take`` or ``conclude`` on an ended-thread case; returns the flash key."""
    dash = dashboard(request)
    desk = dash.runtime.review
    action = request.match_info["action"]
    if action in ("assign", "take"):
        result = await desk.assign(case.community, case.case_id, _author(request), take_over=action == "take")
        return {"ok": "assigned", "taken": "taken"}.get(result, "already_reviewed")
    form = await request.post()
    outcome = str(form.get("outcome", ""))
    if outcome not in ("upheld", "mistaken"):
        return "bad_outcome"
    note = str(form.get("note", "")).strip()[:MAX_NOTE] or None
    await desk.conclude(case.community, case.case_id, outcome, _author(request), note)
    return "concluded"


# --- appeals queue --------------------------------------------------------------------------------


async def appeals_page(request: web.Request) -> web.Response:
    from adapters.dashboard.views import page  # the shared page renderer

    dash = dashboard(request)
    communities = await visible_communities(dash.runtime.cases, current_moderator(request))
    waiting: list[tuple[Appeal, Case | None]] = []
    for appeal in await dash.runtime.review.open_appeals(communities):
        try:
            waiting.append((appeal, await dash.runtime.cases.get(appeal.community, appeal.case_id)))
        except CaseNotFound:
            waiting.append((appeal, None))
    return page(dash, request, "appeals.html", waiting=waiting,
                flash=REVIEW_FLASH.get(request.query.get("done", "")))


async def decide_appeal(request: web.Request) -> web.Response:
    dash, moderator = dashboard(request), current_moderator(request)
    community = request.match_info["community"]
    if not moderator.may_see(community):
        raise web.HTTPNotFound()
    try:
        case_id = int(request.match_info["case_id"])
    except ValueError:
        raise web.HTTPNotFound() from None
    decided = await dash.runtime.review.decide(community, case_id, request.match_info["member"],
                                               request.match_info["decision"], _author(request))
    back = str((await request.post()).get("back", ""))
    target = f"/cases/{quote(community, safe='')}/{case_id}" if back == "case" else "/appeals"
    raise web.HTTPSeeOther(f"{target}?done={'decided' if decided else 'not_open'}")


# --- member record --------------------------------------------------------------------------------


async def member_page(request: web.Request) -> web.Response:
    from adapters.dashboard.views import page

    dash, moderator = dashboard(request), current_moderator(request)
    community, member_id = request.match_info["community"], request.match_info["member"]
    if not moderator.may_see(community):
        raise web.HTTPNotFound()
    everything = await load_cases(dash.runtime.cases, moderator, CaseFilter(community=community, review="all"))
    involved = [c for c in everything if c.action == "end" and any(p.id == member_id for p in c.participants)]
    if not involved:
        raise web.HTTPNotFound()
    names = sorted({p.name for c in involved for p in c.participants if p.id == member_id})
    reviews = await dash.runtime.review.reviews(community, [c.case_id for c in involved])
    strikes = sum(counts_against(c) and reviews[c.case_id].outcome not in _STRUCK for c in involved)
    appeals = {c.case_id: [a for a in await dash.runtime.review.appeals_of(community, c.case_id)
                           if a.member_id == member_id] for c in involved}
    threads = {c.thread for c in involved}
    channels = {c.channel for c in involved}
    return page(dash, request, "member.html", community=community, member_id=member_id, names=names,
                cases=involved, reviews=reviews, appeals=appeals, repeat=strikes >= REPEAT_AT, strikes=strikes,
                threads=len(threads), channels=len(channels), states=ReviewState)
