"""Changing my last answer in headless Chromium: each pair has its own URL, Back returns to the
previous pair with my answer on it, and a change there moves the pair's consensus."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Assignment, Label, Pair, Scale
from tests.browser_support import log_in_with_session, wait_for_next_pair
from tests.factories import CampaignFactory, PairFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_back_returns_to_the_previous_pair_where_the_answer_can_change(
    page, browser_context, live_server, annotator_a, watched
):
    campaign = CampaignFactory(scale=Scale.FIVE_POINT, annotators_per_pair=1)
    PairFactory.create_batch(3, campaign=campaign)
    log_in_with_session(browser_context, live_server, annotator_a)
    page.goto(f"{live_server.url}{reverse('campaign-detail', args=[campaign.pk])}")
    page.wait_for_selector("#pair[data-assignment][data-ready]")
    first = page.get_attribute("#pair", "data-assignment")
    page.wait_for_function(
        "url => window.location.pathname === url", arg=reverse("assignment-page", args=[first])
    )

    page.keyboard.press("1")  # A much better, as shown
    page.keyboard.press("Enter")
    wait_for_next_pair(page, first)
    second = page.get_attribute("#pair", "data-assignment")
    assert page.url.endswith(reverse("assignment-page", args=[second]))
    judged = Assignment.objects.get(pk=first)
    pair = Pair.objects.get(pk=judged.pair_id)
    canonical = -2 if judged.swapped else 2
    assert (pair.status, pair.consensus_preference) == (Pair.Status.COMPLETE, canonical)

    page.go_back()
    page.wait_for_selector("[data-testid=changing]")
    assert page.get_attribute("#pair", "data-assignment") == first
    assert page.is_checked("input[name=preference][value='2']")  # my answer, as I saw it
    page.wait_for_selector("#pair[data-ready]")
    page.keyboard.press("5")  # B much better
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Changed your answer")
    # Back at the current pair, not a new one.
    assert page.get_attribute("#pair", "data-assignment") == second

    label = Label.objects.get(assignment_id=first)
    assert label.preference == -canonical
    assert [entry["preference"] for entry in label.history] == [canonical]
    pair.refresh_from_db()
    assert pair.consensus_preference == -canonical  # consensus follows the change
    assert page.evaluate("window.__cspViolations") == []
    assert watched.page_errors == []
