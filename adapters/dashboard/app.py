"""The moderators' web dashboard: an aiohttp application with server-rendered Jinja pages.

Security in one place: every response carries a strict content security policy (no script at all) and
the usual hardening headers; every POST must carry the CSRF token bound to the session (or, for the
sign-in form, to the sign-in cookie) and, when the browser sends one, a same-origin ``Origin``; users see
plain messages, never a traceback or an exception's text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import jinja2
from aiohttp import web

from adapters.dashboard import views
from adapters.dashboard.auth import Accounts
from adapters.dashboard.context import DASHBOARD, LOGIN_COOKIE, MODERATOR, SESSION, SESSION_COOKIE, Dashboard
from adapters.dashboard.notify import QueuedNotifier, ThreadNotifier
from adapters.dashboard.settings_views import add_settings_routes
from adapters.dashboard.signin import PendingSignIns, Provider
from adapters.dashboard.signin.setup import sign_in_providers
from adapters.dashboard.signin_views import add_signin_routes, recheck
from adapters.dashboard.usage_views import add_usage_routes
from bot.bootstrap import Runtime, build_runtime
from bot.errors import CaseNotFound, ThreadguardError
from bot.store.errors import STORE_ERRORS
from config.dashboard import DashboardSettings
from config.settings import Settings

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
CSP = ("default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'; img-src 'self'; style-src 'self'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}

STORAGE_DOWN = ("The dashboard cannot reach its case storage (Redis) right now, so it cannot show or change "
                "anything. Nothing you did was lost or half-done. This page works again as soon as the storage "
                "is back: try again in a minute, and tell the admin if it lasts.")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def template_env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(views.FILTERS)
    return env


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    dash = request.app[DASHBOARD]
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return dash.render("error.html", status=exc.status, moderator=request.get(MODERATOR),
                           message=views.ERROR_TEXT.get(exc.status, "That request could not be served."))
    except CaseNotFound as exc:
        return dash.render("error.html", status=404, moderator=request.get(MODERATOR), message=exc.user_message)
    except STORE_ERRORS as exc:
        log.warning("dashboard request %s: storage unavailable (%s)", request.path, type(exc).__name__)
        response = dash.render("error.html", status=503, moderator=None, heading="Storage unavailable",
                               message=STORAGE_DOWN)
        response.headers["Retry-After"] = "30"
        return response
    except ThreadguardError as exc:
        log.warning("dashboard request %s failed: %s", request.path, type(exc).__name__)
        return dash.render("error.html", status=503, moderator=request.get(MODERATOR),
                           message=exc.user_message)
    except Exception:
        log.exception("dashboard request %s failed", request.path)
        return dash.render("error.html", status=500, moderator=None,
                           message="Something went wrong on our side. Please try again.")


def _same_origin(request: web.Request, public_url: str | None) -> bool:
    """No ``Origin`` (older browsers, the CLI) passes on the CSRF token alone; a foreign one is refused."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    expected = (public_url or f"{request.scheme}://{request.host}").rstrip("/")
    return origin == expected


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Load the session's moderator; refuse signed-out requests and POSTs without a valid CSRF token."""
    dash = request.app[DASHBOARD]
    if request.path.startswith("/static/"):
        return await handler(request)
    token = request.cookies.get(SESSION_COOKIE)
    moderator = await dash.accounts.session(token)
    if moderator is not None and token is not None:
        moderator = await recheck(dash, token, moderator)
    if moderator is not None and token is not None:
        request[MODERATOR] = moderator
        request[SESSION] = token
    signing_in = request.path == "/login" or request.path.startswith("/login/")
    if request.method == "POST":
        form = await request.post()
        submitted = form.get("csrf")
        submitted = submitted if isinstance(submitted, str) else None
        if request.path == "/login":
            valid = dash.accounts.csrf_ok(request.cookies.get(LOGIN_COOKIE), submitted, "login")
        else:
            valid = moderator is not None and dash.accounts.csrf_ok(token, submitted)
        if not valid or not _same_origin(request, dash.settings.public_url):
            log.warning("refused a POST to %s without a valid CSRF token or origin", request.path)
            raise web.HTTPForbidden()
    if not signing_in and moderator is None:
        if request.method == "GET":
            raise web.HTTPSeeOther("/login")
        raise web.HTTPForbidden()
    return await handler(request)


def build_app(runtime: Runtime, dashboard_settings: DashboardSettings, *,
              notifier: ThreadNotifier | None = None, providers: list[Provider] | None = None) -> web.Application:
    """The dashboard application on an already built runtime (tests and ``run_dashboard``)."""
    client = runtime.redis
    accounts = Accounts(client, dashboard_settings.session_secret.get_secret_value().encode(),
                        session_ttl_s=int(dashboard_settings.session_ttl_hours * 3600),
                        max_failures=dashboard_settings.max_login_failures,
                        failure_window_s=dashboard_settings.login_window_seconds)
    app = web.Application(middlewares=[security_headers, errors, authenticate], client_max_size=64 * 1024)
    secret = dashboard_settings.session_secret.get_secret_value().encode()
    app[DASHBOARD] = dash = Dashboard(runtime, dashboard_settings, accounts,
                                      notifier or QueuedNotifier(runtime.notices), template_env(),
                                      {p.name: p for p in providers or []}, PendingSignIns(client, secret))
    views.add_routes(app)
    add_usage_routes(app)
    add_signin_routes(app)
    add_settings_routes(app)

    async def close_providers(_: web.Application) -> None:
        for provider in dash.providers.values():
            await provider.aclose()

    app.on_cleanup.append(close_providers)
    app.router.add_static("/static/", HERE / "static", append_version=False)
    return app


async def run_dashboard(settings: Settings, host: str, port: int, *, runtime: Runtime | None = None) -> None:
    """Serve the dashboard until cancelled (on ``runtime`` when given; its owner closes it)."""
    dashboard_settings = DashboardSettings()  # type: ignore[call-arg]  # the secret comes from the env
    own = runtime is None
    runtime = runtime or build_runtime(settings)
    providers = sign_in_providers(dashboard_settings, runtime)
    runner = web.AppRunner(build_app(runtime, dashboard_settings, providers=providers), shutdown_timeout=5,
                           access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("dashboard listening on http://%s:%s", host, port)
        runtime.serving = True
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        if own:
            await runtime.aclose()
