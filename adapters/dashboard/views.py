"""The dashboard's pages and actions. Every case lookup goes through ``_visible_case``: a moderator of
another community gets the same 404 as for a case that does not exist."""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from markupsafe import Markup

from adapters.dashboard import export, review_views
from adapters.dashboard.auth import client_address
from adapters.dashboard.chart import build_chart
from adapters.dashboard.context import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    current_moderator,
    dashboard,
    moderator_author,
    page,
    session_token,
)
from adapters.dashboard.query import (
    ACTIONS,
    PLATFORMS,
    REASONS,
    REVIEW_VIEWS,
    CaseFilter,
    load_cases,
    visible_communities,
)
from adapters.usage_cli import prices_of
from bot.errors import CaseNotFound
from bot.moderation import Conclusion
from bot.participants import role_label
from bot.store.retention import transcript_expired
from bot.types import CATEGORY_LABELS, Case, Entry, EntryKind, ThreadRef, ThreadStatus

log = logging.getLogger(__name__)

MAX_NOTE = 2000
ERROR_TEXT = {
    403: "You are not allowed to do that. Sign in again and retry from the dashboard.",
    404: "There is no such page or case among the communities you moderate.",
    405: "That request is not supported here.",
    413: "That request is too large.",
}
FLASH = {
    "reopened": "The thread was reopened; its members were told.",
    "not_ended": "The thread is not ended any more (already reopened or expired); nothing changed.",
    "noted": "Your note was added to the case.",
    "marked": "The ending was marked as mistaken.",
    "note_empty": "Write a note first (at most 2000 characters).",
    "not_end_case": "Only an ended-thread case can be reopened or marked as mistaken.",
}
MARKERS = {
    EntryKind.REDIRECTION: "Redirection",
    EntryKind.WARNING: "Warning",
    EntryKind.RISK: "Risk flag",
    EntryKind.CRISIS: "Crisis resources",
    EntryKind.REFUSAL: "API refusal",
    EntryKind.END: "End",
    EntryKind.REOPEN: "Reopened",
    EntryKind.BRANCH: "Branch",
    EntryKind.NOTICE: "Notice",
}


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _safe_url(url: str | None) -> str | None:
    """Only http(s) links are rendered as links (a ``javascript:`` jump URL stays inert text)."""
    if not url:
        return None
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def _category_label(category: str | None) -> str:
    return CATEGORY_LABELS.get(category or "", category or "-")


def _epoch(value: object) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def _utc(value: object) -> str:
    """An ISO string or epoch seconds as ``2026-12-01 22:10 UTC``."""
    epoch = _epoch(value)
    return "-" if epoch is None else datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _age(value: object) -> str:
    """How long ago, the way members see it on Discord and Slack (``5 min ago``, ``3 days ago``)."""
    epoch = _epoch(value)
    if epoch is None:
        return ""
    seconds = max(0, int(datetime.now(tz=UTC).timestamp() - epoch))
    for unit, size in (("day", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''} ago"
    return "just now"


def _bdi(value: object) -> Markup:
    """A member-supplied string isolated from the text around it (a right-to-left override in a name
    stays inside the name), escaped."""
    return Markup("<bdi>{}</bdi>").format("" if value is None else str(value))


FILTERS: dict[str, Callable[..., object]] = {
    "utc": _utc,
    "age": _age,
    "bdi": _bdi,
    "when": _when,
    "category_label": _category_label,
    "safe_url": _safe_url,
    "role_label": role_label,
}


_untrusted_forwarding_logged = False


def _client(request: web.Request) -> str:
    """The sign-in's client address (``X-Forwarded-For`` only from ``DASHBOARD_TRUSTED_PROXIES``)."""
    global _untrusted_forwarding_logged
    dash = dashboard(request)
    forwarded = request.headers.get("X-Forwarded-For")
    client = client_address(request.remote, forwarded, dash.settings.trusted_proxies)
    if forwarded and client == (request.remote or "-") and not _untrusted_forwarding_logged:
        _untrusted_forwarding_logged = True
        log.warning("sign-in with X-Forwarded-For from %s, which is not a trusted proxy: the header is ignored "
                    "(set DASHBOARD_TRUSTED_PROXIES if a proxy of yours sits in front)", request.remote)
    return client


# --- sign-in -----------------------------------------------------------------------------------------


def _login_page(request: web.Request, *, status: int = 200, error: str | None = None) -> web.Response:
    dash = dashboard(request)
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    response = dash.render("login.html", status=status, moderator=None, error=error,
                           csrf=dash.accounts.csrf_token(nonce, "login"), providers=list(dash.providers.values()),
                           passwords=dash.passwords, next=request.query.get("next", ""))
    response.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="Strict", path="/login",
                        secure=dash.settings.cookie_secure, max_age=3600)
    return response


