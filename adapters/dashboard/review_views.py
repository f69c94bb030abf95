"""The review workflow's pages: the list of ended threads by review state (moderator actions nested
under their case), review actions, the appeals queue, and a member's record across threads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web

from adapters.dashboard.context import Dashboard, current_moderator, dashboard, moderator_author, page
from adapters.dashboard.query import CaseFilter, load_cases, page_of, visible_communities
from bot.errors import CaseNotFound
from bot.moderation import Conclusion, Decision, Take
from bot.review import OUTCOMES, Appeal, Review, ReviewState
from bot.types import Case

#: A member with at least this many abuse endings in a community (not reviewed as mistaken, not
#: reopened) is marked as a repeat.
REPEAT_AT = 2
MAX_NOTE = 2000
REOPENED_ALREADY = Decision.REOPENED.value


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
    """What one page of the list shows: its rows, how many there are in all, and the header counts."""

    rows: list[Row]
    counts: dict[str, int]
    flat: list[Case] | None = None  # set when the list shows moderator actions by themselves
    total: int = 0


async def repeats_among(dash: Dashboard, cases: Iterable[Case]) -> set[tuple[str, str]]:
    """(community, member id) of the participants of ``cases`` marked as a repeat, read from the members'
    end record (the one the community's repeat policy reads)."""
    members: dict[str, set[str]] = {}
    for case in cases:
        members.setdefault(case.community, set()).update(p.id for p in case.participants)
    found: set[tuple[str, str]] = set()
    for community, ids in members.items():
        standing = await dash.runtime.review.standing_ends(community, ids)
        found.update((community, m) for m, n in standing.items() if n >= REPEAT_AT)
    return found


async def _reviews_of(dash: Dashboard, cases: Iterable[Case]) -> dict[tuple[str, int], Review]:
    ends = [c for c in cases if c.action == "end"]
    found: dict[tuple[str, int], Review] = {}
    for community in {c.community for c in ends}:
        got = await dash.runtime.review.reviews(community, [c.case_id for c in ends if c.community == community])
        found.update({(community, n): r for n, r in got.items()})
    return found


async def _header(dash: Dashboard, communities: list[str], appeals: Counter[tuple[str, int]]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for community in communities:
        counts.update(await dash.runtime.store.case_index.review_counts(community))
    return {"unreviewed": counts["unreviewed"], "in_review": counts["in_review"], "reviewed": counts["reviewed"],
            "appeals": sum(appeals.values()), "risk": counts["risk"]}


async def _nested(dash: Dashboard, cases: list[Case]) -> dict[tuple[str, int], Case]:
    """The moderator actions filed on ``cases``, as summaries."""
    found: dict[tuple[str, int], Case] = {}
    for community in {c.community for c in cases}:
        numbers = [n for c in cases if c.community == community for n in c.actions]
        found.update({(community, a.case_id): a
                      for a in await dash.runtime.store.case_index.summaries(community, numbers)})
    return found


async def build_board(dash: Dashboard, request: web.Request, wanted: CaseFilter, offset: int, limit: int) -> Board:
    """The rows of ``wanted`` from ``offset`` (at most ``limit``), and the header counts over the moderator's
    communities (or the chosen one): read from the indexes, whatever the number of cases."""
    moderator = current_moderator(request)
    visible = await visible_communities(dash.runtime.cases, moderator)
    communities = [c for c in visible if not wanted.community or c == wanted.community]
    index = dash.runtime.store.case_index
    appeals = Counter((a.community, a.case_id) for a in await dash.runtime.review.open_appeals(visible))
    header = await _header(dash, communities, appeals)
    if wanted.action and wanted.action != "end":
        total, flat = await page_of(index, communities, wanted, wanted.action, offset, limit)
        return Board([], header, flat=flat, total=total)
    total, listed = await page_of(index, communities, wanted, "end", offset, limit)
    reviews = await _reviews_of(dash, listed)
    repeats = await repeats_among(dash, listed)
    nested = await _nested(dash, listed)
    rows = []
    for case in listed:
        actions = [nested[(case.community, n)] for n in case.actions if (case.community, n) in nested]
        repeat = {p.id for p in case.participants if (case.community, p.id) in repeats}
        rows.append(Row(case, reviews[(case.community, case.case_id)], actions,
                        appeals[(case.community, case.case_id)], repeat))
    return Board(rows, header, total=total)


async def case_review(dash: Dashboard, request: web.Request, case: Case) -> dict[str, Any]:
    """The review panel, appeals and repeat marks of one case page."""
    if case.action != "end":
        return {"review": None, "appeals": [], "repeat": set(), "outcomes": OUTCOMES}
    desk = dash.runtime.review
    repeats = await repeats_among(dash, [case])
    return {"review": await desk.review(case.community, case.case_id),
            "appeals": await desk.appeals_of(case.community, case.case_id),
            "repeat": {p.id for p in case.participants if (case.community, p.id) in repeats},
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
    REOPENED_ALREADY: "The thread was reopened already, so the ending can no longer be upheld; any appeal "
                      "on it is closed as reopened.",
}


async def review_action(request: web.Request, case: Case) -> str:
    """Carry out ``assign``, ``take`` or ``conclude`` on an ended-thread case; returns the flash key."""
    moderation = dashboard(request).runtime.moderation
    action = request.match_info["action"]
    if action in ("assign", "take"):
        result = await moderation.take(case.community, case.case_id, moderator_author(request),
                                       take_over=action == "take")
        return {Take.OK: "assigned", Take.TAKEN: "taken"}.get(result, "already_reviewed")
    form = await request.post()
    outcome = str(form.get("outcome", ""))
    if outcome not in ("upheld", "mistaken"):
        return "bad_outcome"
    note = str(form.get("note", "")).strip()[:MAX_NOTE] or None
    concluded = await moderation.conclude(case.community, case.case_id, outcome, moderator_author(request), note)
    return "concluded" if concluded is Conclusion.CONCLUDED else REOPENED_ALREADY


# --- appeals queue --------------------------------------------------------------------------------


async def appeals_page(request: web.Request) -> web.Response:
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
    decided: Decision = await dash.runtime.moderation.decide_appeal(
        community, case_id, request.match_info["member"], request.match_info["decision"], moderator_author(request))
    back = str((await request.post()).get("back", ""))
    target = f"/cases/{quote(community, safe='')}/{case_id}" if back == "case" else "/appeals"
    raise web.HTTPSeeOther(f"{target}?done={decided.value}")


# --- member record --------------------------------------------------------------------------------


async def member_page(request: web.Request) -> web.Response:
    dash, moderator = dashboard(request), current_moderator(request)
    community, member_id = request.match_info["community"], request.match_info["member"]
    if not moderator.may_see(community):
        raise web.HTTPNotFound()
    theirs = CaseFilter(community=community, action="end", participant=member_id, review="all")
    everything = await load_cases(dash.runtime.store.case_index, [community], theirs)
    involved = [c for c in everything if any(p.id == member_id for p in c.participants)]
    if not involved:
        raise web.HTTPNotFound()
    names = sorted({p.name for c in involved for p in c.participants if p.id == member_id})
    reviews = await dash.runtime.review.reviews(community, [c.case_id for c in involved])
    strikes = (await dash.runtime.review.standing_ends(community, [member_id])).get(member_id, 0)
    appeals = {c.case_id: [a for a in await dash.runtime.review.appeals_of(community, c.case_id)
                           if a.member_id == member_id] for c in involved}
    threads = {c.thread for c in involved}
    channels = {c.channel for c in involved}
    return page(dash, request, "member.html", community=community, member_id=member_id, names=names,
                cases=involved, reviews=reviews, appeals=appeals, repeat=strikes >= REPEAT_AT, strikes=strikes,
                threads=len(threads), channels=len(channels), states=ReviewState)
