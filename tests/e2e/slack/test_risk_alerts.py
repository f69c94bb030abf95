"""Risk alerts on Slack (real Bolt app and slack-sdk client against the stand-in): one private mod-log
alert per flagged thread where the community opted in (with the transcript only where enabled)."""

from __future__ import annotations

import pytest

from tests.e2e.slack.conftest import MODLOG, TEAM, community, serve


@pytest.mark.parametrize(("alerts", "transcript"), [(True, False), (True, True), (False, False)])
async def test_a_risk_alert_posts_once_only_where_enabled(make_env, payloads, alerts, transcript):
    env = await make_env(community_config=community(risk_alerts=alerts, risk_alert_transcript=transcript))
    async with serve(env) as http:
        first = payloads.mention("some days I want to hurt myself")
        await http.event(first)
        await env.settle()
        root = first["event"]["ts"]
        for text in ("I still want to hurt myself", "thanks"):
            await http.event(payloads.message(text, root))
            await env.settle()
    posts = env.standin.calls_to("chat.postMessage", channel=MODLOG)
    uploads = env.standin.calls_to("files.completeUploadExternal")
    if not alerts:
        assert posts == [] and uploads == []
        return
    [alert] = posts
    assert alert["text"].startswith("Risk alert · case #1")
    case = await env.runtime.cases.get(TEAM, 1)
    assert case.action == "risk" and case.at_risk
    assert "hurt myself" not in alert["text"] + str(alert.get("blocks"))
    assert len(uploads) == (1 if transcript else 0)
