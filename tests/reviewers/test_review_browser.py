"""The expert's review page in headless Chromium: under our CSP, htmx swaps the decision panel
in place from claim to final decision, and the queue's sort toggle works without a reload."""

from __future__ import annotations

import pytest

from annotation.models import Pair
from annotation.roles import Role
from reviewers.models import Escalation
from tests.browser_support import log_in_with_session
from tests.factories import CampaignFactory
from tests.reviewers.factories import judged_pair, user_with_role

pytestmark = pytest.mark.browser


@pytest.fixture
def expert_page(page, browser_context, live_server):
    """The shared page, with an expert's session."""
    expert = user_with_role("erin-expert", Role.EXPERT)
    log_in_with_session(browser_context, live_server, expert)
    return page


def test_an_expert_claims_and_decides_without_leaving_the_page(expert_page, live_server, watched):
    page = expert_page
    campaign = CampaignFactory()
    pair = judged_pair(campaign, [2, 0, -1], rationale="because")
    escalation = Escalation.objects.get(pair=pair)

    page.goto(f"{live_server.url}/escalations/{escalation.pk}/")
    assert page.get_by_text("Annotator 3").is_visible()
    page.get_by_role("button", name="Claim this pair").click()
    page.get_by_role("button", name="Record final decision").wait_for()
    page.check("input[name=verdict][value='-1']")
    page.get_by_label("Note").fill("B is right; A misreads the question.")
    page.get_by_role("button", name="Record final decision").click()
    page.get_by_text("This decision is final").wait_for()

    assert page.url.endswith(f"/escalations/{escalation.pk}/")  # swapped in place
    pair.refresh_from_db()
    assert (pair.consensus_preference, pair.provenance) == (-1, Pair.Provenance.ADJUDICATED)
    assert page.evaluate("window.__cspViolations") == []
    assert watched.page_errors == []


def test_the_queue_sort_toggle_swaps_the_table(expert_page, live_server):
    page = expert_page
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
