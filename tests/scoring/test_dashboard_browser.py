"""The dashboard in headless Chromium: under our CSP, its numbers change without a reload."""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.test import Client

from annotation.models import Pair
from annotation.roles import Role
from annotation.services.users import user_create
from tests.factories import CampaignFactory, PairFactory

pytestmark = [pytest.mark.browser]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


@pytest.fixture
def private_cache(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                    "LOCATION": "dashboard-browser"}
    }


@pytest.fixture
def admin_page(live_server, transactional_db, private_cache, monkeypatch):
    executable = os.environ.get("ARBITER_CHROMIUM")
    if not executable:
        pytest.skip("ARBITER_CHROMIUM is not set: no Chromium to drive")
    # Playwright's sync API runs an event loop in this thread; let the test's ORM calls through.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    admin, _password, _token = user_create(username="ada-admin", role=Role.ADMIN, password="pw")
    client = Client()
    client.force_login(admin, backend="django.contrib.auth.backends.ModelBackend")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.add_init_script(RECORD_CSP_VIOLATIONS)
        context.set_default_timeout(20_000)
        context.add_cookies(
            [
                {
                    "name": settings.SESSION_COOKIE_NAME,
                    "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                    "url": live_server.url,
                }
            ]
        )
        page = context.new_page()
        page_errors: list[str] = []
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        yield page, live_server.url, page_errors
        browser.close()
        # While Playwright's loop runs, the test's ORM calls get a connection of their own,
        # which pytest-django's teardown (outside that loop) would never close.
        from django.db import connections

        connections.close_all()


def test_the_numbers_refresh_without_a_page_reload(admin_page):
    from django.core.cache import cache
    from playwright.sync_api import expect

    page, base_url, page_errors = admin_page
    campaign = CampaignFactory()
    PairFactory.create_batch(2, campaign=campaign, status=Pair.Status.COMPLETE)
    page.goto(f"{base_url}/campaigns/{campaign.pk}/dashboard/")
    complete = page.locator('[data-count="complete"]')
    assert complete.inner_text() == "2"
    page.evaluate("window.__sameDocument = 'yes'")

    PairFactory.create_batch(3, campaign=campaign, status=Pair.Status.COMPLETE)
    cache.clear()  # as if the few seconds of caching had passed
    # Our CSP forbids eval, so wait with a locator assertion rather than wait_for_function.
    expect(complete).to_have_text("5", timeout=20_000)
    assert page.evaluate("window.__sameDocument") == "yes"
    assert page.evaluate("window.__cspViolations") == []
    assert page_errors == []
    if os.environ.get("ARBITER_SCREENSHOTS"):
        page.screenshot(path=os.environ["ARBITER_SCREENSHOTS"], full_page=True)
