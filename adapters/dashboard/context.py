"""What every dashboard handler needs, kept on the application and the request."""

from __future__ import annotations

from dataclasses import dataclass

import jinja2
from aiohttp import web

from adapters.dashboard.auth import Accounts, Moderator
from adapters.dashboard.notify import ThreadNotifier
from bot.bootstrap import Runtime
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
