"""The inline diff of A and B in headless Chromium: hidden at first, toggled by its key (c)
and its button, marking the one token that differs."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.browser_support import log_in_with_session
from tests.factories import CampaignFactory, PairFactory

pytestmark = [pytest.mark.browser]


def test_the_c_key_shows_and_hides_the_difference(
    page, browser_context, live_server, annotator_a, watched
):
    campaign = CampaignFactory()
    PairFactory(
        campaign=campaign,
        response_a="```python\ndef is_odd(n):\n    return n % 2 == 1\n```",
        response_b="```python\ndef is_odd(n):\n    return n % 2 == 0\n```",
    )
    log_in_with_session(browser_context, live_server, annotator_a)
    page.goto(f"{live_server.url}{reverse('campaign-detail', args=[campaign.pk])}")
    page.wait_for_selector("#pair[data-ready]")
    diff = page.locator("#pair-diff")
    assert not diff.is_visible()

    page.keyboard.press("c")
    assert diff.is_visible()
    # Shown as A and B were shown (either may be on the left): one token each side.
    removed, added = (
        diff.locator(".diff-body del.diff-a").all_inner_texts(),
        diff.locator(".diff-body ins.diff-b").all_inner_texts(),
    )
    assert sorted(removed + added) == ["0", "1"]
    assert "def is_odd(n):" in diff.inner_text()
    assert page.get_attribute("[data-diff-toggle]", "aria-expanded") == "true"

    page.keyboard.press("c")
    assert not diff.is_visible()
    page.get_by_role("button", name="Show differences").click()
    assert diff.is_visible()
    # The key did not choose anything or submit.
    assert page.locator("input[name=preference]:checked").count() == 0
    assert page.evaluate("window.__cspViolations") == []
    assert watched.page_errors == []