async def login_form(request: web.Request) -> web.Response:
    return _login_page(request)


async def login(request: web.Request) -> web.Response:
    dash = dashboard(request)
    if not dash.passwords:
        raise web.HTTPForbidden()
    form = await request.post()
    name, password = str(form.get("name", ""))[:100], str(form.get("password", ""))[:1000]
    moderator = await dash.accounts.authenticate(name, password, _client(request))
    if moderator is None:
        return _login_page(request, status=401, error="Wrong name or password, or too many attempts.")
    token = await dash.accounts.open_session(moderator)
    response = web.HTTPSeeOther("/cases")
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict", path="/",
                        secure=dash.settings.cookie_secure, max_age=dash.accounts.session_ttl_s)
    response.del_cookie(LOGIN_COOKIE, path="/login")
    raise response


async def logout(request: web.Request) -> web.Response:
    await dashboard(request).accounts.close_session(session_token(request))
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


async def home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/cases")


# --- list, export, chart ---------------------------------------------------------------------------


async def _wanted(request: web.Request) -> tuple[CaseFilter, list[str]]:
    dash, moderator = dashboard(request), current_moderator(request)
    wanted = CaseFilter.from_query(request.query)
    communities = await visible_communities(dash.runtime.cases, moderator)
    if wanted.community and not moderator.may_see(wanted.community):
        raise web.HTTPNotFound()
    return wanted, communities


async def _filtered(request: web.Request) -> tuple[CaseFilter, list[Case], list[str]]:
    wanted, communities = await _wanted(request)
    dash = dashboard(request)
    return wanted, await load_cases(dash.runtime.store.case_index, communities, wanted), communities


def _page_number(request: web.Request) -> int:
    try:
        return max(1, int(request.query.get("page", "1")))
    except ValueError:
        return 1


async def case_list(request: web.Request) -> web.Response:
    dash = dashboard(request)
    wanted, communities = await _wanted(request)
    size = dash.settings.page_size
    page_no = _page_number(request)
    board = await review_views.build_board(dash, request, wanted, (page_no - 1) * size, size)
    pages = max(1, math.ceil(board.total / size))
    if page_no > pages:  # past the last page: the last page
        page_no = pages
        board = await review_views.build_board(dash, request, wanted, (page_no - 1) * size, size)
    query = wanted.as_query()
    if wanted.review == "awaiting":
        query["review"] = "awaiting"

    def link(n: int) -> str:
        return "/cases?" + urlencode({**query, "page": n})

    return page(dash, request, "cases.html", rows=board.rows if board.flat is None else [],
                 flat=board.flat, total=board.total, counts=board.counts,
                 page=page_no, pages=pages, prev_link=link(page_no - 1) if page_no > 1 else None,
                 next_link=link(page_no + 1) if page_no < pages else None, filters=wanted,
                 export_query=urlencode(query), communities=communities, platforms=PLATFORMS,
                 reasons=REASONS, actions=ACTIONS, categories=CATEGORY_LABELS, review_views=REVIEW_VIEWS)


#: Cases an export reads at a time (it writes them out before it reads on).
EXPORT_BATCH = 200


async def export_cases(request: web.Request) -> web.StreamResponse:
    """The list's cases (every page), streamed: cases with transcripts are read a batch at a time."""
    dash = dashboard(request)
    wanted, _ = await _wanted(request)
    fmt = request.match_info["fmt"]
    stamp = datetime.now(tz=UTC).strftime("%Y%m%d-%H%M%S")
    response = web.StreamResponse(headers={
        "Content-Type": f"{'application/x-ndjson' if fmt == 'jsonl' else 'text/csv'}; charset=utf-8",
        "Content-Disposition": f'attachment; filename="threadguard-cases-{stamp}.{fmt}"'})
    with_actions = request.query.get("actions") == "1"
    index = dash.runtime.store.case_index
    offset, started = 0, False
    while True:
        board = await review_views.build_board(dash, request, wanted, offset, EXPORT_BATCH)
        listed = board.flat if board.flat is not None else \
            [c for row in board.rows for c in ([row.case, *row.actions] if with_actions else [row.case])]
        whole = [case for community in dict.fromkeys(c.community for c in listed)
                 for case in await index.full_cases(community, [c.case_id for c in listed if c.community == community])]
        by_key = {(c.community, c.case_id): c for c in whole}
        found = [by_key.get((c.community, c.case_id), c) for c in listed]
        if not started:
            await response.prepare(request)
            started = True
            if fmt == "csv":
                await response.write(export.csv_header().encode())
        await response.write((export.to_jsonl(found) if fmt == "jsonl" else export.csv_rows(found)).encode())
        offset += EXPORT_BATCH
        if offset >= board.total:
            break
    await response.write_eof()
    return response


