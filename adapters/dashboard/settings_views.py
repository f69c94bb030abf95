"""A community's settings on the web, for its admins: the form, the history with each version's changes,
restore, TOML export and import, and per-channel persona notes and models.

Every page goes through ``_configurable``: a person who is not an admin of the community (a moderator, or
an admin of another one) gets the same 404 as for a community that does not exist, and nothing changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from adapters.dashboard.context import current_moderator, dashboard, page
from bot.community_settings import THRESHOLD_BOUNDS, CommunitySettings, SettingsRejected, flat
from config.communities import TEXT_PLACEHOLDERS, CommunityConfig, CommunityLimits

TEXT_FIELDS = tuple(TEXT_PLACEHOLDERS)
FLASH = {"saved": "Saved: every bot process applies it within seconds.", "unchanged": "Nothing changed.",
         "restored": "The version was restored as a new version.", "imported": "The file was imported."}


def _configurable(request: web.Request) -> str:
    community = request.match_info["community"]
    if not current_moderator(request).may_configure(community):
        raise web.HTTPNotFound()
    return community


def _ids(value: str) -> list[str]:
    return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]


def _text(form: MultiDictProxy[Any], name: str) -> str | None:
    value = form.get(name)
    return value.strip() or None if isinstance(value, str) else None


def _number(form: MultiDictProxy[Any], name: str, current: int) -> int | str:
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        return current
    return int(value) if value.strip().lstrip("-").isdigit() else value  # a non-number is refused by validation


def _amount(form: MultiDictProxy[Any], name: str, current: float) -> float | str:
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        return current
    try:
        return float(value)
    except ValueError:
        return value  # refused by validation


def limits_from(form: MultiDictProxy[Any], current: CommunityLimits) -> dict[str, Any]:
    """The community's limits from the form's limits fieldset (an empty number keeps its value)."""
    return {
        "messages_per_minute": _number(form, "limits.messages_per_minute", current.messages_per_minute),
        "burst": _number(form, "limits.burst", current.burst),
        "tokens_per_day": _number(form, "limits.tokens_per_day", current.tokens_per_day),
        "daily_spend_usd": _amount(form, "limits.daily_spend_usd", current.daily_spend_usd),
        "exempt_moderators": form.get("limits.exempt_moderators") == "on",
        "exempt_roles": _ids(str(form.get("limits.exempt_roles", ""))),
        "exempt_users": _ids(str(form.get("limits.exempt_users", ""))),
        "over_limit": str(form.get("limits.over_limit", current.over_limit)),
    }


def values_from(form: MultiDictProxy[Any], current: CommunityConfig) -> dict[str, Any]:
    """The whole community's settings: the form's fields over the current ones."""
    values = current.model_dump(mode="json")
    values["threshold"] = _number(form, "threshold", current.threshold)
    values["crisis_resources"] = str(form.get("crisis_resources", ""))
    for name in ("mod_log_channel", "moderator_role", "moderator_group", "persona", "model"):
        values[name] = _text(form, name)
    values["moderators"] = _ids(str(form.get("moderators", "")))
    values["allowed_channels"] = [str(v) for v in form.getall("allowed_channels", [])] or _ids(
        str(form.get("allowed_channels_text", "")))
    values["repeat_ends"] = _number(form, "repeat_ends", current.repeat_ends)
    values["repeat_days"] = _number(form, "repeat_days", current.repeat_days)
    values["risk_alerts"] = form.get("risk_alerts") == "on"
    values["risk_alert_transcript"] = form.get("risk_alert_transcript") == "on"
    values["texts"] = {name: _text(form, f"texts.{name}") for name in TEXT_FIELDS}
    if form.get("limits") == "1":  # the page's limits fieldset; a form without it keeps the limits
        values["limits"] = limits_from(form, current.limits)
    return values


def _version(form: MultiDictProxy[Any]) -> int:
    value = form.get("version")
    if not isinstance(value, str) or not value.isdigit():
        raise web.HTTPBadRequest()
    return int(value)


async def _channels(request: web.Request, community: str) -> list[tuple[str, str]]:
    for provider in dashboard(request).providers.values():
        found = await provider.channels(community)
        if found is not None:
            return found
    return []


async def settings_index(request: web.Request) -> web.Response:
    dash, moderator = dashboard(request), current_moderator(request)
    known = set(dash.runtime.communities.known()) | set(await dash.runtime.community_settings.store.communities())
    mine = sorted(known if moderator.admin else moderator.admin_of)
    return page(dash, request, "settings_index.html", communities=mine)


async def settings_page(request: web.Request, *, status: int = 200, error: str | None = None,
                        form: dict[str, Any] | None = None) -> web.Response:
    dash, community = dashboard(request), _configurable(request)
    desk = dash.runtime.community_settings
    version, config = await desk.effective(community)
    return page(dash, request, "settings.html", status=status, community=community, version=version,
                config=config, values=form or flat(config), history=await desk.history(community),
                channels=await _channels(request, community), error=error, bounds=THRESHOLD_BOUNDS,
                text_fields=TEXT_FIELDS, placeholders=TEXT_PLACEHOLDERS,
                flash=FLASH.get(request.query.get("done", "")))


async def _apply(request: web.Request, community: str, change: Callable[[], Awaitable[int]],
                 done: str) -> web.Response:
    try:
        before = (await dashboard(request).runtime.community_settings.effective(community))[0]
        number = await change()
    except SettingsRejected as exc:
        return await settings_page(request, status=400, error=exc.user_message)
    raise web.HTTPSeeOther(f"/settings/{community}?done={done if number != before else 'unchanged'}")


def _who(request: web.Request) -> str:
    moderator = current_moderator(request)
    return f"{moderator.provider}:{moderator.user_id}:{moderator.name}" if moderator.provider else moderator.name


async def _foreign_channels(request: web.Request, community: str, chosen: list[str]) -> bool:
    """Whether ``chosen`` names a channel outside the community (a forged form could point the mod-log at
    another community's channel). Platform admins choose from the channel list the bot reads; an operator
    may also type ids the bot cannot list."""
    chosen = [c for c in chosen if c]
    if not chosen:
        return False
    known = {cid for cid, _ in await _channels(request, community)}
    if not known:
        return not current_moderator(request).admin
    return any(c not in known for c in chosen)


CHANNEL_REFUSED = "Choose channels of this community from the list."


async def _posted(request: web.Request) -> tuple[str, CommunitySettings, MultiDictProxy[Any], int]:
    """The community (its admins only), the settings use cases, the form and the version it was made on."""
    community = _configurable(request)
    form = await request.post()
    return community, dashboard(request).runtime.community_settings, form, _version(form)


def _saving(request: web.Request, desk: CommunitySettings, community: str, values: dict[str, Any],
            expected: int) -> Callable[[], Awaitable[int]]:
    return lambda: desk.save(community, values, who=_who(request), expected_version=expected)


async def save_settings(request: web.Request) -> web.Response:
    community, desk, form, expected = await _posted(request)
    _, current = await desk.effective(community)
    values = values_from(form, current)
    changed = [c for c in [values["mod_log_channel"], *values["allowed_channels"]]
               if c != current.mod_log_channel and c not in current.allowed_channels]
    if await _foreign_channels(request, community, changed):
        return await settings_page(request, status=400, error=CHANNEL_REFUSED)
    return await _apply(request, community, _saving(request, desk, community, values, expected), "saved")


async def save_channel(request: web.Request) -> web.Response:
    community, desk, form, expected = await _posted(request)
    channel = str(form.get("channel", "")).strip()
    if not channel or len(channel) > 100:
        return await settings_page(request, status=400, error="Choose a channel first.")
    _, current = await desk.effective(community)
    if channel not in current.channels and await _foreign_channels(request, community, [channel]):
        return await settings_page(request, status=400, error=CHANNEL_REFUSED)
    values = current.model_dump(mode="json")
    own = {"persona": _text(form, "persona"), "model": _text(form, "model")}
    channels = {k: v for k, v in values["channels"].items() if k != channel}
    if own["persona"] or own["model"]:
        channels[channel] = own
    values["channels"] = channels
    return await _apply(request, community, _saving(request, desk, community, values, expected), "saved")


async def restore_version(request: web.Request) -> web.Response:
    community, desk, _, expected = await _posted(request)
    number = int(request.match_info["number"])
    return await _apply(request, community, lambda: desk.restore(community, number, who=_who(request),
                                                                 expected_version=expected), "restored")


async def export_settings(request: web.Request) -> web.Response:
    community = _configurable(request)
    text = await dashboard(request).runtime.community_settings.export_toml(community)
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in community)
    return web.Response(text=text, content_type="application/toml", charset="utf-8", headers={
        "Content-Disposition": f'attachment; filename="threadguard-{safe}.toml"'})


async def import_settings(request: web.Request) -> web.Response:
    community, desk, form, expected = await _posted(request)
    text = str(form.get("toml", ""))
    return await _apply(request, community, lambda: desk.import_toml(community, text, who=_who(request),
                                                                     expected_version=expected), "imported")


def add_settings_routes(app: web.Application) -> None:
    app.router.add_get("/settings", settings_index)
    app.router.add_get("/settings/{community}", settings_page)
    app.router.add_post("/settings/{community}", save_settings)
    app.router.add_post("/settings/{community}/channel", save_channel)
    app.router.add_post("/settings/{community}/restore/{number:\\d+}", restore_version)
    app.router.add_get("/settings/{community}/export.toml", export_settings)
    app.router.add_post("/settings/{community}/import", import_settings)
