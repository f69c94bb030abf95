"""The template environment and the filters that decide what a page shows: escaping on, missing values
loud, times in UTC whatever the server's zone, links only for http(s), category labels."""

from __future__ import annotations

import time

import jinja2
import pytest

from adapters.dashboard.app import template_env
from adapters.dashboard.views import _category_label, _safe_url, _when


def test_templates_escape_every_value_and_fail_on_a_missing_one():
    env = template_env()
    assert env.from_string("{{ v }}").render(v="<b onclick=\"x\">'&") == "&lt;b onclick=&#34;x&#34;&gt;&#39;&amp;"
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ missing }}").render()
    assert env.from_string("{{ v|category_label }}").render(v="<i>") == "&lt;i&gt;"


def test_times_are_shown_in_utc_whatever_the_servers_zone(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert _when(0) == "1970-01-01 00:00:00 UTC"
        assert _when(1_764_590_400.9) == "2025-12-01 12:00:00 UTC"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_http_and_https_links_are_links_and_nothing_else_is():
    assert _safe_url("http://example.org/x") == "http://example.org/x"
    assert _safe_url("https://example.org/y") == "https://example.org/y"
    for bad in ("HTTP//example.org", "http:/example.org", "ftp://example.org", "javascript:alert(1)", "https://"):
        assert _safe_url(bad) is None, bad


def test_categories_show_their_label_unknown_ones_as_written_and_none_as_a_dash():
    assert _category_label("violent_extremism") == "Violent extremism / terrorism"
    assert _category_label("harassment") == "Harassment / relentless abuse"
    assert _category_label("made_up") == "made_up"
    assert _category_label(None) == "-" and _category_label("") == "-"
