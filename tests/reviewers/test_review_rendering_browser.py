"""The expert's review page shows the pair as annotators saw it: the workspace's Markdown
renderer and sanitiser, code highlighted, very long unbroken lines kept inside their block
without stalling the layout, and the diff of A and B opened by its button or key."""

from __future__ import annotations

import pytest

from annotation.roles import Role
from reviewers.models import Escalation
from tests.browser_support import log_in_with_session
from tests.factories import CampaignFactory, PairFactory
from tests.reviewers.factories import judge, user_with_role

pytestmark = pytest.mark.browser


def _escalated(campaign, **pair_fields) -> Escalation:
    pair = PairFactory(campaign=campaign, **pair_fields)
    for n, preference in enumerate([2, 0, -2]):
        judge(campaign, user_with_role(f"ann-{pair.pk}-{n}"), preference)
    return Escalation.objects.get(pair=pair)


@pytest.fixture
def expert_page(page, browser_context, live_server):
    log_in_with_session(browser_context, live_server, user_with_role("erin", Role.EXPERT))
    return page


def test_the_review_page_renders_markdown_like_the_workspace(expert_page, live_server, watched):
    page = expert_page
    escalation = _escalated(
        CampaignFactory(),
        conversation=[{"role": "user", "content": "What is **788 - 923**?"}],
        response_a="788 - 923 = **-126**",
        response_b="```python\nprint(788 - 923)\n```\n<script>alert(1)</script>",
    )
    page.goto(f"{live_server.url}/escalations/{escalation.pk}/")

    response_a = page.locator("#response-a .response-body")
    assert response_a.locator("strong").inner_text() == "-126"
    assert "**" not in response_a.inner_text()
    assert page.locator(".conversation strong").inner_text() == "788 - 923"
    response_b = page.locator("#response-b .response-body")
    assert response_b.locator("code.language-python span.nb").inner_text() == "print"
    # Sanitised as in the workspace: the script is text, never an element.
    assert response_b.locator("script").count() == 0
    assert "<script>alert(1)</script>" in response_b.inner_text()
    assert watched.dialogs == []
    assert page.evaluate("window.__cspViolations") == []


def test_a_200000_character_line_lays_out_at_once_and_stays_in_its_block(expert_page, live_server):
    page = expert_page
    long_line = "x" * 200_000
    escalation = _escalated(
        CampaignFactory(),
        conversation=[{"role": "user", "content": "y" * 200_000}],
        response_a=long_line,
        response_b=f"```\n{long_line}\n```",
    )
    page.goto(f"{live_server.url}/escalations/{escalation.pk}/")
    # From the last byte of the response to a page laid out (forced here, synchronously).
    laid_out_ms = page.evaluate(
        """() => {
            document.body.offsetHeight;
            for (const el of document.querySelectorAll(".md")) el.getBoundingClientRect();
            return performance.now() - performance.getEntriesByType("navigation")[0].responseEnd;
        }"""
    )
    assert laid_out_ms < 2000, laid_out_ms
    # Nothing widens the page: the long line scrolls or wraps inside its own block.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1440
    for selector in ("#response-a", "#response-b", ".conversation .turn"):
        box = page.locator(selector).first.bounding_box()
        assert box["x"] + box["width"] <= 1440, selector


def test_the_review_page_diff_opens_and_closes_by_its_button_and_its_key(
    expert_page, live_server, watched
):
    page = expert_page
    escalation = _escalated(
        CampaignFactory(),
        response_a="```python\ndef is_odd(n):\n    return n % 2 == 1\n```",
        response_b="```python\ndef is_odd(n):\n    return n % 2 == 0\n```",
    )
    page.goto(f"{live_server.url}/escalations/{escalation.pk}/")
    diff = page.locator("#pair-diff")
    button = page.locator("[data-diff-toggle]")
    assert not diff.is_visible()

    # The page loads the site's script and its own: one click must toggle the diff once.
    button.click()
    assert diff.is_visible()
    assert button.get_attribute("aria-expanded") == "true"
    assert sorted(
        diff.locator(".diff-body del.diff-a").all_inner_texts()
        + diff.locator(".diff-body ins.diff-b").all_inner_texts()
    ) == ["0", "1"]
    button.click()
    assert not diff.is_visible()
    page.keyboard.press("c")
    assert diff.is_visible()
    page.keyboard.press("c")
    assert not diff.is_visible()
    # From a verdict control too, where the page's own key handler serves c.
    page.get_by_role("button", name="Claim this pair").click()
    page.get_by_role("button", name="Record final decision").wait_for()
    page.locator("#decision-panel input[name=verdict]").first.focus()
    page.keyboard.press("c")
    assert diff.is_visible()
    assert watched.page_errors == []
    assert page.evaluate("window.__cspViolations") == []
