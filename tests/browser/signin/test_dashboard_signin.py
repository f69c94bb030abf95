"""Sign in with Discord and with Slack, through the stand-ins, in Chromium: an admin changes the settings,
sees each change in the history and restores the earlier version; a moderator sees cases but no settings;
a member with neither is refused; a removed role ends access within the re-check interval."""

from __future__ import annotations

import logging
import time

import pytest
from playwright.sync_api import Page, expect

from tests.browser.signin.support import CRISIS, RECHECK_S, SignInDashboard
from tests.support import slack_oidc


def sign_in_with(page: Page, signin: SignInDashboard, provider: str) -> None:
    page.goto(f"{signin.url}/login")
    expect(page.locator("input[name=password]")).to_have_count(0)  # passwords are off with a platform configured
    page.click(f"#signin-{provider}")


def threshold_of(signin: SignInDashboard, community: str) -> int:
    assert signin.runtime is not None
    return signin.runtime.communities.get(community).threshold


def edit_and_restore(page: Page, signin: SignInDashboard, community: str) -> None:
    """Threshold and crisis text changed twice, each change in the history with its before and after, then
    the first version restored as a new one."""
    page.goto(f"{signin.url}/settings/{community}")
    page.fill("input[name=threshold]", "5")
    page.fill("textarea[name=crisis_resources]", "Text HOME to 741741.")
    page.click("#save-settings")
    expect(page.locator("#flash")).to_contain_text("Saved")
    page.fill("input[name=threshold]", "7")
    page.click("#save-settings")
    expect(page.locator("#flash")).to_contain_text("Saved")
    latest = page.locator("#settings-history li.version").first
    expect(latest).to_have_attribute("data-version", "2")
    expect(latest.locator("tr", has_text="threshold").locator("td.old")).to_have_text("5")
    expect(latest.locator("tr", has_text="threshold").locator("td.new")).to_have_text("7")
    first = page.locator("#settings-history li.version[data-version='1']")
    expect(first.locator("tr", has_text="crisis_resources").locator("td.old")).to_have_text(CRISIS)
    expect(first.locator("tr", has_text="crisis_resources").locator("td.new")).to_have_text("Text HOME to 741741.")
    expect(first).to_contain_text(":")  # who: provider:user id:name
    assert threshold_of(signin, community) == 7
    first.locator("button.restore").click()
    expect(page.locator("#flash")).to_contain_text("restored")
    restored = page.locator("#settings-history li.version").first
    expect(restored).to_have_attribute("data-version", "3")
    expect(restored).to_contain_text("restored version 1")
    expect(page.locator("input[name=threshold]")).to_have_value("5")
    assert threshold_of(signin, community) == 5
    page.click("#restore-file")
    expect(page.locator("input[name=threshold]")).to_have_value("3")
    expect(page.locator("textarea[name=crisis_resources]")).to_have_value(CRISIS)


def moderator_sees_cases_not_settings(page: Page, signin: SignInDashboard, community: str) -> None:
    expect(page).to_have_url(f"{signin.url}/cases")
    expect(page.locator(f"a[href='/cases/{community}/{signin.case_ids[community]}']")).to_have_count(1)
    expect(page.locator("#nav-settings")).to_have_count(0)
    response = page.goto(f"{signin.url}/settings/{community}")
    assert response is not None and response.status == 404


def access_ends_within_recheck(page: Page, signin: SignInDashboard) -> float:
    """Seconds from the role's removal until a page load is sent to sign in."""
    removed = time.monotonic()
    while time.monotonic() - removed < RECHECK_S * 5:
        page.goto(f"{signin.url}/cases")
        if page.url.endswith("/login"):
            return time.monotonic() - removed
        time.sleep(0.2)
    raise AssertionError("access did not end")


def test_discord_admin_edits_history_and_restores(signin: SignInDashboard, page: Page,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    signin.discord.oauth.signed_in = signin.discord.ann
    sign_in_with(page, signin, "discord")
    expect(page).to_have_url(f"{signin.url}/cases")
    expect(page.locator("#nav-settings")).to_have_count(1)
    edit_and_restore(page, signin, signin.guild)
    assert signin.discord.oauth.tokens == {}  # the person's token was revoked right after sign-in
    issued = signin.discord.oauth.issued
    assert issued and not [t for t in issued if t in caplog.text]  # nor logged, at any level
    assert not [t for t in issued if t in str(signin.call(signin.all_values))]  # nor stored
    # a guild where ann holds no right is not hers to see
    response = page.goto(f"{signin.url}/settings/{signin.discord.other_guild_id}")
    assert response is not None and response.status == 404


def test_discord_moderator_sees_cases_only_and_loses_access_with_the_role(signin: SignInDashboard,
                                                                          page: Page) -> None:
    discord = signin.discord
    discord.oauth.signed_in = discord.mod
    sign_in_with(page, signin, "discord")
    moderator_sees_cases_not_settings(page, signin, signin.guild)
    expect(page.locator(f"a[href='/cases/{discord.other_guild_id}/{signin.case_ids[discord.other_guild_id]}']")
           ).to_have_count(0)
    roles = discord.member_roles[discord.mod["id"]]
    discord.member_roles[discord.mod["id"]] = []
    try:
        assert access_ends_within_recheck(page, signin) <= RECHECK_S + 1.5
    finally:
        discord.member_roles[discord.mod["id"]] = roles


def test_discord_member_without_rights_is_refused(signin: SignInDashboard, page: Page) -> None:
    signin.discord.oauth.signed_in = signin.discord.alice
    sign_in_with(page, signin, "discord")
    expect(page.locator("#login-error")).to_contain_text("no moderator or admin right")
    assert not [c for c in page.context.cookies() if c["name"] == "tg_session"]
    page.goto(f"{signin.url}/cases")
    expect(page).to_have_url(f"{signin.url}/login")


def test_slack_admin_moderator_member_and_group_removal(signin: SignInDashboard, page: Page,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    oidc = signin.slack.oidc
    oidc.signed_in = slack_oidc.ADMIN
    sign_in_with(page, signin, "slack")
    expect(page.locator("#nav-settings")).to_have_count(1)
    edit_and_restore(page, signin, slack_oidc.TEAM)
    page.context.clear_cookies()
    oidc.signed_in = slack_oidc.MEMBER
    sign_in_with(page, signin, "slack")
    expect(page.locator("#login-error")).to_contain_text("no moderator or admin right")
    oidc.signed_in = slack_oidc.MOD
    sign_in_with(page, signin, "slack")
    moderator_sees_cases_not_settings(page, signin, slack_oidc.TEAM)
    signin.slack.usergroups[slack_oidc.MOD_GROUP] = []
    try:
        assert access_ends_within_recheck(page, signin) <= RECHECK_S + 1.5
    finally:
        signin.slack.usergroups[slack_oidc.MOD_GROUP] = [slack_oidc.MOD]
    assert oidc.tokens == {}
    assert oidc.issued and not [t for t in oidc.issued if t in caplog.text]
    assert not [t for t in oidc.issued if t in str(signin.call(signin.all_values))]
