"""The dashboard in headless Chromium: under our CSP, its numbers change without a reload."""

from __future__ import annotations

import os

import pytest

from annotation.models import Pair
from annotation.roles import Role
from annotation.services.users import user_create
from tests.browser_support import log_in_with_session
from tests.factories import CampaignFactory, PairFactory

pytestmark = [pytest.mark.browser]


@pytest.fixture
def private_cache(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "dashboard-browser",
        }
    }


@pytest.fixture
def admin_page(page, browser_context, live_server, private_cache):
    """The shared page at the dashboard's own size, with an admin's session."""
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.set_default_timeout(20_000)
    admin, _password, _token = user_create(username="ada-admin", role=Role.ADMIN, password="pw")
    log_in_with_session(browser_context, live_server, admin)
    return page


def test_the_numbers_refresh_without_a_page_reload(admin_page, live_server, watched):
    from django.core.cache import cache
    from playwright.sync_api import expect

    page = admin_page
    campaign = CampaignFactory()
    PairFactory.create_batch(2, campaign=campaign, status=Pair.Status.COMPLETE)
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/dashboard/")
    complete = page.locator('[data-count="complete"]')
    assert complete.inner_text() == "2"
    page.evaluate("window.__sameDocument = 'yes'")

    PairFactory.create_batch(3, campaign=campaign, status=Pair.Status.COMPLETE)
    cache.clear()  # as if the few seconds of caching had passed
    # Our CSP forbids eval, so wait with a locator assertion rather than wait_for_function.
    expect(complete).to_have_text("5", timeout=20_000)
    assert page.evaluate("window.__sameDocument") == "yes"
    assert page.evaluate("window.__cspViolations") == []
    assert watched.page_errors == []
    if os.environ.get("ARBITER_SCREENSHOTS"):
        page.screenshot(path=os.environ["ARBITER_SCREENSHOTS"], full_page=True)
