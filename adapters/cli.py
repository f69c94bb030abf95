"""The ``threadguard`` command: one entry point for every run mode and the moderators' CLI."""

from __future__ import annotations

import json
from typing import Any

import click

from adapters.runner import run_with_runtime
from bot.bootstrap import Runtime
from bot.casefile import render_case_text
from bot.types import Case
from config.settings import Settings

#: Commands defined in ``adapters.dashboard.cli`` (and ``adapters.usage_cli``, ``tools.eval.cli``), imported
#: only when used.
_DASHBOARD_COMMANDS = ("dashboard", "purge", "forget-user", "forget-community", "moderator")
_DASHBOARD_CASE_COMMANDS = ("export",)

#: Control characters (C0 but newline and tab, DEL, C1) and the line and paragraph separators, as visible
#: escapes: case texts are written by members and the model, and a terminal would act on them (colours,
#: titles, a carriage return that hides a line). In JSON output they only occur inside strings, where
#: ``\uXXXX`` means the same character.
_TERMINAL_SAFE = {c: f"\\u{c:04x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029)
                  if c not in (0x09, 0x0A)}


def _echo(text: str) -> None:
    click.echo(text.translate(_TERMINAL_SAFE))


class _LazyGroup(click.Group):
    """A group some of whose commands live in modules that are imported only when one of them runs."""

    def __init__(self, *args: Any, lazy: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            if cmd_name == "eval":
                _register_eval()
            else:
                _register_dashboard()
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, lazy=(*_DASHBOARD_COMMANDS, "eval"))
def main() -> None:
    """threadguard: a Claude chat bot for community threads that ends abuse only as a last resort."""


def _allowances(command: str, *, needs_model: bool, demo: bool, embedded_store: bool) -> list[str]:
    """Refuse to serve real members without Redis or Claude unless the admin asked for it explicitly."""
    from adapters.ops import production_gaps, refusal

    missing, names = production_gaps(Settings(), needs_model=needs_model)
    allowed = {"embedded_store": embedded_store, "demo_model": demo}
    unallowed = [m for m in missing if not allowed[m.allowance]]
    if unallowed:
        raise click.ClickException(refusal(command, unallowed))
    return names


_demo_option = click.option("--demo", is_flag=True,
                            help="Allow running without ANTHROPIC_API_KEY: answers come from the offline demo model.")
_embedded_option = click.option("--embedded-store", is_flag=True,
                                help="Allow running without REDIS_URL: state lives in process memory, lost at restart.")


@main.command()
@click.option("--community", default="local", show_default=True, help="Community id whose settings apply.")
def console(community: str) -> None:
    """Chat with the bot in this terminal (reads one message per line when stdin is not a terminal)."""
    from adapters.console.app import run_console

    code = run_with_runtime(lambda rt: run_console(rt, community=community), quiet=True)
    raise SystemExit(code)


@main.group(cls=_LazyGroup, lazy=_DASHBOARD_CASE_COMMANDS)
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
@_demo_option
@_embedded_option
def discord(demo: bool, embedded_store: bool) -> None:
    """Run the Discord bot (needs DISCORD_TOKEN, REDIS_URL and ANTHROPIC_API_KEY)."""
    allowances = _allowances("discord", needs_model=True, demo=demo, embedded_store=embedded_store)
    from adapters.discord.app import run_discord
    from adapters.metrics import PrometheusMetrics
    from adapters.ops import serve_operated

    metrics = PrometheusMetrics()
    run_with_runtime(lambda rt: serve_operated(rt, metrics, allowances,
                                               lambda _: run_discord(rt.settings, runtime=rt), needs_model=True),
                     quiet=False, metrics=metrics)


@main.command()
@click.option("--http", "http_port", type=int, default=None,
              help="Serve the HTTP events endpoint on this port instead of Socket Mode.")
@_demo_option
@_embedded_option
def slack(http_port: int | None, demo: bool, embedded_store: bool) -> None:
    """Run the Slack bot (Socket Mode by default; needs SLACK_BOT_TOKEN and SLACK_APP_TOKEN, REDIS_URL and
    ANTHROPIC_API_KEY)."""
    allowances = _allowances("slack", needs_model=True, demo=demo, embedded_store=embedded_store)
    from adapters.metrics import PrometheusMetrics
    from adapters.ops import serve_operated
    from adapters.slack.app import run_slack

    metrics = PrometheusMetrics()
    run_with_runtime(lambda rt: serve_operated(
        rt, metrics, allowances, lambda _: run_slack(rt.settings, http_port=http_port, runtime=rt), needs_model=True),
        quiet=False, metrics=metrics)


@main.command()
@click.option("--community", default=None, help="Only this community.")
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 400), help="UTC days back from today.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per community and day, one per line.")
def usage(community: str | None, days: int, as_json: bool) -> None:
    """Model tokens and estimated cost per community and UTC day."""
    from adapters.usage_cli import show_usage

    show_usage(community, days, as_json)


_registered = False


def _register_dashboard() -> None:
    global _registered
    if _registered:
        return
    _registered = True
    from adapters.dashboard.cli import register

    register(main, cases)


def _register_eval() -> None:
    from tools.eval.cli import register

    if "eval" not in main.commands:
        register(main)
