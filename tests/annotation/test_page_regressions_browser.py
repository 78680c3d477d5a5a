"""The 404 page in headless Chromium: the site's navigation and a way home, and no request
for /favicon.ico (which would itself answer 404 on every page)."""

from __future__ import annotations

import pytest

from tests.browser_support import log_in_with_session

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_missing_page_leads_home_and_asks_for_no_favicon(
    page, browser_context, live_server, annotator_a, watched
):
    log_in_with_session(browser_context, live_server, annotator_a)

    response = page.goto(f"{live_server.url}/no-such-page/")

    assert response is not None and response.status == 404
    assert page.title() == "Page not found · Arbiter"
    assert page.locator(".topbar nav a.nav-link", has_text="Campaigns").is_visible()
    page.get_by_role("link", name="Back to the campaigns").click()
    page.wait_for_url(f"{live_server.url}/")
    assert page.get_by_role("heading", name="Campaigns", exact=True).is_visible()
    assert not [url for url in watched.requests if url.endswith("/favicon.ico")]
    assert page.evaluate("window.__cspViolations") == []
    assert watched.page_errors == []
