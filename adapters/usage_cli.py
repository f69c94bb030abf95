"""``threadguard usage``: model tokens and estimated cost per community and UTC day."""

from __future__ import annotations

import json

import click

from adapters.runner import run_with_runtime
from bot.bootstrap import Runtime, prices
from bot.limits import LimitRow, limit_rows
from bot.usage import DayUsage, Prices, TokenTotals, day_of


def prices_of(runtime: Runtime) -> Prices:
    return prices(runtime.settings)


async def collect(runtime: Runtime, community: str | None, days: int) -> list[DayUsage]:
    """Rows newest day first, communities in name order within a day."""
    names = [community] if community else await runtime.usage.communities()
    rows = [row for name in names for row in await runtime.usage.days(name, days=days)]
    rows.sort(key=lambda r: r.community)
    rows.sort(key=lambda r: r.day, reverse=True)
    return rows


def row_dict(row: DayUsage, prices: Prices) -> dict[str, object]:
    return {"community": row.community, "day": row.day, **row.totals.as_dict(),
            "cost_usd": round(prices.cost(row.totals), 6),
            "uncached_cost_usd": round(prices.uncached_cost(row.totals), 6)}


async def limits_today(runtime: Runtime, communities: list[str]) -> dict[str, list[LimitRow]]:
    """Each community's limits beside today's use, for those that have limits."""
    today = day_of(runtime.engine.limiter.clock.now())
    shown = {}
    for name in communities:
        config = runtime.communities.get(name)
        if not config.limits.any:
            continue
        rows = await runtime.usage.days(name, days=1, until=runtime.engine.limiter.clock.now())
        totals = next((r.totals for r in rows if r.day == today), TokenTotals())
        shown[name] = limit_rows(config, totals, await runtime.usage.members_day(name, today), prices_of(runtime))
    return shown


def show_usage(community: str | None, days: int, as_json: bool) -> None:
    async def go(rt: Runtime) -> tuple[list[DayUsage], Prices, bool, dict[str, list[LimitRow]]]:
        rows = await collect(rt, community, days)
        names = sorted({r.community for r in rows} | ({community} if community else set(rt.communities.known())))
        return rows, prices_of(rt), rt.embedded_store, await limits_today(rt, names)

    rows, prices, embedded, limits = run_with_runtime(go)
    if embedded:
        click.echo("Note: no REDIS_URL is set, so this read an empty in-process store.", err=True)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row_dict(row, prices)))
        return
    if not rows:
        click.echo("No model usage recorded.")
        return
    header = f"{'day':<10}  {'community':<20} {'turns':>6} {'calls':>6} {'input':>10} {'output':>10} " \
             f"{'cache write':>12} {'cache read':>12} {'cost USD':>10}"
    click.echo(header)
    total = TokenTotals()
    for row in rows:
        t = row.totals
        total.add(t)
        click.echo(f"{row.day:<10}  {row.community[:20]:<20} {t.turns:>6} {t.calls:>6} {t.input:>10} {t.output:>10} "
                   f"{t.cache_write:>12} {t.cache_read:>12} {prices.cost(t):>10.4f}")
    click.echo(f"{'total':<10}  {'':<20} {total.turns:>6} {total.calls:>6} {total.input:>10} {total.output:>10} "
               f"{total.cache_write:>12} {total.cache_read:>12} {prices.cost(total):>10.4f}")
    for name, lines in limits.items():
        click.echo(f"Limits of {name} today (UTC):")
        for line in lines:
            click.echo(f"  {line.name:<32} {line.limit:<22} used: {line.used}")
    click.echo(f"Prices (USD per million tokens): input {prices.input}, output {prices.output}, cache write "
               f"{prices.cache_write}, cache read {prices.cache_read} (THREADGUARD_PRICE_*).", err=True)
