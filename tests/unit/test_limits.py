"""The limits' pure parts: who is exempt, the words a limited member reads, the communities file."""

from __future__ import annotations

import pytest

from bot.limits import Limiter, LimitHit, LimitKind, exempt, limit_notice, wait_words
from bot.types import Author
from config.communities import Communities, CommunityConfig, CommunityLimits
from config.errors import ConfigurationError

ON = CommunityLimits(messages_per_minute=6)


@pytest.mark.parametrize(("config", "author", "expected"), [
    (CommunityConfig(limits=ON), Author("u1", "a"), False),
    (CommunityConfig(limits=ON, moderators=("u1",)), Author("u1", "a"), True),
    (CommunityConfig(limits=ON, moderator_role="r-mod"), Author("u1", "a", roles=("r-x", "r-mod")), True),
    (CommunityConfig(limits=ON.model_copy(update={"exempt_moderators": False}), moderators=("u1",)),
     Author("u1", "a"), False),
    (CommunityConfig(limits=ON.model_copy(update={"exempt_roles": ("r-vip",)})), Author("u1", "a", roles=("r-vip",)),
     True),
    (CommunityConfig(limits=ON.model_copy(update={"exempt_users": ("u1",)})), Author("u1", "a"), True),
])
def test_who_is_exempt(config, author, expected):
    assert exempt(author, config) is expected


def test_the_limit_line_says_which_limit_and_when():
    now = 1_800_000_000_000  # 2027-01-15 08:00 UTC
    hit = LimitHit(LimitKind.SPEND, now + (5 * 3600 + 12 * 60) * 1000, True, now)
    assert limit_notice(hit, "") == ("You've reached today's limit for this community; you can continue after "
                                     "13:12 UTC, in 5 h 12 min. I didn't answer your message: please send it again "
                                     "then.")
    with_crisis = limit_notice(hit, "Call 988.\nOr text HOME to 741741.")
    assert with_crisis.splitlines()[1] == "If you need support right now: Call 988. Or text HOME to 741741."
    assert [wait_words(s) for s in (0.2, 40, 61, 3600, 3660)] == ["1 s", "40 s", "2 min", "1 h", "1 h 1 min"]


def test_a_communitys_limits_table_overrides_the_default_key_by_key():
    communities = Communities.from_mapping({
        "default": {"limits": {"messages_per_minute": 6, "daily_spend_usd": 10.0}},
        "community": {"G1": {"limits": {"daily_spend_usd": 2.5}}, "G2": {"threshold": 2}},
    })
    assert communities.get("G1").limits == CommunityLimits(messages_per_minute=6, daily_spend_usd=2.5)
    assert communities.get("G2").limits == CommunityLimits(messages_per_minute=6, daily_spend_usd=10.0)
    assert communities.get("other").limits.bucket == 6


@pytest.mark.parametrize("bad", [{"messages_per_minute": -1}, {"daily_spend_usd": -0.5}, {"per_hour": 3}])
def test_a_bad_limit_stops_the_start_up(bad):
    with pytest.raises(ConfigurationError):
        Communities.from_mapping({"community": {"G1": {"limits": bad}}})


class SetClock:
    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> float:
        return self.at


def test_a_check_follows_the_utc_day_and_each_change_of_the_communitys_settings():
    noon = 1_800_000_000 // 86_400 * 86_400 + 12 * 3600
    clock = SetClock(noon)
    limiter = Limiter(clock)
    alice = Author("u1", "a")
    config = CommunityConfig(limits=ON)
    first = limiter.check(alice, config, "G1")
    assert first is not None
    # member, now, no ceiling, no tokens per day, a message every 10 s, a bucket of 6 (5 intervals ahead)
    assert first.args == ("u1", str(noon * 1000), "0", "0", "10000000", "50000000", "3.0 15.0 3.75 0.3")
    clock.at = noon + 12 * 3600  # 00:00 UTC: the next day
    later = limiter.check(alice, config, "G1")
    assert later is not None and later.day == "2027-01-16" and first.day == "2027-01-15"
    assert later.args[1] == str((noon + 12 * 3600) * 1000)
    spend = limiter.spend("u1", config)
    assert spend is not None and spend.day == later.day
    # settings saved on the dashboard are a new object: its limits and exemptions apply at once
    changed = CommunityConfig(limits=CommunityLimits(messages_per_minute=2, burst=5, daily_spend_usd=1.5),
                              moderators=("u1",))
    assert limiter.check(alice, changed, "G1") is None  # now a moderator, exempt
    bob = limiter.check(Author("u2", "b"), changed, "G1")
    assert bob is not None and bob.args[2:6] == ("1500000", "0", "30000000", "120000000")
    assert limiter.spend("u2", CommunityConfig()) is None  # no limits: nothing counted
