"""The moderators' commands: ``dashboard``, ``cases export``, ``purge``, ``forget-user`` and ``moderator``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TypeVar

import click

from adapters.dashboard import export
from adapters.dashboard.auth import AccountError, Accounts, Moderator
from adapters.dashboard.query import CaseFilter, load_cases, visible_communities
from adapters.runner import run_with_runtime, setup_logging
from bot.bootstrap import Runtime
from bot.errors import ThreadguardError
from bot.store.retention import Retention, parse_user
from bot.types import Case
from config.settings import Settings

T = TypeVar("T")
ADMIN = Moderator("cli", frozenset(), admin=True)


def _retention(runtime: Runtime) -> Retention:
    store = runtime.settings.store
    return Retention(runtime.redis, case_retention_days=store.case_retention_days, idle_ttl_days=store.idle_ttl_days)


def _accounts(runtime: Runtime) -> Accounts:
    return Accounts(runtime.redis, secret=b"")  # account management opens no sessions


def _warn_embedded(runtime: Runtime) -> None:
    if runtime.embedded_store:
        click.echo("Note: no REDIS_URL is set, so this ran on an empty in-process store.", err=True)


def register(main: click.Group, cases: click.Group) -> None:
    """Add the moderators' commands to the ``threadguard`` command."""

    @main.command()
    @click.option("--host", default=None, help="Address to listen on (default DASHBOARD_HOST or 127.0.0.1).")
    @click.option("--port", default=None, type=int, help="Port (default DASHBOARD_PORT or 8080).")
    @click.option("--embedded-store", is_flag=True,
                  help="Allow running without REDIS_URL: an empty in-process store, lost at restart.")
    def dashboard(host: str | None, port: int | None, embedded_store: bool) -> None:
        """Serve the moderators' web dashboard (needs DASHBOARD_SESSION_SECRET and REDIS_URL)."""
        from pydantic import ValidationError

        from adapters.dashboard.app import run_dashboard
        from adapters.metrics import PrometheusMetrics
        from adapters.ops import production_gaps, refusal, serve_operated
        from bot.bootstrap import build_runtime
        from config.dashboard import DashboardSettings

        missing, allowances = production_gaps(Settings(), needs_model=False)
        if missing and not embedded_store:
            raise click.ClickException(refusal("dashboard", missing))

        try:
            dash = DashboardSettings()  # type: ignore[call-arg]
        except ValidationError as exc:
            fields = ", ".join(f"DASHBOARD_{str(e['loc'][0]).upper()}" for e in exc.errors() if e["loc"])
            raise click.ClickException(f"invalid or missing dashboard settings: {fields}") from None
        settings = Settings()
        setup_logging(settings)

        async def serve() -> None:
            metrics = PrometheusMetrics()
            runtime = build_runtime(settings, metrics=metrics)
            try:
                await serve_operated(runtime, metrics, allowances, lambda _: run_dashboard(
                    settings, host or dash.host, port or dash.port, runtime=runtime))
            finally:
                await runtime.aclose()

        try:
            asyncio.run(serve())
        except ThreadguardError as exc:
            raise click.ClickException(exc.user_message) from exc
        except KeyboardInterrupt:
            raise SystemExit(0) from None

    @cases.command("export")
    @click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
    @click.option("--community", default="", help="Only this community's cases.")
    @click.option("--since", default="", help="Only cases from this day on (YYYY-MM-DD, UTC).")
    @click.option("--until", default="", help="Only cases up to this day (YYYY-MM-DD, UTC).")
    @click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Write to this file instead of standard output.")
    def export_cases(fmt: str, community: str, since: str, until: str, output: Path | None) -> None:
        """Export cases (newest first) as JSON lines (with transcripts) or CSV (one row per case)."""
        wanted = CaseFilter.from_query({"community": community, "since": since, "until": until})
        async def read(rt: Runtime) -> list[Case]:
            communities = await visible_communities(rt.cases, ADMIN)
            return await load_cases(rt.store.case_index, communities, wanted, full=True)

        found = run_with_runtime(read)
        text = export.to_jsonl(found) if fmt == "jsonl" else export.to_csv(found)
        if output is None:
            sys.stdout.write(text)
        else:
            output.write_text(text, encoding="utf-8")
            click.echo(f"Wrote {len(found)} cases to {output}.", err=True)

    @main.command()
    def purge() -> None:
        """Apply the retention periods now (THREADGUARD_CASE_RETENTION_DAYS, THREADGUARD_IDLE_TTL_DAYS)."""

        async def go(rt: Runtime) -> str:
            _warn_embedded(rt)
            report = await _retention(rt).purge()
            return (f"Expired {report.transcripts_expired} case transcripts, deleted {report.threads_deleted} "
                    f"old conversations, set {report.ttls_set} missing expiries.")

        click.echo(run_with_runtime(go))

    @main.command("forget-user")
    @click.argument("user")
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    def forget_user(user: str, yes: bool) -> None:
        """Remove USER's (PLATFORM:USER_ID) messages and name from every case and conversation."""
        try:
            platform, user_id = parse_user(user)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="USER") from None
        if not yes:
            click.confirm(f"Replace every message of {platform} user {user_id} in cases and conversations?",
                          abort=True)

        async def go(rt: Runtime) -> str:
            _warn_embedded(rt)
            r = await _retention(rt).forget_user(platform, user_id)
            return (f"Removed {r.case_entries} entries in {r.cases_changed} cases, {r.log_entries} messages in "
                    f"{r.threads_changed} conversations, {r.pending_changed} unfiled cases and "
                    f"{r.waiting_changed} messages waiting to be answered.")

        click.echo(run_with_runtime(go))

    @main.command("forget-community")
    @click.argument("community")
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    def forget_community_command(community: str, yes: bool) -> None:
        """Delete every case and conversation of COMMUNITY (a Slack team id, a Discord guild id), e.g. a
        workspace that uninstalled the app."""
        from bot.store.forget_community import forget_community

        if not yes:
            click.confirm(f"Delete every case and conversation of community {community}?", abort=True)

        async def go(rt: Runtime) -> str:
            _warn_embedded(rt)
            try:
                r = await forget_community(rt.redis, community)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="COMMUNITY") from None
            return f"Deleted {r.cases} cases and {r.threads} conversations of {community} ({r.keys_deleted} keys)."

        click.echo(run_with_runtime(go))

    @main.group()
    def moderator() -> None:
        """Dashboard accounts (stored hashed in Redis)."""

    @moderator.command("add")
    @click.argument("name")
    @click.option("--community", "communities", multiple=True, help="A community this moderator sees (repeat).")
    @click.option("--admin", is_flag=True, help="Sees every community.")
    @click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
    def add_moderator(name: str, communities: tuple[str, ...], admin: bool, password_stdin: bool) -> None:
        """Create or replace the dashboard account NAME."""
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)

        async def go(rt: Runtime) -> None:
            _warn_embedded(rt)
            await _accounts(rt).add(name, password, communities, admin=admin)

        try:
            run_with_runtime(go)
        except AccountError as exc:
            raise click.ClickException(str(exc)) from None
        scope = "every community" if admin else ", ".join(sorted(set(communities)))
        click.echo(f"Moderator {name} can now sign in ({scope}).")

    @moderator.command("remove")
    @click.argument("name")
    def remove_moderator(name: str) -> None:
        """Delete the dashboard account NAME."""
        removed = run_with_runtime(lambda rt: _accounts(rt).remove(name))
        click.echo(f"Removed {name}." if removed else f"No account named {name}.")

    @moderator.command("list")
    def list_moderators() -> None:
        """List dashboard accounts and what they see."""

        async def go(rt: Runtime) -> list[Moderator]:
            accounts = _accounts(rt)
            found = [await accounts.get(n) for n in await accounts.names()]
            return [m for m in found if m is not None]

        for m in run_with_runtime(go):
            click.echo(f"{m.name:<24} {'admin' if m.admin else ', '.join(sorted(m.communities))}")
