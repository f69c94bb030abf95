"""Appeals on Slack through the real Bolt app and slack-sdk client (signed HTTP interactions against the
stand-in): the button under the freeze notice opens a modal, the appeal reaches the case, the mod-log and
the queue once even on a double click, every interaction is acknowledged at once, and the moderator's
decision reaches the member in the thread."""

from __future__ import annotations

import json
import time

from adapters.slack.appeal import ACTION, VIEW
from adapters.slack.translate import thread_ref
from bot.moderation import Decision
from bot.types import Author, ThreadStatus
from tests.e2e.slack.conftest import CHANNEL, MODLOG, TEAM, drive_to_freeze

MOD = Author("dashboard:mod", "mod")


def click_payload(value: str, user: str, message_ts: str, thread_ts: str) -> dict:
    return {"type": "block_actions", "team": {"id": TEAM, "domain": "example"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM},
            "api_app_id": "A0APP", "token": "legacy", "trigger_id": f"trig-{time.monotonic_ns()}",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": CHANNEL},
            "channel": {"id": CHANNEL, "name": "general"},
            "message": {"type": "message", "ts": message_ts, "thread_ts": thread_ts, "text": "ended"},
            "actions": [{"action_id": ACTION, "block_id": "threadguard_appeal", "type": "button",
                         "value": value, "action_ts": str(time.time())}]}


def submit_payload(view: dict, text: str | None, user: str) -> dict:
    return {"type": "view_submission", "team": {"id": TEAM, "domain": "example"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM},
            "api_app_id": "A0APP", "token": "legacy", "trigger_id": "trig-submit",
            "view": {**view, "state": {"values": {"appeal": {"text": {"type": "plain_text_input", "value": text}}}},
                     "team_id": TEAM, "app_id": "A0APP", "hash": "h"}}


async def test_the_appeal_button_files_one_appeal_and_the_decision_reaches_the_member(slack_env, http, payloads):
    standin = slack_env.standin
    root, _ = await drive_to_freeze(slack_env, http.event, payloads)
    [notice] = [c for c in standin.calls_to("chat.postMessage", channel=CHANNEL, thread_ts=root)
                if c.get("blocks") and "ended" in c.get("text", "")]
    blocks = notice["blocks"] if isinstance(notice["blocks"], list) else json.loads(notice["blocks"])
    button = blocks[1]["elements"][0]
    assert button["action_id"] == ACTION and button["value"] == f"{TEAM}:1"

    # a double click: two modals open (acknowledged at once), two submissions, one appeal
    for _ in range(2):
        status, _ = await http.shortcut(click_payload(button["value"], "UALICE", notice["_ts"], root))
        assert status == 200
    await slack_env.settle()
    assert max(http.timings) < 3.0
    opened = standin.calls_to("views.open")
    assert len(opened) == 2
    view = opened[0]["view"] if isinstance(opened[0]["view"], dict) else json.loads(opened[0]["view"])
    assert view["callback_id"] == VIEW
    assert view["blocks"][0]["element"]["max_length"] == 500 and view["blocks"][0]["optional"] is True
    for text in ("I asked about my chemistry class", None):
        status, _ = await http.shortcut(submit_payload(view, text, "UALICE"))
        assert status == 200
        await slack_env.settle()

    review = slack_env.runtime.review
    appeals = await review.appeals_of(TEAM, 1)
    assert [(a.member_id, a.text) for a in appeals] == [("UALICE", "I asked about my chemistry class")]
    assert len(await review.open_appeals([TEAM])) == 1
    said = [c["text"] for c in standin.calls_to("chat.postEphemeral", user="UALICE")]
    assert sum("went to the moderators" in t for t in said) == 1
    assert sum("already appealed" in t for t in said) == 1
    posts = [c for c in standin.calls_to("chat.postMessage", channel=MODLOG) if "Appeal" in c.get("text", "")]
    assert len(posts) == 1
    appeal_blocks = posts[0]["blocks"] if isinstance(posts[0]["blocks"], list) else json.loads(posts[0]["blocks"])
    assert appeal_blocks[1]["text"]["text"] == "\u2068I asked about my chemistry class\u2069"
    # someone who was not in the thread cannot appeal
    await http.shortcut(click_payload(button["value"], "UBOB", notice["_ts"], root))
    await slack_env.settle()
    assert any("Only someone who took part" in c["text"] for c in standin.calls_to("chat.postEphemeral", user="UBOB"))
    assert len(standin.calls_to("views.open")) == 2

    assert await slack_env.runtime.moderation.decide_appeal(TEAM, 1, "UALICE", "reopen", MOD) is Decision.DECIDED
    assert await slack_env.bot.relay_notices() == 1
    texts = [c["text"] for c in standin.calls_to("chat.postMessage", channel=CHANNEL, thread_ts=root)]
    assert any(t.startswith("<@UALICE> ") and "open again" in t for t in texts)
    state = await slack_env.runtime.member_actions.thread_state(thread_ref(TEAM, CHANNEL, root))
    assert state.status is ThreadStatus.ACTIVE
