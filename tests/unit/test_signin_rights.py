"""Who is an admin or a moderator of a Discord guild, from its roles' permissions and the community's
settings (pure), and where a sign-in may send the browser back to."""

from __future__ import annotations

import pytest

from adapters.dashboard.signin import ADMIN, MODERATOR, local_path
from adapters.dashboard.signin.discord import ADMINISTRATOR, MANAGE_GUILD, MANAGE_MESSAGES, discord_role
from config.communities import CommunityConfig

GUILD = {"id": "g", "owner_id": "owner", "roles": [
    {"id": "g", "permissions": "1024"},  # @everyone: view channels
    {"id": "r-admin", "permissions": str(ADMINISTRATOR)},
    {"id": "r-manager", "permissions": str(MANAGE_GUILD)},
    {"id": "r-mods", "permissions": str(MANAGE_MESSAGES)},
    {"id": "r-helpers", "permissions": "0"},
]}


@pytest.mark.parametrize(("user", "roles", "config", "expected"), [
    ("owner", [], CommunityConfig(), ADMIN),
    ("u", ["r-admin"], CommunityConfig(), ADMIN),
    ("u", ["r-manager"], CommunityConfig(), ADMIN),
    ("u", ["r-mods"], CommunityConfig(), MODERATOR),
    ("u", ["r-helpers"], CommunityConfig(moderator_role="r-helpers"), MODERATOR),
    ("u", [], CommunityConfig(moderators=("u",)), MODERATOR),
    ("u", ["r-helpers"], CommunityConfig(moderator_role="r-other"), None),
    ("u", [], CommunityConfig(), None),
])
def test_discord_rights(user: str, roles: list[str], config: CommunityConfig, expected: str | None) -> None:
    assert discord_role(GUILD, {"roles": roles}, user, config) == expected


def test_everyone_role_counts_for_every_member() -> None:
    guild = {**GUILD, "roles": [{"id": "g", "permissions": str(MANAGE_MESSAGES)}]}
    assert discord_role(guild, {"roles": []}, "u", CommunityConfig()) == MODERATOR


@pytest.mark.parametrize(("value", "expected"), [
    ("/settings/g", "/settings/g"), ("/cases?page=2", "/cases?page=2"), (None, "/cases"), ("", "/cases"),
    ("https://evil.example", "/cases"), ("//evil.example", "/cases"), ("/\\evil.example", "/cases"),
    ("javascript:alert(1)", "/cases"), ("/x\r\nSet-Cookie: a=b", "/cases"), ("cases", "/cases"),
])
def test_return_address_stays_on_the_dashboard(value: str | None, expected: str) -> None:
    assert local_path(value) == expected
