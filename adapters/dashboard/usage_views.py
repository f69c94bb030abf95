"""The usage panel: model tokens and estimated cost per community and UTC day, for the communities the
moderator may see."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from adapters.dashboard.context import current_moderator, dashboard, page
from adapters.usage_cli import limits_today, prices_of
from bot.usage import DayUsage, Prices, TokenTotals

DAY_CHOICES = (7, 30, 90)


@dataclass
class CommunityUsage:
    community: str
    days: list[DayUsage]
    total: TokenTotals


def _days(request: web.Request, default: int) -> int:
    raw = request.query.get("days", "")
    return int(raw) if raw.isdigit() and int(raw) in DAY_CHOICES else default


async def usage_page(request: web.Request) -> web.Response:
    dash = dashboard(request)
    moderator = current_moderator(request)
    days = _days(request, dash.runtime.settings.ops.usage_days if dash.runtime.settings.ops.usage_days in DAY_CHOICES
                 else 30)
    ledger = dash.runtime.usage
    panels = []
    for community in moderator.visible(await ledger.communities()):
        rows = await ledger.days(community, days=days)
        total = TokenTotals()
        for row in rows:
            total.add(row.totals)
        panels.append(CommunityUsage(community, rows, total))
    prices: Prices = prices_of(dash.runtime)
    limits = await limits_today(dash.runtime, [p.community for p in panels])
    return page(dash, request, "usage.html", panels=panels, prices=prices, days=days, day_choices=DAY_CHOICES,
                limits=limits)


def add_usage_routes(app: web.Application) -> None:
    app.router.add_get("/usage", usage_page)
