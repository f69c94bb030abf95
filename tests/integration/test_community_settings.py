"""Community settings on a real Redis: versions with who/when/old/new, restore, the safety floor, TOML
export and import, and the live swap every holder of the ``Communities`` object sees."""

from __future__ import annotations

from typing import Any

import pytest

from bot.community_settings import CommunitySettings, SettingsConflict, SettingsRejected
from bot.store.community_settings import RedisCommunitySettings
from config.communities import Communities, CommunityConfig


def _desk(client: Any) -> tuple[CommunitySettings, Communities]:
    communities = Communities(CommunityConfig(threshold=3, crisis_resources="Call 988."),
                              {"g1": CommunityConfig(threshold=4, crisis_resources="Call 988.")})
    return CommunitySettings(RedisCommunitySettings(client), communities), communities


def _values(config: CommunityConfig, **changes: Any) -> dict[str, Any]:
    return {**config.model_dump(mode="json"), **changes}


@pytest.mark.asyncio
async def test_versions_record_who_and_each_change_and_restore(any_redis: Any) -> None:
    desk, communities = _desk(any_redis)
    assert await desk.refresh()  # the first look always loads
    version, seed = await desk.effective("g1")
    assert (version, seed.threshold) == (0, 4)
    v1 = await desk.save("g1", _values(seed, threshold=6, crisis_resources="Text 741741."), who="discord:ann",
                         expected_version=0)
    assert v1 == 1
    assert communities.get("g1").threshold == 6  # this process at once
    history = await desk.history("g1")
    assert history[0]["version"] == 1 and history[0]["who"] == "discord:ann"
    assert history[0]["changes"] == {"threshold": [4, 6], "crisis_resources": ["Call 988.", "Text 741741."]}
    assert history[0]["at"] > 0
    # an unchanged save is no new version
    assert await desk.save("g1", _values(seed, threshold=6, crisis_resources="Text 741741."), who="x",
                           expected_version=1) == 1
    v2 = await desk.save("g1", _values(seed, threshold=2, crisis_resources="Text 741741.", allowed_channels=[]),
                         who="discord:bob", expected_version=1)
    assert v2 == 2
    v3 = await desk.restore("g1", 1, who="discord:ann", expected_version=2)
    assert v3 == 3
    record = (await desk.history("g1"))[0]
    assert record["restored_from"] == 1 and record["changes"] == {"threshold": [2, 6]}
    assert communities.get("g1").threshold == 6
    assert communities.get("g2").threshold == 3  # others keep the file's


@pytest.mark.asyncio
async def test_stale_form_and_floor_are_refused_and_nothing_changes(redis_client: Any) -> None:
    desk, _ = _desk(redis_client)
    _, seed = await desk.effective("g1")
    await desk.save("g1", _values(seed, threshold=5), who="a", expected_version=0)
    before = await redis_client.dump("tg:{cfg:g1}:versions")
    with pytest.raises(SettingsConflict):
        await desk.save("g1", _values(seed, threshold=7), who="b", expected_version=0)
    for bad in ({"threshold": 1}, {"threshold": 11}, {"crisis_resources": "   "}, {"threshold": "x"},
                {"texts": {"warning": "you did {something}"}}, {"channels": {"c1": {"model": "a b"}}}):
        with pytest.raises(SettingsRejected):
            await desk.save("g1", _values(seed, **bad), who="b", expected_version=1)
    assert await redis_client.dump("tg:{cfg:g1}:versions") == before
    assert (await desk.effective("g1"))[0] == 1


@pytest.mark.asyncio
async def test_toml_round_trip_and_foreign_file_refused(redis_client: Any) -> None:
    desk, _ = _desk(redis_client)
    _, seed = await desk.effective("g1")
    await desk.save("g1", _values(seed, threshold=7, texts={"warning": "Careful ({redirects})."},
                                  channels={"c9": {"persona": "You answer in French."}}),
                    who="a", expected_version=0)
    text = await desk.export_toml("g1")
    assert 'threshold = 7' in text and "[community.g1.channels.c9]" in text
    other, _ = _desk(redis_client)
    with pytest.raises(SettingsRejected):
        await other.import_toml("g2", text, who="b", expected_version=0)
    changed = text.replace("threshold = 7", "threshold = 8")
    assert await desk.import_toml("g1", changed, who="b", expected_version=1) == 2
    config = (await desk.effective("g1"))[1]
    assert config.threshold == 8 and config.channel("c9").persona == "You answer in French."
    assert config.texts.warning == "Careful ({redirects})."


@pytest.mark.asyncio
async def test_another_process_applies_a_save_on_its_next_look(redis_client: Any) -> None:
    dashboard, _ = _desk(redis_client)
    worker, seen = _desk(redis_client)
    assert await worker.refresh()
    assert not await worker.refresh()  # nothing saved: nothing reloaded
    _, seed = await dashboard.effective("g1")
    await dashboard.save("g1", _values(seed, threshold=9), who="a", expected_version=0)
    assert seen.get("g1").threshold == 4
    assert await worker.refresh()
    assert seen.get("g1").threshold == 9
