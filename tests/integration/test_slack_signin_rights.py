"""Sign in with Slack's rights, read through slack_sdk from the Slack stand-in: admins and owners, the
installer (the workspace's first admin), the moderator user group, listed moderators; nobody else."""

from __future__ import annotations

from adapters.dashboard.signin import ADMIN, MODERATOR
from adapters.dashboard.signin.slack import SlackSignIn
from config.communities import Communities, CommunityConfig
from tests.support import slack_oidc
from tests.support.slack_standin import SlackStandin


async def test_slack_rights_follow_the_workspace() -> None:
    standin = SlackStandin()
    await standin.start()
    oidc = slack_oidc.install(standin)
    installer: list[str | None] = [None]

    async def bot_token(team: str) -> str | None:
        return slack_oidc.BOT_TOKEN if team == slack_oidc.TEAM else None

    async def installed_by(team: str) -> str | None:
        return installer[0]

    communities = Communities(CommunityConfig(), {slack_oidc.TEAM: CommunityConfig(
        moderator_group=slack_oidc.MOD_GROUP, moderators=("ULISTED",))})
    oidc.users["ULISTED"] = {**oidc.users[slack_oidc.MEMBER], "id": "ULISTED"}
    provider = SlackSignIn(client_id=slack_oidc.CLIENT_ID, client_secret=slack_oidc.CLIENT_SECRET,
                           api_base_url=standin.base_url, authorize_url=slack_oidc.authorize_url(standin),
                           bot_tokens=bot_token, installers=installed_by, communities=communities)
    try:
        async def role(user: str, team: str = slack_oidc.TEAM) -> str | None:
            return (await provider.rights(user, [team])).get(team)

        assert await role(slack_oidc.ADMIN) == ADMIN
        assert await role(slack_oidc.MOD) == MODERATOR
        assert await role("ULISTED") == MODERATOR
        assert await role(slack_oidc.MEMBER) is None
        assert await role(slack_oidc.ADMIN, "T0OTHER") is None  # a workspace the app is not installed in
        installer[0] = slack_oidc.MEMBER
        assert await role(slack_oidc.MEMBER) == ADMIN
        oidc.users[slack_oidc.ADMIN]["deleted"] = True
        assert await role(slack_oidc.ADMIN) is None
        assert await role("UNOBODY") is None
    finally:
        await provider.aclose()
        await standin.stop()
