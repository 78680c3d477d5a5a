"""Review 19f: a right-to-left override in one response's changed text stays inside its mark
in the diff: it reversed the rest of the line, B's words included, in headless Chromium."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.browser_support import log_in_with_session
from tests.factories import CampaignFactory, PairFactory

pytestmark = [pytest.mark.browser]


def test_marked_pieces_after_an_override_stay_in_reading_order(
    page, browser_context, live_server, annotator_a, watched
):
    campaign = CampaignFactory()
    # Whichever side is shown first, the override sits in the first marked pair.
    PairFactory(campaign=campaign, response_a="x = 1\u202e; yes", response_b="x = 2; no")
    log_in_with_session(browser_context, live_server, annotator_a)
    page.goto(f"{live_server.url}{reverse('campaign-detail', args=[campaign.pk])}")
    page.wait_for_selector("#pair[data-ready]")
    page.get_by_role("button", name="Show differences").click()
    marks = page.locator(".diff-body del.diff-a, .diff-body ins.diff-b")
    assert marks.count() == 4
    lefts = [marks.nth(index).bounding_box()["x"] for index in range(4)]
    # Left to right as in the source: the last two were shown reversed, right of the line.
    assert lefts == sorted(lefts), lefts
    assert watched.page_errors == []
