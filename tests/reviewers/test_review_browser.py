"""The expert's review page in headless Chromium: under our CSP, htmx swaps the decision panel
in place from claim to final decision, and the queue's sort toggle works without a reload."""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.test import Client

from annotation.models import Pair
from annotation.roles import Role
from reviewers.models import Escalation
from tests.factories import CampaignFactory
from tests.reviewers.factories import judged_pair, user_with_role

pytestmark = pytest.mark.browser

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
def expert_browser(live_server, transactional_db, monkeypatch):
    executable = os.environ.get("ARBITER_CHROMIUM")
    if not executable:
        pytest.skip("ARBITER_CHROMIUM is not set: no Chromium to drive")
    # Playwright's sync API runs an event loop in this thread; let the test's ORM calls through.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    expert = user_with_role("erin-expert", Role.EXPERT)
    client = Client()
    client.force_login(expert, backend="django.contrib.auth.backends.ModelBackend")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = browser.new_context()
        context.add_init_script(RECORD_CSP_VIOLATIONS)
        context.set_default_timeout(15_000)
        context.add_cookies(
            [
                {
                    "name": settings.SESSION_COOKIE_NAME,
                    "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                    "url": live_server.url,
                }
            ]
        )
        yield context.new_page()
        browser.close()
        # While Playwright's loop runs, the test's ORM calls get their own connection, which
        # the database teardown (outside that loop) would otherwise find still open.
        from django.db import connections

        connections.close_all()


def test_an_expert_claims_and_decides_without_leaving_the_page(expert_browser, live_server):
    page = expert_browser
    campaign = CampaignFactory()
    pair = judged_pair(campaign, [2, 0, -1], rationale="because")
    escalation = Escalation.objects.get(pair=pair)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{live_server.url}/escalations/{escalation.pk}/")
    assert page.get_by_text("Annotator 3").is_visible()
    page.get_by_role("button", name="Claim this pair").click()
    page.get_by_role("button", name="Record final decision").wait_for()
    page.get_by_label("B better", exact=True).check()
    page.get_by_label("Note").fill("B is right; A misreads the question.")
    page.get_by_role("button", name="Record final decision").click()
    page.get_by_text("This decision is final").wait_for()

    assert page.url.endswith(f"/escalations/{escalation.pk}/")  # swapped in place
    pair.refresh_from_db()
    assert (pair.consensus_preference, pair.provenance) == (-1, Pair.Provenance.ADJUDICATED)
    assert page.evaluate("window.__cspViolations") == []
    assert errors == []


def test_the_queue_sort_toggle_swaps_the_table(expert_browser, live_server):
    page = expert_browser
    campaign = CampaignFactory()
    mild = judged_pair(campaign, [1, 0, -1])
    strong = judged_pair(campaign, [2, 2, -2])
    page.goto(f"{live_server.url}/experts/queue/")
    rows = page.locator("#queue-table tbody tr")
    assert rows.first.inner_text().startswith(f"Pair {mild.pk}")
    page.get_by_role("link", name="Show most disputed first").click()
    page.get_by_role("link", name="Show oldest first").wait_for()
    assert rows.first.inner_text().startswith(f"Pair {strong.pk}")
    assert "order=disputed" in page.url
    assert page.evaluate("window.__cspViolations") == []
