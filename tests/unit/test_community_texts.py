"""Per-community texts: placeholders checked when the communities file is loaded; the engine's words
for a place (a thread, or a Discord DM without threads); member-facing words never name self-harm."""

from __future__ import annotations

import pytest

from bot import texts
from bot.errors import ConfigurationError
from bot.types import ThreadRef
from config.communities import Communities, CommunityConfig, CommunityTexts

THREAD = ThreadRef("discord", "g1", "c1", "t1")
DM = ThreadRef("discord", "dm", "555", "555~2")


def test_unknown_or_malformed_placeholders_are_refused_at_load_with_a_clear_message():
    raw = {"community": {"g1": {"texts": {"warning": "Achtung ({categroy}), {redirects} Mal."}}}}
    with pytest.raises(ConfigurationError) as caught:
        Communities.from_mapping(raw, source="communities.toml")
    message = str(caught.value)
    assert "communities.toml" in message and "texts.warning uses {categroy}" in message
    assert "{category}, {redirects}" in message
    for bad in ("Ende {0}", "Ende {place.x}", "Ende {place!r}", "Ende {"):
        with pytest.raises(ConfigurationError):
            Communities.from_mapping({"default": {"texts": {"frozen_reminder": bad}}})


def test_a_community_overrides_some_texts_and_inherits_the_default_table():
    raw = {"default": {"texts": {"reopened": "Wieder offen."}},
           "community": {"g1": {"texts": {"warning": "Warnung: {redirects}x {category}."}}, "g2": {}}}
    communities = Communities.from_mapping(raw)
    g1 = communities.get("g1")
    assert texts.warning(g1, "weapons_of_mass_harm", 3) == "Warnung: 3x weapons of mass harm."
    assert texts.reopened(g1, THREAD) == "Wieder offen."  # from [default.texts]
    assert texts.reopened(communities.get("g2"), THREAD) == "Wieder offen."
    assert texts.warning(communities.get("g2"), "hate", 3).startswith("\u26a0\ufe0f Warning")


def test_templates_name_the_place_and_never_self_harm():
    config = CommunityConfig(texts=CommunityTexts(freeze_notice="Fin ({category}) de ce {place}.",
                                                  warning="Attention: {category}"))
    assert texts.freeze_notice(config, DM, "persistent_abuse", "hate") == "Fin (hateful conduct) de ce conversation."
    assert texts.freeze_notice(config, THREAD, "persistent_abuse", "hate").endswith("de ce thread.")
    assert "self" not in texts.warning(config, "self_harm", 3).lower()


def test_built_in_notices_in_a_dm_do_not_speak_of_a_thread():
    config = CommunityConfig()
    for text in (texts.freeze_notice(config, DM, "persistent_abuse", "hate"),
                 texts.freeze_notice(config, DM, "user_requested", None), texts.frozen_reminder(config, DM)):
        assert "thread" not in text, text
        assert "new conversation" in text
    assert "thread" in texts.freeze_notice(config, THREAD, "user_requested", None)
