"""Risk alerts on Discord (real discord.py client against the stand-in): when the model first flags risk
in a thread, a community that opted in gets one private mod-log alert with the case link and no
transcript; a community that did not gets none."""

from __future__ import annotations

import pytest

from adapters.discord.app import DiscordBot
from config.communities import CommunityConfig
from tests.e2e.discord.conftest import say
from tests.support.discord_standin import DiscordStandin

RISKY = "some days I want to hurt myself"


@pytest.fixture(params=[True, False], ids=["opted-in", "default"])
def community(standin: DiscordStandin, request: pytest.FixtureRequest) -> CommunityConfig:
    return CommunityConfig(mod_log_channel=standin.modlog_id, risk_alerts=request.param,
                           dashboard_url="https://mod.example.org")


async def test_a_risk_alert_posts_once_only_where_enabled(bot: DiscordBot, standin: DiscordStandin,
                                                          community: CommunityConfig):
    opening = await say(standin, standin.general_id, RISKY, mention=True)
    await say(standin, opening["id"], "I still want to hurt myself")
    await say(standin, opening["id"], "thanks for listening")
    posts = standin.find("POST", rf"/channels/{standin.modlog_id}/messages")
    alerts = [p for p in posts if p.json and p.json["embeds"][0]["title"].startswith("Risk alert")]
    if not community.risk_alerts:
        assert posts == []
        return
    [alert] = alerts
    embed = alert.json["embeds"][0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    case = await bot.commands.cases.get(standin.guild_id, 1)
    assert case.action == "risk" and embed["title"] == f"Risk alert · case #{case.case_id}"
    assert fields["Case"] == f"https://mod.example.org/cases/{standin.guild_id}/{case.case_id}"
    assert alert.files == []  # no transcript unless the community enables it
    assert "hurt myself" not in str(alert.json)
