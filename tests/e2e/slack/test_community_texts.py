"""A community's own words are the ones posted on Slack (real Bolt app and slack-sdk client against the
stand-in): the warning, the freeze notice and the reminder to later posts in the frozen thread."""

from __future__ import annotations

from config.communities import CommunityTexts
from tests.e2e.slack.conftest import CHANNEL, community, drive_to_freeze, serve, thread_texts

TEXTS = CommunityTexts(
    warning="Attention : {redirects} demandes ({category}). Je pourrais mettre fin à cette conversation.",
    freeze_notice="Conversation terminée ({category}). Ce {place} est fermé.",
    frozen_reminder="Cette conversation est terminée ; je ne réponds plus dans ce {place}.")


async def test_the_communitys_texts_are_the_ones_posted(make_env, payloads):
    env = await make_env(community_config=community(texts=TEXTS))
    async with serve(env) as http:
        root, _ = await drive_to_freeze(env, http.event, payloads)
        shown = thread_texts(env.standin, root)
        assert shown[3] == "Attention : 3 demandes (weapons of mass harm). Je pourrais mettre fin à cette conversation."
        assert shown[4] == "Conversation terminée (weapons of mass harm). Ce thread est fermé."
        await http.event(payloads.message("hello?", root))
        await env.settle()
    [reminder] = [c["text"] for c in env.standin.calls_to("chat.postEphemeral", channel=CHANNEL)]
    assert reminder == "Cette conversation est terminée ; je ne réponds plus dans ce thread."
