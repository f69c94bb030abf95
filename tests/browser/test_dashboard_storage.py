"""With Redis stopped the dashboard answers a clear 503 "storage unavailable" page (headless Chromium,
a private redis-server stopped and started again)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveDashboard, sign_in
from tests.support.redis_servers import RedisServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

SHOTS = Path(__file__).resolve().parent / "screenshots"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as private:
        yield private


@pytest.fixture(scope="module")
def live(server: RedisServer) -> Iterator[LiveDashboard]:  # this module's own dashboard and Redis
    dashboard = LiveDashboard(server.url).start()
    try:
        yield dashboard
    finally:
        if not server.running:
            server.start()
        dashboard.stop()


def test_a_clear_503_page_while_redis_is_down(page: Page, live: LiveDashboard, server: RedisServer,
                                             caplog: pytest.LogCaptureFixture):
    sign_in(page, live, "mod-a")
    expect(page.locator("#case-table")).to_be_visible()
    server.stop()
    try:
        for path in ("/cases", f"/cases/guild-a/{live.seeded.abuse}", "/appeals", "/chart"):
            response = page.goto(live.url + path)
            assert response is not None and response.status == 503, path
            assert response.headers.get("retry-after") == "30"
            expect(page.locator("#error-heading")).to_have_text("Storage unavailable")
            expect(page.locator("#error-message")).to_contain_text("cannot reach its case storage")
            assert "Traceback" not in page.content()
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / "storage-unavailable.png"), full_page=True)
        # signing in needs the storage too: the same page, never a crash
        response = page.goto(f"{live.url}/login")
        assert response is not None and response.status == 503
        expect(page.locator("#error-heading")).to_have_text("Storage unavailable")
        assert not [r for r in caplog.records if r.exc_info]  # no unexpected-exception log lines
    finally:
        server.start()
    response = page.goto(f"{live.url}/cases")  # back: the data went with the server, so sign in again
    assert response is not None and response.status == 200
    expect(page.locator("input[name=name]")).to_be_visible()
