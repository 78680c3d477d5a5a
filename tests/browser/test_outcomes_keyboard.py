"""The workspace's "both bad" choice and per-aspect ratings, with the keyboard only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Assignment, BothBadRoute, Label, Rewrite, Scale
from tests.browser_support import log_in_with_session, wait_for_next_pair
from tests.factories import CampaignFactory, PairFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ASPECTS = [
    {"name": "helpfulness", "label": "Helpfulness", "scale_min": 1, "scale_max": 5},
    {"name": "honesty", "label": "Honesty", "scale_min": 1, "scale_max": 3},
]


def test_an_annotator_says_both_bad_rates_an_aspect_and_rewrites_with_the_keyboard(
    page, browser_context, live_server, annotator_a, watched
):
    campaign = CampaignFactory(
        scale=Scale.FIVE_POINT,
        annotators_per_pair=1,
        aspects=ASPECTS,
        allow_rewrites=True,
        both_bad_route=BothBadRoute.REWRITE,
    )
    PairFactory.create_batch(2, campaign=campaign)
    log_in_with_session(browser_context, live_server, annotator_a)
    page.goto(f"{live_server.url}{reverse('campaign-detail', args=[campaign.pk])}")
    page.wait_for_selector("#pair[data-assignment][data-ready]")
    first = page.get_attribute("#pair", "data-assignment")

    page.keyboard.press("b")  # both bad
    assert page.is_checked("input[name=preference][value='both_bad']")
    # This campaign sends "both bad" to the rewrite step: the rewrite box opens by itself.
    page.wait_for_selector("[data-rewrite][open]")
    page.keyboard.press("t")  # to the first aspect: helpfulness of response A
    page.keyboard.press("2")
    page.keyboard.press("Tab")  # helpfulness of response B
    page.keyboard.press("ArrowRight")  # an unchecked group: the arrow picks its second point
    page.keyboard.press("4")
    assert page.is_checked("input[name=aspect__helpfulness__a][value='2']")
    assert page.is_checked("input[name=aspect__helpfulness__b][value='4']")
    # A keyboard-only rewrite: w focuses "start from"; Space picks response A and copies it.
    page.keyboard.press("Escape")
    page.keyboard.press("w")
    page.keyboard.press("Space")
    page.keyboard.press("Tab")  # to the text, which now holds a copy of response A
    page.keyboard.press("End")
    page.keyboard.type(" (corrected)")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    wait_for_next_pair(page, first)

    assignment = Assignment.objects.get(pk=first)
    label = Label.objects.get(assignment=assignment)
    assert (label.outcome, label.preference) == ("both_bad", 0)
    expected = {"a": 2, "b": 4} if not assignment.swapped else {"a": 4, "b": 2}
    assert label.aspect_ratings == {"helpfulness": expected}
    rewrite = Rewrite.objects.get(label=label)
    shown_a = assignment.pair.response_b if assignment.swapped else assignment.pair.response_a
    assert rewrite.text == shown_a + " (corrected)"
    assert rewrite.based_on == ("b" if assignment.swapped else "a")
    assert page.evaluate("window.__cspViolations") == []
    assert watched.page_errors == []
