"""The workspace's layout in headless Chromium: the tools beside the responses on wide screens
(sticky), dark mode from prefers-color-scheme, the narrow layout, the skip link and focus order."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.browser_support import log_in_with_session
from tests.factories import CampaignFactory, PairFactory

pytestmark = [pytest.mark.browser]

LONG = "\n\n".join(f"Paragraph {n}: " + "words " * 60 for n in range(40))


@pytest.fixture
def workspace(page, browser_context, live_server, annotator_a):
    campaign = CampaignFactory()
    PairFactory(campaign=campaign, response_a=LONG, response_b="```python\nprint(1)\n```")
    log_in_with_session(browser_context, live_server, annotator_a)

    def open_at(width: int, height: int):
        page.set_viewport_size({"width": width, "height": height})
        page.goto(f"{live_server.url}{reverse('campaign-detail', args=[campaign.pk])}")
        page.wait_for_selector("#pair[data-ready]")
        return page

    return open_at


def test_the_tools_stay_beside_the_responses_while_scrolling(workspace):
    page = workspace(1440, 900)
    tools = page.locator("aside.tools")
    responses = page.locator("#response-b").bounding_box()
    box = tools.bounding_box()
    assert box["x"] >= responses["x"] + responses["width"]  # beside, not below
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    assert page.evaluate("window.scrollY") > 300
    box = tools.bounding_box()
    assert 0 <= box["y"] < 900  # still in view
    assert page.evaluate("document.documentElement.scrollWidth") <= 1440
