"""The platform sign-in pages (``/login/<provider>`` and its callback) and the re-check of a signed-in
person's rights while their session lives."""

from __future__ import annotations

import logging
import secrets
import time

from aiohttp import web

from adapters.dashboard.auth import Moderator
from adapters.dashboard.context import SESSION_COOKIE, Dashboard, dashboard
from adapters.dashboard.signin import Provider, SignInFailed, local_path

log = logging.getLogger(__name__)

#: The browser that started a sign-in. SameSite=Lax: the platform sends the person back with a cross-site
#: navigation, which a Strict cookie would not come with.
SIGNIN_COOKIE = "tg_signin"

REFUSED = ("You signed in, but you hold no moderator or admin right in a community this dashboard serves. "
           "Ask your community's admins for the moderator role, then sign in again.")
FAILED = "Signing in did not work (it may have taken too long, or the link was used already). Please try again."


def _provider(request: web.Request) -> Provider:
    provider = dashboard(request).providers.get(request.match_info["provider"])
    if provider is None:
        raise web.HTTPNotFound()
    return provider


def _redirect_uri(dash: Dashboard, request: web.Request, provider: Provider) -> str:
    base = (dash.settings.public_url or f"{request.scheme}://{request.host}").rstrip("/")
    return f"{base}/login/{provider.name}/callback"


async def start(request: web.Request) -> web.Response:
    dash, provider = dashboard(request), _provider(request)
    browser = request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(24)
    state, challenge = await dash.pending.start(provider.name, browser, local_path(request.query.get("next")))
    response = web.HTTPSeeOther(provider.authorize_url(state=state, challenge=challenge,
                                                       redirect_uri=_redirect_uri(dash, request, provider)))
    response.set_cookie(SIGNIN_COOKIE, browser, httponly=True, samesite="Lax", path="/login",
                        secure=dash.settings.cookie_secure, max_age=600)
    raise response


async def callback(request: web.Request) -> web.Response:
    dash, provider = dashboard(request), _provider(request)
    pending = await dash.pending.finish(provider.name, request.query.get("state", ""),
                                        request.cookies.get(SIGNIN_COOKIE))
    code = request.query.get("code", "")
    if pending is None or not code or len(code) > 500:
        log.warning("refused a %s sign-in callback: unknown, used or foreign state, or no code", provider.name)
        return _refused(dash, 400, FAILED)
    try:
        person = await provider.sign_in(code=code, verifier=pending.verifier,
                                        redirect_uri=_redirect_uri(dash, request, provider))
        await dash.runtime.community_settings.refresh()
        rights = await provider.rights(person.user_id, person.candidates)
    except SignInFailed as exc:
        log.warning("a %s sign-in failed: %s", provider.name, exc)
        return _refused(dash, 502, FAILED)
    if not rights:
        log.info("a %s sign-in by user %s holds no right here: refused", provider.name, person.user_id)
        return _refused(dash, 403, REFUSED)
    token = await dash.accounts.open_platform_session(provider.name, person.user_id, person.name, rights)
    log.info("%s user %s signed in (%d communities)", provider.name, person.user_id, len(rights))
    # A page that moves on by itself: the Strict session cookie does not come with a redirect that a
    # cross-site navigation (the platform's) started, but does with a navigation from our own page.
    response = dash.render("signed_in.html", moderator=None, next=pending.next)
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict", path="/",
                        secure=dash.settings.cookie_secure, max_age=dash.accounts.session_ttl_s)
    response.del_cookie(SIGNIN_COOKIE, path="/login")
    return response


def _refused(dash: Dashboard, status: int, message: str) -> web.Response:
    return dash.render("login.html", status=status, moderator=None, error=message, csrf="",
                       providers=list(dash.providers.values()), passwords=False, next="")


async def recheck(dash: Dashboard, token: str, moderator: Moderator) -> Moderator | None:
    """The moderator with rights as the platform says now (looked at every
    ``DASHBOARD_RIGHTS_RECHECK_SECONDS``); None when none are left. A platform that cannot be asked keeps
    the last rights for at most three intervals."""
    interval = dash.settings.rights_recheck_seconds
    age = time.time() - moderator.checked
    provider = dash.providers.get(moderator.provider or "")
    if moderator.provider is None or age < interval:
        return moderator
    if provider is None or moderator.user_id is None:
        return None
    try:
        await dash.runtime.community_settings.refresh()
        rights = await provider.rights(moderator.user_id, sorted(moderator.communities))
    except SignInFailed as exc:
        log.warning("re-checking %s user %s failed: %s", moderator.provider, moderator.user_id, exc)
        return moderator if age < 3 * interval else None
    if not rights:
        log.info("%s user %s holds no right any more: session ended", moderator.provider, moderator.user_id)
        await dash.accounts.close_session(token)
        return None
    await dash.accounts.update_rights(token, rights)
    return await dash.accounts.session(token)


def add_signin_routes(app: web.Application) -> None:
    app.router.add_get("/login/{provider:discord|slack}", start)
    app.router.add_get("/login/{provider:discord|slack}/callback", callback)