async def chart(request: web.Request) -> web.Response:
    dash = dashboard(request)
    wanted, found, communities = await _filtered(request)
    return page(dash, request, "chart.html", chart=build_chart(found), filters=wanted,
                 communities=communities, platforms=PLATFORMS, categories=CATEGORY_LABELS,
                 query=urlencode(wanted.as_query()))


# --- one case --------------------------------------------------------------------------------------


async def _visible_case(request: web.Request) -> Case:
    dash, moderator = dashboard(request), current_moderator(request)
    community = request.match_info["community"]
    if not moderator.may_see(community):
        raise web.HTTPNotFound()
    try:
        return await dash.runtime.cases.get(community, int(request.match_info["case_id"]))
    except (CaseNotFound, ValueError):
        raise web.HTTPNotFound() from None


def _marked(transcript: list[Entry]) -> list[tuple[Entry, str | None]]:
    """Each entry with its ladder marker (redirections are numbered)."""
    rows: list[tuple[Entry, str | None]] = []
    redirections = 0
    for entry in transcript:
        marker = MARKERS.get(entry.kind)
        if entry.kind is EntryKind.REDIRECTION:
            redirections += 1
            marker = f"Redirection {redirections}"
        rows.append((entry, marker))
    return rows


async def case_page(request: web.Request) -> web.Response:
    dash = dashboard(request)
    case = await _visible_case(request)
    actions = []
    for number in case.actions:
        try:
            actions.append(await dash.runtime.cases.get(case.community, number))
        except CaseNotFound:
            continue
    status = None
    try:
        status = (await dash.runtime.member_actions.thread_state(ThreadRef.from_key(case.thread))).status.value
    except ValueError:
        status = None
    usage = await dash.runtime.usage.case(case.community, case.case_id)
    done = request.query.get("done", "")
    review = await review_views.case_review(dash, request, case)
    return page(dash, request, "case.html", case=case, rows=_marked(case.transcript), actions=actions,
                 usage=usage, prices=prices_of(dash.runtime),
                 thread_status=status, ended=status == ThreadStatus.ENDED.value,
                 expired=transcript_expired(case), flash=FLASH.get(done) or review_views.REVIEW_FLASH.get(done),
                 markers=MARKERS, **review)


async def case_action(request: web.Request) -> web.Response:
    dash = dashboard(request)
    case = await _visible_case(request)
    action = request.match_info["action"]
    form = await request.post()
    note = str(form.get("note", "")).strip()
    here = f"/cases/{case.community}/{case.case_id}"
    moderator = moderator_author(request)
    moderation = dash.runtime.moderation
    if action in ("reopen", "mistaken", "assign", "take", "conclude") and case.action != "end":
        done = "not_end_case"
    elif action in ("assign", "take", "conclude"):
        done = await review_views.review_action(request, case)
    elif action == "reopen":
        outcome = await moderation.reopen(case.community, case.case_id, moderator)
        if outcome.action is not None:
            await dash.notifier.notify("reopen", outcome, case.case_id)
            done = "reopened"
        else:
            done = "not_ended"
    elif action == "note":
        if not note or len(note) > MAX_NOTE:
            done = "note_empty"
        else:
            await moderation.note(case.community, case.case_id, moderator, note)
            done = "noted"
    else:
        concluded = await moderation.conclude(case.community, case.case_id, "mistaken", moderator,
                                              note[:MAX_NOTE] or None)
        done = "marked" if concluded is Conclusion.CONCLUDED else review_views.REOPENED_ALREADY
    raise web.HTTPSeeOther(f"{here}?done={done}")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", home)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/cases", case_list)
    app.router.add_get("/cases/{community}/{case_id:\\d+}", case_page)
    app.router.add_post("/cases/{community}/{case_id:\\d+}/{action:reopen|note|mistaken|assign|take|conclude}",
                        case_action)
    app.router.add_get("/appeals", review_views.appeals_page)
    app.router.add_post("/appeals/{community}/{case_id:\\d+}/{member}/{decision:uphold|reopen}",
                        review_views.decide_appeal)
    app.router.add_get("/members/{community}/{member}", review_views.member_page)
    app.router.add_get("/export.{fmt:jsonl|csv}", export_cases)
    app.router.add_get("/chart", chart)
