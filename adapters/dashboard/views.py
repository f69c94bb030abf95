"""The dashboard's pages and actions. Every case lookup goes through ``_visible_case``: a moderator of
another community gets the same 404 as for a case that does not exist."""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from adapters.dashboard import export
from adapters.dashboard.chart import build_chart
from adapters.dashboard.context import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Dashboard,
    current_moderator,
    dashboard,
    session_token,
)
from adapters.dashboard.query import ACTIONS, PLATFORMS, REASONS, CaseFilter, load_cases, visible_communities
from adapters.usage_cli import prices_of
from bot.errors import CaseNotFound
from bot.store.retention import transcript_expired
from bot.types import CATEGORY_LABELS, Author, Case, Entry, EntryKind, ThreadRef, ThreadStatus

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


FILTERS: dict[str, Callable[..., object]] = {
    "when": _when,
    "category_label": _category_label,
    "safe_url": _safe_url,
}


def _moderator_author(request: web.Request) -> Author:
    moderator = current_moderator(request)
    return Author(f"dashboard:{moderator.name}", moderator.name)


def _page(dash: Dashboard, request: web.Request, template: str, *, status: int = 200,
          **context: object) -> web.Response:
    return dash.render(template, status=status, moderator=current_moderator(request),
                       csrf=dash.accounts.csrf_token(session_token(request)), **context)


# --- sign-in -----------------------------------------------------------------------------------------


def _login_page(request: web.Request, *, status: int = 200, error: str | None = None) -> web.Response:
    dash = dashboard(request)
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    response = dash.render("login.html", status=status, moderator=None, error=error,
                           csrf=dash.accounts.csrf_token(nonce, "login"))
    response.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="Strict", path="/login",
                        secure=dash.settings.cookie_secure, max_age=3600)
    return response


async def login_form(request: web.Request) -> web.Response:
    return _login_page(request)


async def login(request: web.Request) -> web.Response:
    dash = dashboard(request)
    form = await request.post()
    name, password = str(form.get("name", ""))[:100], str(form.get("password", ""))[:1000]
    moderator = await dash.accounts.authenticate(name, password, request.remote or "-")
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


async def _filtered(request: web.Request) -> tuple[CaseFilter, list[Case], list[str]]:
    dash, moderator = dashboard(request), current_moderator(request)
    wanted = CaseFilter.from_query(request.query)
    communities = await visible_communities(dash.runtime.cases, moderator)
    if wanted.community and not moderator.may_see(wanted.community):
        raise web.HTTPNotFound()
    return wanted, await load_cases(dash.runtime.cases, moderator, wanted), communities


async def case_list(request: web.Request) -> web.Response:
    dash = dashboard(request)
    wanted, found, communities = await _filtered(request)
    size = dash.settings.page_size
    pages = max(1, math.ceil(len(found) / size))
    try:
        page = min(max(1, int(request.query.get("page", "1"))), pages)
    except ValueError:
        page = 1
    query = wanted.as_query()

    def link(n: int) -> str:
        return "/cases?" + urlencode({**query, "page": n})

    return _page(dash, request, "cases.html", cases=found[(page - 1) * size:page * size], total=len(found),
                 page=page, pages=pages, prev_link=link(page - 1) if page > 1 else None,
                 next_link=link(page + 1) if page < pages else None, filters=wanted,
                 export_query=urlencode(query), communities=communities, platforms=PLATFORMS,
                 reasons=REASONS, actions=ACTIONS, categories=CATEGORY_LABELS)


async def export_cases(request: web.Request) -> web.Response:
    _, found, _ = await _filtered(request)
    fmt = request.match_info["fmt"]
    stamp = datetime.now(tz=UTC).strftime("%Y%m%d-%H%M%S")
    body, kind = (export.to_jsonl(found), "application/x-ndjson") if fmt == "jsonl" else \
        (export.to_csv(found), "text/csv")
    return web.Response(text=body, content_type=kind, charset="utf-8", headers={
        "Content-Disposition": f'attachment; filename="threadguard-cases-{stamp}.{fmt}"'})


async def chart(request: web.Request) -> web.Response:
    dash = dashboard(request)
    wanted, found, communities = await _filtered(request)
    return _page(dash, request, "chart.html", chart=build_chart(found), filters=wanted,
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
        status = (await dash.runtime.engine.thread_state(ThreadRef.from_key(case.thread))).status.value
    except ValueError:
        status = None
    usage = await dash.runtime.usage.case(case.community, case.case_id)
    return _page(dash, request, "case.html", case=case, rows=_marked(case.transcript), actions=actions,
                 usage=usage, prices=prices_of(dash.runtime),
                 thread_status=status, ended=status == ThreadStatus.ENDED.value,
                 expired=transcript_expired(case), flash=FLASH.get(request.query.get("done", "")),
                 markers=MARKERS)


async def case_action(request: web.Request) -> web.Response:
    dash = dashboard(request)
    case = await _visible_case(request)
    action = request.match_info["action"]
    form = await request.post()
    note = str(form.get("note", "")).strip()
    here = f"/cases/{case.community}/{case.case_id}"
    moderator = _moderator_author(request)
    if action in ("reopen", "mistaken") and case.action != "end":
        done = "not_end_case"
    elif action == "reopen":
        outcome = await dash.runtime.engine.reopen(case.community, case.case_id, moderator)
        if outcome.action is not None:
            await dash.notifier.notify("reopen", outcome, case.case_id)
            done = "reopened"
        else:
            done = "not_ended"
    elif action == "note":
        if not note or len(note) > MAX_NOTE:
            done = "note_empty"
        else:
            await dash.runtime.cases.add_action(case.community, case.case_id, "note", moderator, note)
            done = "noted"
    else:
        await dash.runtime.cases.add_action(case.community, case.case_id, "mistaken", moderator,
                                            note[:MAX_NOTE] or "Marked as a mistaken ending.")
        done = "marked"
    raise web.HTTPSeeOther(f"{here}?done={done}")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", home)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/cases", case_list)
    app.router.add_get("/cases/{community}/{case_id:\\d+}", case_page)
    app.router.add_post("/cases/{community}/{case_id:\\d+}/{action:reopen|note|mistaken}", case_action)
    app.router.add_get("/export.{fmt:jsonl|csv}", export_cases)
    app.router.add_get("/chart", chart)
