"""The ``threadguard`` command: one entry point for every run mode and the moderators' CLI."""

from __future__ import annotations

import json
from typing import Any

import click

from adapters.runner import run_with_runtime
from bot.bootstrap import Runtime
from bot.casefile import render_case_text
from bot.types import Case

#: Control characters (C0 but newline and tab, DEL, C1) and the line and paragraph separators, as visible
#: escapes: case texts are written by members and the model, and a terminal would act on them (colours,
#: titles, a carriage return that hides a line). In JSON output they only occur inside strings, where
#: ``\uXXXX`` means the same character.
_TERMINAL_SAFE = {c: f"\\u{c:04x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029)
                  if c not in (0x09, 0x0A)}


def _echo(text: str) -> None:
    click.echo(text.translate(_TERMINAL_SAFE))


@click.group()
def main() -> None:
    """threadguard: a Claude chat bot for community threads that ends abuse only as a last resort."""


@main.command()
@click.option("--community", default="local", show_default=True, help="Community id whose settings apply.")
def console(community: str) -> None:
    """Chat with the bot in this terminal (reads one message per line when stdin is not a terminal)."""
    from adapters.console.app import run_console

    code = run_with_runtime(lambda rt: run_console(rt, community=community), quiet=True)
    raise SystemExit(code)


@main.group()
def cases() -> None:
    """Moderator cases: every ended thread and every moderator action."""


def _case_summary(case: Case) -> dict[str, Any]:
    return case.to_dict()


@cases.command("list")
@click.option("--community", default=None, help="Only this community's cases.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per case, one per line.")
def list_cases(community: str | None, limit: int, as_json: bool) -> None:
    """List cases, newest first."""
    found = run_with_runtime(lambda rt: rt.cases.list(community, limit=limit), quiet=True)
    if as_json:
        for case in found:
            _echo(json.dumps(_case_summary(case), ensure_ascii=False))
        return
    if not found:
        click.echo("No cases.")
        return
    for c in found:
        _echo(f"#{c.case_id:<5} {c.community:<20} {c.platform:<8} {c.action:<9} {c.reason or '-':<17} "
                   f"{c.category or '-':<26} {c.ended_at}")


@cases.command("show")
@click.argument("case_id", type=int)
@click.option("--community", default=None, help="Community of the case (needed when there are several).")
@click.option("--json", "as_json", is_flag=True, help="The case as one JSON object.")
def show_case(case_id: int, community: str | None, as_json: bool) -> None:
    """Show one case with its transcript and ladder timeline."""

    async def fetch(rt: Runtime) -> Case:
        chosen = community
        if chosen is None:
            known = await rt.cases.communities()
            if len(known) > 1:
                raise click.UsageError(f"several communities have cases ({', '.join(known)}): pass --community")
            chosen = known[0] if known else "local"
        return await rt.cases.get(chosen, case_id)

    case = run_with_runtime(fetch, quiet=True)
    _echo(json.dumps(_case_summary(case), ensure_ascii=False, indent=2) if as_json else render_case_text(case))


@main.command()
def discord() -> None:
    """Run the Discord bot (needs DISCORD_TOKEN)."""
    from adapters.discord.app import run_discord

    run_with_runtime(lambda rt: run_discord(rt.settings, runtime=rt), quiet=False)


@main.command()
@click.option("--http", "http_port", type=int, default=None,
              help="Serve the HTTP events endpoint on this port instead of Socket Mode.")
def slack(http_port: int | None) -> None:
    """Run the Slack bot (Socket Mode by default; needs SLACK_BOT_TOKEN and SLACK_APP_TOKEN)."""
    from adapters.slack.app import run_slack

    run_with_runtime(lambda rt: run_slack(rt.settings, http_port=http_port, runtime=rt), quiet=False)


def _register_optional() -> None:
    try:
        from adapters.dashboard.cli import register
    except ImportError:  # pragma: no cover - the dashboard package is part of the distribution
        return
    register(main, cases)


_register_optional()


def _register_eval() -> None:
    from adapters.eval.cli import register

    register(main)


_register_eval()
