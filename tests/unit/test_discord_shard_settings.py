"""DISCORD_SHARD_IDS: which shards this process runs, out of DISCORD_SHARD_COUNT; checked at start-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.errors import ConfigurationError
from config.discord import DiscordSettings, parse_shard_ids


@pytest.mark.parametrize(("text", "ids"), [("0,1", (0, 1)), ("2-3", (2, 3)), (" 0, 4-6 ,", (0, 4, 5, 6)),
                                           ("3,1,3", (1, 3)), ("7", (7,)), ("", ())])
def test_shard_ids_are_numbers_and_ranges(text: str, ids: tuple[int, ...]) -> None:
    assert parse_shard_ids(text) == ids


def test_the_environment_sets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "4")
    monkeypatch.setenv("DISCORD_SHARD_IDS", "2-3")
    settings = DiscordSettings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.shard_count, settings.shard_ids) == (4, (2, 3))


@pytest.mark.parametrize(("count", "ids", "says"), [
    (4, "x", "'x' is not a shard number or range"),
    (4, "1-", "'1-' is not a shard number or range"),
    (4, "-1", "'-1' is not a shard number or range"),
    (4, "3-1", "the range '3-1' runs backwards"),
    (4, "2-5", "names shard 4, 5, but with DISCORD_SHARD_COUNT=4 the shards are numbered 0 to 3"),
    (None, "0", "DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT"),
    (0, "0", "DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT"),
])
def test_wrong_shard_settings_are_refused_with_a_clear_message(count: int | None, ids: str, says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        DiscordSettings(shard_count=count, shard_ids=ids, _env_file=None)  # type: ignore[call-arg]
    [error] = refused.value.errors()
    assert says in error["msg"]


def test_settings_copied_without_validation_are_checked_again() -> None:
    settings = DiscordSettings(shard_count=2, _env_file=None)  # type: ignore[call-arg]
    settings.require_shards()
    copied = settings.model_copy(update={"shard_ids": (2,)})
    with pytest.raises(ConfigurationError, match="numbered 0 to 1"):
        copied.require_shards()
