"""A form post whose CSRF token is out of date (the session changed in another tab, or the
cookies are gone) gets the site's own page in headless Chromium: it says what happened and
causes no content-security-policy violation (Django's fallback page has an inline <style>)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser]


def test_a_login_posted_without_its_csrf_cookie_gets_the_sites_page(page, live_server, watched):
    page.goto(f"{live_server.url}/login/")
    page.context.clear_cookies()  # as after the cookies were cleared, or expired
    page.fill("#id_username", "alice")
    page.fill("#id_password", "pw-alice")
    with page.expect_response(lambda response: response.request.method == "POST") as posted:
        page.click("button[type=submit]")
    assert posted.value.status == 403
    page.wait_for_load_state("load")
    assert page.evaluate("window.__cspViolations") == []
    assert page.locator("h1").inner_text() == "This form has expired"
    assert "reload the page" in page.locator("main").inner_text()
