"""What every dashboard handler needs, kept on the application and the request."""

from __future__ import annotations

from dataclasses import dataclass

import jinja2
from aiohttp import web

from adapters.dashboard.auth import Accounts, Moderator
from adapters.dashboard.notify import ThreadNotifier
from adapters.dashboard.signin import PendingSignIns, Provider
from bot.bootstrap import Runtime
from bot.types import Author
from config.dashboard import DashboardSettings

SESSION_COOKIE = "tg_session"
LOGIN_COOKIE = "tg_login"


@dataclass
class Dashboard:
    runtime: Runtime
    settings: DashboardSettings
    accounts: Accounts
    notifier: ThreadNotifier
    templates: jinja2.Environment
    #: The platforms people sign in with (``discord``, ``slack``), and their sign-ins under way.
    providers: dict[str, Provider]
    pending: PendingSignIns

    @property
    def passwords(self) -> bool:
        """Password sign-in: on when asked for, or by default when no platform sign-in is configured."""
        chosen = self.settings.password_signin
        return not self.providers if chosen is None else chosen

    def render(self, template: str, *, status: int = 200, **context: object) -> web.Response:
        body = self.templates.get_template(template).render(**context)
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


DASHBOARD = web.AppKey("dashboard", Dashboard)
MODERATOR = web.RequestKey("moderator", Moderator)
SESSION = web.RequestKey("session_token", str)


def dashboard(request: web.Request) -> Dashboard:
    return request.app[DASHBOARD]


def current_moderator(request: web.Request) -> Moderator:
    if MODERATOR not in request:
        raise web.HTTPForbidden()
    return request[MODERATOR]


def session_token(request: web.Request) -> str:
    if SESSION not in request:
        raise web.HTTPForbidden()
    return request[SESSION]


def moderator_author(request: web.Request) -> Author:
    """The signed-in moderator as the author of a moderator action."""
    moderator = current_moderator(request)
    return Author(f"dashboard:{moderator.name}", moderator.name)


def page(dash: Dashboard, request: web.Request, template: str, *, status: int = 200,
         **context: object) -> web.Response:
    """A signed-in page: the moderator and the form token go to every template."""
    return dash.render(template, status=status, moderator=current_moderator(request),
                       csrf=dash.accounts.csrf_token(session_token(request)), **context)
