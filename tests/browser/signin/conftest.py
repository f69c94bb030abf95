"""The dashboard with Discord and Slack sign-in through the stand-ins, one per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.signin.support import SignInDashboard
from tests.support.redis_servers import RedisServer


@pytest.fixture(scope="module")
def signin(redis_server: RedisServer) -> Iterator[SignInDashboard]:
    """The dashboard with Discord and Slack sign-in, for one test module."""
    if not redis_server.running:
        redis_server.start()
    dashboard = SignInDashboard(redis_server.url).start()
    try:
        yield dashboard
    finally:
        dashboard.stop()
